# A baseline as a rule: RecBole 1.2.1's own SASRec and GRU4Rec (config/external_models.yaml,
# rule external_recbole), trained through RecBole's API on the suite's processed data and
# written in the results contract (recbench/results.py), so they join every table and paired
# test. RecBole runs in its own pinned environment, never the suite's (it needs NumPy < 2):
# with --sdm conda the env envs/recbole.yaml, otherwise the virtual environment .venvs/recbole
# that rule recbole_env builds from envs/recbole-requirements.txt. The job runs
# `python -m recbench.external.recbole_run` there, with the suite's package folder on PYTHONPATH (only
# recbench.evaluation.metrics and recbench.io are imported from it). The train rule's model wildcard
# (rules/common.smk: models/REGISTRY) excludes these names.
import sys

import recbench

RECBOLE_MODELS = [m for m, e in EXTERNAL.items() if e["rule"] == "external_recbole"]
RECBOLE_VENV = ".venvs/recbole"
USE_CONDA = "conda" in {  # snakemake --sdm conda: the conda env replaces the venv
    str(m).lower().split(".")[-1]
    for m in getattr(workflow.deployment_settings, "deployment_method", ())
}
RECBOLE_PYTHON = "python" if USE_CONDA else f"{RECBOLE_VENV}/bin/python"
RECBOLE_READY = [] if USE_CONDA else [f"{RECBOLE_VENV}/installed"]


rule recbole_env:
    input:
        "envs/recbole-requirements.txt",
    output:
        f"{RECBOLE_VENV}/installed",
    log:
        "logs/recbole_env.log",
    conda:
        ENVIRONMENT
    params:
        python=sys.executable,  # venv takes its base interpreter, never its packages
    shell:
        "(venv=$(dirname {output:q}) && {params.python:q} -m venv --clear $venv"
        " && $venv/bin/python -m pip install --no-deps -r {input:q}"
        " && $venv/bin/python -m pip install $(grep '^torch==' {input:q})"
        " && $venv/bin/python -c 'import recbole, numpy; print(recbole.__version__, numpy.__version__)'"
        " && touch {output:q}) > {log:q} 2>&1"


rule external_recbole:
    input:
        unpack(train_inputs),
        env=RECBOLE_READY,
        reference=reference_code_input,
    output:
        metrics="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/metrics.json",
        history="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/history.csv",
        test_ranks="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/test_ranks.parquet",
        valid_ranks="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/valid_ranks.parquet",
    log:
        "logs/external_recbole/{dataset}/{model}/{variant}/L{max_len}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/external_recbole/{dataset}/{model}/{variant}/L{max_len}/seed{seed}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(m) for m in RECBOLE_MODELS) or "^$",
        variant="default",  # external models take no options
    conda:
        "../envs/recbole.yaml"
    threads: 2
    resources:
        gpu=1 if config["gpu"] else 0,
    params:
        python=RECBOLE_PYTHON,
        recbench=str(Path(recbench.__file__).resolve().parents[1]),
        settings=external_settings,
    shell:
        "PYTHONPATH={params.recbench:q} {params.python:q} -m recbench.external.recbole_run"
        " --settings {params.settings:q} --sequences {input.sequences:q}"
        " --metrics {output.metrics:q} --threads {threads} > {log:q} 2>&1"
