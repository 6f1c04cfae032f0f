# Config validation, the dataset registry, the experiment groups and the output lists: every
# config mistake fails here, when the DAG is built, naming the key (recbench/plan/groups.py).
from pathlib import Path
import json
import re

import yaml
from snakemake.utils import validate

from models import REGISTRY
from recbench.plan.groups import (
    TUNED,
    ConfigError,
    all_runs,
    expand_groups,
    group_runs,
    load_external_models,
)
from recbench.data.parsers import DataError
from recbench.cost.grid import expand_profile
from recbench.data.registry import check_registry, load_registry
from recbench.tuning.studies import check_tuning, expand_studies

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
    # models made by a rule outside the engine (rules/external_*.smk), not in REGISTRY
    EXTERNAL = load_external_models(CONFIG_DIR / "external_models.yaml")
    check_tuning(config, EXTERNAL)  # search spaces: options, ranges (rules/tune.smk)
    GROUPS = expand_groups(
        config,
        yaml.safe_load((CONFIG_DIR / "schema.yaml").read_text()),
        DATASETS,
        EXTERNAL,
    )
    # {(dataset, model): Study}: the hyperparameter searches of variant tuned (rules/tune.smk)
    STUDIES = expand_studies(config, GROUPS)
except ConfigError as err:
    raise ValueError(str(err)) from None
RUNS = all_runs(GROUPS)
try:
    PROFILE = expand_profile(config)  # {study: [ProfileCell]}
except ConfigError as err:
    raise ValueError(str(err)) from None
PROFILE_CELLS = {cell.path: cell for cells in PROFILE.values() for cell in cells}
# the datasets to preprocess: those of the runs, and the top-level list (data-only configs)
USED_DATASETS = sorted({run.dataset for run in RUNS.values()} | set(config["datasets"]))


wildcard_constraints:
    dataset=r"[^/]+",
    model="|".join(re.escape(name) for name in sorted(REGISTRY)),
    variant=r"[^/]+",
    max_len=r"\d+",
    seed=r"\d+",
    group="|".join(re.escape(name) for name in GROUPS) or "^$",
    study="|".join(re.escape(name) for name in PROFILE) or "^$",
    policy="stored|recompute",
    batch=r"\d+",


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
    if wildcards.variant == TUNED:  # the study's best options (rules/tune.smk)
        inputs["tuned"] = rules.tune.output.best.format(
            dataset=wildcards.dataset, model=wildcards.model
        )
    if mode != "full":
        inputs["negatives"] = rules.sample_negatives.output[0].format(
            dataset=wildcards.dataset, mode=mode
        )
    return inputs


def run_overrides(wildcards):
    return run_of(wildcards).overrides


def run_train_settings(wildcards):
    return run_of(wildcards).train


def external_settings(wildcards):
    """An external model's run for its rule: identity, catalogue entry, train settings (JSON)."""
    run = run_of(wildcards)
    spec = {k: v for k, v in EXTERNAL[run.model].items() if k != "description"}
    checkout = (
        {"reference_checkout": REFERENCE_DIR} if "reference_model" in spec else {}
    )
    return json.dumps(run.identity() | {"spec": spec, "train": run.train} | checkout)


def reference_code_input(wildcards):
    """The checked copy of the authors' code, for a job that runs it (reference-*: a run of
    rule external_recbole or a profile cell)."""
    needed = wildcards.model.startswith(REFERENCE_PREFIX)
    return [rules.reference_code.output[0]] if needed else []


def train_gpus(wildcards):
    """GPUs of a train job: one per process (train.processes) when config `gpu` is true."""
    return run_of(wildcards).train.get("processes", 1) if config["gpu"] else 0


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


def group_histories(wildcards):
    return run_files(group_runs(GROUPS, wildcards.group), "history")


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
    inputs = {
        "sequences": rules.preprocess.output.sequences,
        "stats": rules.preprocess.output.stats,
    }
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


def profile_of(wildcards):
    """The profile cell behind a profile job's wildcards, as profile_cell's arguments."""
    path = (
        f"results/profile/{wildcards.device}/{wildcards.policy}/{wildcards.model}/"
        f"{wildcards.variant}/L{wildcards.max_len}/B{wildcards.batch}.json"
    )
    if path not in PROFILE_CELLS:
        raise ValueError(f"{path} is not a cell of the configured profile studies")
    cell = PROFILE_CELLS[path]
    return {
        "model": cell.model,
        "overrides": cell.overrides,
        "policy": cell.policy,
        "max_len": cell.max_len,
        "batch_size": cell.batch_size,
        "device": cell.device,
        "n_items": config["profile"]["n_items"],
        "steps": config["profile"]["steps"],
        "warmup": config["profile"]["warmup"],
    }


def study_description(wildcards):
    study = config["profile"]["studies"][wildcards.study]
    return study.get("description", wildcards.study)


def group_description(wildcards):
    return config["groups"][wildcards.group].get("description", wildcards.group)


def study_cells(wildcards):
    return [cell.path for cell in PROFILE[wildcards.study]]


def group_figure_kind(group):
    """How a group is drawn (recbench/reporting/figures.py); None = no figure of its own (Table 2 is
    drawn as Fig. 3, against the cost grid)."""
    spec = config["groups"][group]
    if spec.get("paper") == "table2":
        return None
    if spec.get("sweeps"):
        return "sensitivity"
    if spec.get("paper"):
        return "bars"
    runs = group_runs(GROUPS, group)
    if len({run.max_len for run in runs}) > 1:
        return "accuracy_length"
    if len({run.model for run in runs}) > 1:
        return None  # bars draw one model's variants (a tuned group: its table only)
    return "bars"


FIGURE_GROUPS = [g for g in GROUPS if group_figure_kind(g)]
MAIN_GROUPS = [g for g in GROUPS if config["groups"][g].get("paper") == "table2"]


def study_axis(study):
    """The x axis of a study's figure: max_len when the study has several, else the one
    option its option sets vary."""
    spec = config["profile"]["studies"][study]
    if len(spec["max_lens"]) > 1:
        return "max_len"
    sets = spec.get("overrides", [{}])
    varied = {
        k for over in sets for k in over if len({str(o.get(k)) for o in sets}) > 1
    }
    return varied.pop() if len(varied) == 1 else "max_len"


def main_max_len(group):
    return min(run.max_len for run in group_runs(GROUPS, group))


def figure_outputs():
    """Every figure this config can draw."""
    figures = expand(rules.profile_figure.output.png, study=list(PROFILE))
    figures += expand(rules.group_figure.output.png, group=FIGURE_GROUPS)
    if PROFILE_CELLS:
        figures += expand(rules.cost_accuracy_figure.output.png, group=MAIN_GROUPS)
    figures += expand(rules.training_curves.output.png, group=MAIN_GROUPS)
    return figures


def all_outputs():
    outputs = [rules.dataset_table.output.md]
    if RUNS:
        outputs.append(rules.runs_table.output.md)
        outputs += expand(rules.group_table.output.md, group=list(GROUPS))
    outputs += expand(rules.profile_table.output.md, study=list(PROFILE))
    if FIDELITY_STUDIES or FIDELITY_RUNS:
        outputs += [rules.fidelity_table.output.md, rules.fidelity_figure.output.png]
    return outputs + figure_outputs()
