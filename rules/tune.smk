# Equal-budget hyperparameter search (recbench/tuning.py): one Optuna study per (dataset, model)
# that a group asks the variant `tuned` of, in results/tuning/{dataset}/{model}/. Its
# `tuning.workers` tune_worker jobs share the study's journal (JournalStorage; on SLURM, one job
# each) until `tuning.trials` trials are complete or pruned; rule tune writes the best options
# (best.json, the input of the train jobs of variant tuned) and Optuna's plots; rule
# tuning_table one row per study. The journal is not an output: Snakemake never deletes it, so
# a killed worker's rerun continues the study and no finished trial is lost.


def study_of(wildcards):
    """The study behind a tune job's wildcards, as the rule's params (a dict)."""
    key = (wildcards.dataset, wildcards.model)
    if key not in STUDIES:
        raise ValueError(
            f"results/tuning/{key[0]}/{key[1]} is not a study of the configured groups "
            "(a group asks for it with overrides [{tuned: true}])"
        )
    return STUDIES[key].as_dict()


def study_workers(wildcards):
    study = STUDIES[wildcards.dataset, wildcards.model]
    return expand(
        rules.tune_worker.output[0],
        dataset=study.dataset,
        model=study.model,
        worker=range(study.workers),
    )


def study_inputs(wildcards):
    """The processed dataset, and its negatives when the trials rank sampled candidates."""
    mode = STUDIES[wildcards.dataset, wildcards.model].train.get("eval_mode", "full")
    inputs = {"sequences": rules.preprocess.output.sequences, "stats": rules.preprocess.output.stats}
    if mode != "full":
        inputs["negatives"] = rules.sample_negatives.output[0].replace("{mode}", mode)
    return {k: v.format(dataset=wildcards.dataset) for k, v in inputs.items()}


def tuning_outputs():
    """The tuning table and every study's plots (none without a tuned variant)."""
    if not STUDIES:
        return []
    pairs = {"dataset": [s.dataset for s in STUDIES.values()]}
    pairs["model"] = [s.model for s in STUDIES.values()]
    plots = rules.tune.output.history, rules.tune.output.importances
    return [rules.tuning_table.output.md] + expand(plots, zip, **pairs)


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
            category="Hyperparameter search",
            subcategory="{dataset} {model}",
        ),
        importances=report(
            "reports/figures/tuning/{dataset}/{model}_importances.png",
            caption="../reports/captions/tuning.rst",
            category="Hyperparameter search",
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
            category="Tables",
            subcategory="hyperparameter search",
        ),
        tex="reports/tables/tuning.tex",
    log:
        "logs/tuning_table.log",
    benchmark:
        "logs/benchmarks/tuning_table.tsv"
    conda:
        ENVIRONMENT
    script:
        "../scripts/tune.py"
