# Equal-budget hyperparameter search (recbench/tuning/studies.py): one Optuna study per (dataset, model)
# that a group asks the variant `tuned` of, in results/tuning/{dataset}/{model}/. Its
# `tuning.workers` tune_worker jobs share the study's journal (JournalStorage; on SLURM, one job
# each) until `tuning.trials` trials are complete or pruned; rule tune writes the best options
# (best.json, the input of the train jobs of variant tuned) and Optuna's plots; rule
# tuning_table one row per study. The journal is not an output: Snakemake never deletes it, so
# a killed worker's rerun continues the study and no finished trial is lost. Helpers
# (study_of, study_inputs, study_workers, tuning_outputs) in rules/common.smk.


rule tune_worker:
    input:
        unpack(study_inputs),
    output:
        "results/tuning/{dataset}/{model}/workers/{worker}.json",
    log:
        "logs/tune_worker/{dataset}/{model}/{worker}.log",
    benchmark:
        "logs/benchmarks/tune_worker/{dataset}/{model}/{worker}.tsv"
    wildcard_constraints:
        worker=r"\d+",
    conda:
        ENVIRONMENT
    threads: 1
    params:
        study=study_of,
    script:
        "../scripts/tune.py"


rule tune:
    input:
        study_workers,
    output:
        best="results/tuning/{dataset}/{model}/best.json",
        history=report(
            "reports/figures/tuning/{dataset}/{model}_history.png",
            caption="../reports/captions/tuning.rst",
            category=TUNING,
            subcategory="{dataset} {model}",
        ),
        importances=report(
            "reports/figures/tuning/{dataset}/{model}_importances.png",
            caption="../reports/captions/tuning.rst",
            category=TUNING,
            subcategory="{dataset} {model}",
        ),
    log:
        "logs/tune/{dataset}/{model}.log",
    benchmark:
        "logs/benchmarks/tune/{dataset}/{model}.tsv"
    conda:
        ENVIRONMENT
    params:
        study=study_of,
    script:
        "../scripts/tune.py"


rule tuning_table:
    input:
        expand(
            rules.tune.output.best,
            zip,
            dataset=[s.dataset for s in STUDIES.values()],
            model=[s.model for s in STUDIES.values()],
        ),
    output:
        md="reports/tables/tuning.md",
        csv=report(
            "reports/tables/tuning.csv",
            caption="../reports/captions/tuning_table.rst",
            category=TUNING,
            subcategory="table",
        ),
        tex="reports/tables/tuning.tex",
        html=report(
            "reports/tables/tuning.html",
            caption="../reports/captions/tuning_table.rst",
            category=TUNING,
            subcategory="table",
        ),
    log:
        "logs/tuning_table.log",
    benchmark:
        "logs/benchmarks/tuning_table.tsv"
    conda:
        ENVIRONMENT
    script:
        "../scripts/tune.py"
