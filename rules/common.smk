# Config validation, the dataset registry, the experiment groups and the output lists: every
# config mistake fails here, when the DAG is built, naming the key (recbench/workflow.py).
from pathlib import Path
import json
import re

from snakemake.utils import validate

from models import REGISTRY
from recbench.plan.groups import TUNED, group_runs
from recbench.workflow import (
    CURVES,
    DATASETS_CATEGORY,
    EVERY_RUN,
    FIDELITY,
    FIG3,
    TUNING,
    Workflow,
    check_config,
)

CONFIG_DIR = Path(workflow.basedir) / "config"
# a bad key, type or value fails here in one line naming the key and the nearest valid one
check_config(config, CONFIG_DIR / "schema.yaml")
validate(config, schema="../config/schema.yaml")  # fills the defaults
# every rule runs in the project's one environment (with --sdm conda; else the active one)
ENVIRONMENT = "../environment.yml"
# the config checked and expanded: the dataset registry (each entry checked against
# config/dataset_schema.yaml), external models, groups -> runs, tuning studies, cost cells;
# a mistake names the key (recbench/workflow.py)
WORKFLOW = Workflow.load(config, CONFIG_DIR)
DATASETS = WORKFLOW.datasets
# models made by a rule outside the engine (rules/external_*.smk), not in REGISTRY
EXTERNAL = WORKFLOW.external
GROUPS = WORKFLOW.groups
RUNS = WORKFLOW.runs
# {(dataset, model): Study}: the hyperparameter searches of variant tuned (rules/tune.smk)
STUDIES = WORKFLOW.studies
PROFILE = WORKFLOW.profile  # {study: [ProfileCell]}
PROFILE_CELLS = WORKFLOW.profile_cells
USED_DATASETS = WORKFLOW.used_datasets
# {model: {display_name, deterministic}}: what the reporting rules are told of each model (params)
MODEL_INFO = WORKFLOW.model_info()


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


def fetch_entry(wildcards):
    """The dataset's registry entry, with a rebuild count once its raw copy is damaged or its
    mirror file changed (recbench/data/integrity.py)."""
    return WORKFLOW.fetch_entry(wildcards.dataset)


def preprocess_entry(wildcards):
    """The same for its processed files."""
    return WORKFLOW.preprocess_entry(wildcards.dataset)


def run_of(wildcards):
    """The Run behind a train job's wildcards (only configured runs can be built)."""
    return WORKFLOW.run(
        wildcards.dataset,
        wildcards.model,
        wildcards.variant,
        wildcards.max_len,
        wildcards.seed,
    )


def data_file(path, settled):
    """A data input; `ancient` when its content is known to be what the job used or will
    use, so a rebuild of a damaged file or a newer file time reruns nothing
    (recbench/data/integrity.py)."""
    return ancient(path) if settled else path


def negatives_input(wildcards):
    made = rules.sample_negatives.output[0].format(**wildcards)
    return data_file(
        rules.preprocess.output.sequences.format(dataset=wildcards.dataset),
        WORKFLOW.made_from_settled_data(wildcards.dataset, made),
    )


def train_inputs(wildcards):
    """The processed dataset, and its stored negatives when the run samples (eval_mode)."""
    run = run_of(wildcards)
    settled = WORKFLOW.made_from_settled_data(run.dataset, f"{run.path}/metrics.json")
    inputs = {
        "sequences": data_file(
            rules.preprocess.output.sequences.format(dataset=wildcards.dataset), settled
        ),
        "stats": data_file(
            rules.preprocess.output.stats.format(dataset=wildcards.dataset), settled
        ),
    }
    mode = run.train.get("eval_mode", "full")
    if wildcards.variant == TUNED:  # the study's best options (rules/tune.smk)
        inputs["tuned"] = rules.tune.output.best.format(
            dataset=wildcards.dataset, model=wildcards.model
        )
    if mode != "full":
        inputs["negatives"] = data_file(
            rules.sample_negatives.output[0].format(
                dataset=wildcards.dataset, mode=mode
            ),
            settled,
        )
    return inputs


def run_overrides(wildcards):
    return run_of(wildcards).overrides


def run_train_settings(wildcards):
    return WORKFLOW.train_params(run_of(wildcards))


def external_settings(wildcards):
    """An external model's run for its rule: identity, catalogue entry, train settings (JSON)."""
    run = run_of(wildcards)
    spec = {k: v for k, v in EXTERNAL[run.model].items() if k != "description"}
    checkout = (
        {"reference_checkout": REFERENCE_DIR} if "reference_model" in spec else {}
    )
    train = WORKFLOW.train_params(run)
    return json.dumps(run.identity() | {"spec": spec, "train": train} | checkout)


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


def group_metrics(wildcards):
    return run_files(group_runs(GROUPS, wildcards.group), "metrics")


def group_test_ranks(wildcards):
    return run_files(group_runs(GROUPS, wildcards.group), "test_ranks")


def group_layout(wildcards):
    return WORKFLOW.group_layout(wildcards.group)


def study_of(wildcards):
    """The study behind a tune job's wildcards, as the rule's params (a dict)."""
    return WORKFLOW.study(wildcards.dataset, wildcards.model).as_dict()


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
    best = rules.tune.output.best.format(**wildcards)
    settled = WORKFLOW.made_from_settled_data(wildcards.dataset, best)
    return {
        k: data_file(v.format(dataset=wildcards.dataset), settled)
        for k, v in inputs.items()
    }


def tuning_outputs():
    """The tuning table and every study's plots (none without a tuned variant)."""
    if not STUDIES:
        return []
    pairs = {"dataset": [s.dataset for s in STUDIES.values()]}
    pairs["model"] = [s.model for s in STUDIES.values()]
    plots = rules.tune.output.history, rules.tune.output.importances
    tables = [rules.tuning_table.output.md, rules.tuning_table.output.html]
    return tables + expand(plots, zip, **pairs)


def profile_of(wildcards):
    """The profile cell behind a profile job's wildcards, as profile_cell's arguments."""
    return WORKFLOW.cell_arguments(
        wildcards.device,
        wildcards.policy,
        wildcards.model,
        wildcards.variant,
        wildcards.max_len,
        wildcards.batch,
    )


def study_description(wildcards):
    study = config["profile"]["studies"][wildcards.study]
    return study.get("description", wildcards.study)


def group_description(wildcards):
    return config["groups"][wildcards.group].get("description", wildcards.group)


# the HTML report's categories: the paper's table or figure a group or study reproduces
# ("Table 2", "Fig. 4"; recbench/workflow.py), the front page's layout
def group_category(wildcards):
    return WORKFLOW.group_category(wildcards.group)


def study_category(wildcards):
    return WORKFLOW.study_category(wildcards.study)


def front_page_layout():
    files = [Path(f) for f in workflow.configfiles]
    return WORKFLOW.front_page_layout(
        f.relative_to(Path.cwd()) if f.is_relative_to(Path.cwd()) else f for f in files
    )


def front_page_text():
    """The report's front page: the one rule front_page wrote, or until then a page that says
    how to get it."""
    made = Path(rules.front_page.output[0])
    return str(made) if made.exists() else "reports/captions/front_page_missing.rst"


def study_cells(wildcards):
    return [cell.path for cell in PROFILE[wildcards.study]]


def group_figure_kind(group):
    return WORKFLOW.group_figure_kind(group)


FIGURE_GROUPS = WORKFLOW.figure_groups
MAIN_GROUPS = WORKFLOW.main_groups


def study_axis(study):
    return WORKFLOW.study_axis(study)


def main_max_len(group):
    return WORKFLOW.main_max_len(group)


def figure_outputs():
    """Every figure this config can draw."""
    figures = expand(rules.profile_figure.output.png, study=list(PROFILE))
    figures += expand(rules.group_figure.output.png, group=FIGURE_GROUPS)
    if PROFILE_CELLS:
        figures += expand(rules.cost_accuracy_figure.output.png, group=MAIN_GROUPS)
    figures += expand(rules.training_curves.output.png, group=MAIN_GROUPS)
    return figures


def all_outputs():
    """Every table and figure, and every run's metrics.json: a run whose metrics.json is lost is
    retrained by a plain `snakemake`, and the tables that show it are rebuilt after it
    (Snakemake does not rebuild a lost intermediate file when the final targets exist).
    """
    # each table by its Markdown and its HTML page (the report's), so that a table whose page
    # is missing is written again
    outputs = [rules.dataset_table.output.md, rules.dataset_table.output.html]
    outputs.append(rules.front_page.output[0])
    outputs += run_files(RUNS.values(), "metrics")
    if RUNS:
        outputs += [rules.runs_table.output.md, rules.runs_table.output.html]
        outputs += expand(
            [rules.group_table.output.md, rules.group_table.output.html],
            group=list(GROUPS),
        )
    outputs += expand(
        [rules.profile_table.output.md, rules.profile_table.output.html],
        study=list(PROFILE),
    )
    if FIDELITY_STUDIES or FIDELITY_RUNS:
        outputs += [rules.fidelity_table.output.md, rules.fidelity_table.output.html]
        outputs.append(rules.fidelity_figure.output.png)
    return outputs + figure_outputs()
