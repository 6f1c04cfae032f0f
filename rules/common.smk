# Config validation, the dataset registry and the output lists. Kept small on purpose.
from pathlib import Path

import yaml
from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")  # fills defaults; names a bad key or type

with open(Path(workflow.basedir) / "config" / "datasets.yaml") as f:
    DATASETS = yaml.safe_load(f)
DATASETS.update(config["dataset_registry"])

_unknown = [d for d in config["datasets"] if d not in DATASETS]
if _unknown:
    raise ValueError(
        f"config 'datasets' names unknown dataset(s) {_unknown}; "
        f"known (config/datasets.yaml or config 'dataset_registry'): {sorted(DATASETS)}"
    )

wildcard_constraints:
    dataset=r"[^/]+",
    model=r"[^/]+",
    max_len=r"\d+",
    seed=r"\d+",


def dataset_entry(wildcards):
    return DATASETS[wildcards.dataset]


def model_overrides(wildcards):
    return config["model_overrides"].get(wildcards.model, {})


def run_dirs():
    return expand(
        "results/{dataset}/{model}/L{max_len}/seed{seed}",
        dataset=config["datasets"], model=config["models"],
        max_len=config["max_lens"], seed=config["seeds"],
    )


def all_outputs():
    outputs = ["reports/dataset_stats.md"]
    if config["models"]:
        outputs.append("reports/results.md")
    return outputs
