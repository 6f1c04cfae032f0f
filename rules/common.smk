# Config validation, the dataset registry, the experiment groups and the output lists: every
# config mistake fails here, when the DAG is built, naming the key (recbench/experiments.py).
from pathlib import Path
import re

import yaml
from snakemake.utils import validate

from models import REGISTRY
from recbench.experiments import ConfigError, all_runs, expand_groups, group_runs
from recbench.parsers import DataError
from recbench.registry import check_registry, load_registry

validate(
    config, schema="../config/schema.yaml"
)  # fills defaults; names a bad key or type

CONFIG_DIR = Path(workflow.basedir) / "config"
# every rule runs in the project's one environment (with --sdm conda; else the active one)
ENVIRONMENT = "../environment.yml"
# the shipped registry and the config's additions, each entry checked against
# config/dataset_schema.yaml (defaults filled in); a bad entry names the dataset and the key
try:
    DATASETS = check_registry(
        load_registry(CONFIG_DIR / "datasets.yaml") | config["dataset_registry"],
        where="config/datasets.yaml or config 'dataset_registry'",
    )
except DataError as err:
    raise ValueError(str(err)) from None

try:
    GROUPS = expand_groups(
        config, yaml.safe_load((CONFIG_DIR / "schema.yaml").read_text()), DATASETS
    )
except ConfigError as err:
    raise ValueError(str(err)) from None
RUNS = all_runs(GROUPS)
# the datasets to preprocess: those of the runs, and the top-level list (data-only configs)
USED_DATASETS = sorted({run.dataset for run in RUNS.values()} | set(config["datasets"]))


wildcard_constraints:
    dataset=r"[^/]+",
    model="|".join(re.escape(name) for name in sorted(REGISTRY)),
    variant=r"[^/]+",
    max_len=r"\d+",
    seed=r"\d+",
    group="|".join(re.escape(name) for name in GROUPS) or "^$",


def dataset_entry(wildcards):
    return DATASETS[wildcards.dataset]


def run_of(wildcards):
    """The Run behind a train job's wildcards (only configured runs can be built)."""
    path = (
        f"results/{wildcards.dataset}/{wildcards.model}/{wildcards.variant}/"
        f"L{wildcards.max_len}/seed{wildcards.seed}"
    )
    if path not in RUNS:
        raise ValueError(f"{path} is not a run of the configured groups {list(GROUPS)}")
    return RUNS[path]


def train_inputs(wildcards):
    """The processed dataset, and its stored negatives when the run samples (eval_mode)."""
    inputs = {
        "sequences": rules.preprocess.output.sequences.format(
            dataset=wildcards.dataset
        ),
        "stats": rules.preprocess.output.stats.format(dataset=wildcards.dataset),
    }
    mode = run_of(wildcards).train.get("eval_mode", "full")
    if mode != "full":
        inputs["negatives"] = rules.sample_negatives.output[0].format(
            dataset=wildcards.dataset, mode=mode
        )
    return inputs


def run_overrides(wildcards):
    return run_of(wildcards).overrides


def run_train_settings(wildcards):
    return run_of(wildcards).train


def run_files(runs, name):
    """The train rule's output `name` for each run."""
    return [
        getattr(rules.train.output, name).format(
            dataset=run.dataset,
            model=run.model,
            variant=run.variant,
            max_len=run.max_len,
            seed=run.seed,
        )
        for run in runs
    ]


def group_metrics(wildcards):
    return run_files(group_runs(GROUPS, wildcards.group), "metrics")


def group_test_ranks(wildcards):
    return run_files(group_runs(GROUPS, wildcards.group), "test_ranks")


def group_layout(wildcards):
    """What the group table script needs: the paper block and the runs of each section."""
    return {
        "paper": config["groups"][wildcards.group].get("paper"),
        "description": config["groups"][wildcards.group].get("description", ""),
        "sections": {
            section: [run.identity() for run in runs]
            for section, runs in GROUPS[wildcards.group].items()
        },
    }


def all_outputs():
    outputs = [rules.dataset_table.output.md]
    if RUNS:
        outputs.append(rules.runs_table.output.md)
        outputs += expand(rules.group_table.output.md, group=list(GROUPS))
    return outputs
