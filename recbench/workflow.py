"""What the Snakefile asks of the library when it parses a config (rules/common.smk).

`check_config(config, schema)` checks the config against config/schema.yaml first: its first
problem in one line, the key, what is wrong and the nearest valid key or value
("config train.epoch: unknown key; did you mean 'epochs'?").
`Workflow.load(config, config_dir)` checks the whole config and expands it, so that every
mistake fails `snakemake --dry-run` naming its key (ValueError):

    datasets       the registry (config/datasets.yaml) with the config's additions, checked
    external       models made by a rule outside the engine (config/external_models.yaml
                   with the config's `external_model_registry` over it); each entry's `rule`
                   is checked against the workflow's rules after they are all read
                   (check_external_rules, the Snakefile's last line)
    groups         {group: {section: [Run]}}        recbench/plan/groups.py
    runs           {results path: Run}
    studies        {(dataset, model): Study}        recbench/tuning/studies.py (variant tuned)
    profile        {study: [ProfileCell]}           recbench/cost/grid.py
    profile_cells  {results path: ProfileCell}

and answers the questions the rules ask of a job's wildcards (which run, which study, which
cell) and of a config (which groups get which figure, the x axis of a cost figure, which
studies and runs are compared with the authors' code), and of the data on disk (which data
rule must rebuild a damaged file; whether a finished job's data inputs are `ancient`:
recbench/data/integrity.py); and what the reporting rules are told: each model's display name
and whether it is deterministic (model_info, their params: the reporting layer never imports a
model), the HTML report's category of each table and figure (the paper's "Table 2", "Fig. 4")
and its front page. The rule files only declare.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from models import REGISTRY, model_class
from recbench.cost.grid import ProfileCell, expand_profile
from recbench.data.download import mirror_origin, mirror_setting
from recbench.data.integrity import DatasetCheck, check_dataset, trained_on_settled_data
from recbench.data.parsers import DataError
from recbench.data.registry import check_registry, load_registry
from recbench.external.catalogue import MODELS as REFERENCE_MODELS
from recbench.external.catalogue import PREFIX as REFERENCE_PREFIX
from recbench.plan.groups import (
    ConfigError,
    Run,
    all_runs,
    expand_groups,
    group_runs,
    load_external_models,
    model_defaults,
    nearest,
)
from recbench.training.settings import identifying
from recbench.tuning.studies import Study, check_tuning, expand_studies

# The HTML report's categories: a group's or a cost study's `paper` key -> the paper's table or
# figure it reproduces (the report's menu); the rest is "Beyond the paper".
PAPER_PARTS = {"table2": "Table 2", "table3": "Table 3", "fig4": "Fig. 4",
               "fig5_position_encoding": "Fig. 5", "fig5_activation": "Fig. 5",
               "fig6": "Fig. 6", "fig7": "Fig. 7", "fig8": "Fig. 8"}
BEYOND = "Beyond the paper"
# the run folder's files, as a rule's output patterns (rules/train.smk; a baseline's own rule)
RUN_FOLDER = "results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/"
DATASETS_CATEGORY = "Table 1"
FIG3 = "Fig. 3"
CURVES = "Training curves"
TUNING = "Hyperparameter search"
FIDELITY = "Fidelity: ours beside the authors' code"
EVERY_RUN = "Every run"
ORDER = [DATASETS_CATEGORY, "Table 2", "Table 3", FIG3, "Fig. 4", "Fig. 5", "Fig. 6", "Fig. 7",
         "Fig. 8", BEYOND, CURVES, TUNING, FIDELITY, EVERY_RUN]


def check_config(config: dict, schema: dict | str | Path) -> None:
    """The config against config/schema.yaml, its first problem as one short ValueError: the
    key, what is wrong and, for an unknown key or value, the nearest valid one
    ("config train.epoch: unknown key; did you mean 'epochs'?"), instead of the schema dump of
    snakemake.utils.validate (which the Snakefile calls afterwards, to fill the defaults)."""
    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"config: must be a mapping of keys to values, got {_short(config)}")
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if errors:
        raise ValueError(config_problem(jsonschema.exceptions.best_match(errors)))


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def config_problem(err: jsonschema.ValidationError) -> str:
    """One schema error of the config as one line naming the key."""
    where = ".".join(str(p) for p in err.absolute_path)
    at = f"config {where}" if where else "config"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in known]
        if unknown:
            key = unknown[0]
            name = f"{where}.{key}" if where else str(key)
            hint = nearest(key, sorted(known)) or (
                f"; valid keys: {', '.join(sorted(known))}" if known else "")
            return f"config {name}: unknown key{hint}"
    if err.validator == "enum":
        return (f"{at}: {_short(err.instance)} is not one of {list(err.validator_value)}"
                f"{nearest(err.instance, err.validator_value)}")
    if err.validator == "type":
        wanted = err.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{at}: {_short(err.instance)} is not of type {wanted}"
    if err.validator == "required":
        return f"{at}: {err.message}"
    message = err.message if len(err.message) <= 200 else err.message[:197] + "..."
    return f"{at}: {message}"


def _without_constraints(pattern: str) -> str:
    """'results/{model,a|b}/x' -> 'results/{model}/x' (a constraint may hold {m,n})."""
    return re.sub(r"\{\s*(\w+)\s*,(?:[^{}]|\{[^{}]*\})*\}", r"{\1}", str(pattern))


@dataclass
class Workflow:
    config: dict
    datasets: dict
    external: dict
    groups: dict
    studies: dict[tuple[str, str], Study]
    profile: dict[str, list[ProfileCell]]
    runs: dict[str, Run] = field(init=False)
    profile_cells: dict[str, ProfileCell] = field(init=False)
    _model_info: dict | None = field(default=None, init=False, repr=False)
    data_dir: Path = Path("data")
    _checks: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.runs = all_runs(self.groups)
        self.profile_cells = {cell.path: cell for cells in self.profile.values()
                              for cell in cells}

    @classmethod
    def load(cls, config: dict, config_dir: str | Path) -> "Workflow":
        """The config (already validated against config/schema.yaml) checked and expanded."""
        config_dir = Path(config_dir)
        try:
            datasets = check_registry(
                load_registry(config_dir / "datasets.yaml") | config["dataset_registry"],
                where="config/datasets.yaml or config 'dataset_registry'")
        except DataError as err:
            raise ValueError(str(err)) from None
        try:
            external = load_external_models(config_dir / "external_models.yaml",
                                            config.get("external_model_registry", {}))
            check_tuning(config, external)
            groups = expand_groups(config, yaml.safe_load((config_dir / "schema.yaml").read_text()),
                                   datasets, external)
            studies = expand_studies(config, groups)
            profile = expand_profile(config)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return cls(config, datasets, external, groups, studies, profile)

    # --- what the data rules need -------------------------------------------------------

    @property
    def used_datasets(self) -> list[str]:
        """The datasets to preprocess: those of the runs, and the top-level list (data-only
        configs)."""
        return sorted({run.dataset for run in self.runs.values()} | set(self.config["datasets"]))

    # --- the data on disk against their checksums (recbench/data/integrity.py) ------------

    def data_check(self, dataset: str) -> DatasetCheck:
        """The dataset's files against their records, once per parse; what is damaged or
        changed is said on stderr."""
        if dataset not in self._checks:
            entry = self.datasets[dataset]
            origin = None if entry["format"] == "synthetic" else mirror_origin(
                dataset, entry, mirror_setting(self.config.get("data_mirror")))
            check = check_dataset(dataset, entry, origin, self.data_dir)
            for note in check.notes:
                print(f"recbench: {note}", file=sys.stderr)
            self._checks[dataset] = check
        return self._checks[dataset]

    def fetch_entry(self, dataset: str) -> dict:
        """Rule fetch_raw's `entry` parameter: the registry entry, with the rebuild count once
        the raw copy was rebuilt (a new count reruns the rule)."""
        rebuilds = self.data_check(dataset).raw_rebuilds
        entry = self.datasets[dataset]
        return {**entry, "rebuild": rebuilds} if rebuilds else entry

    def preprocess_entry(self, dataset: str) -> dict:
        """Rule preprocess's `entry` parameter, the same way."""
        rebuilds = self.data_check(dataset).processed_rebuilds
        entry = self.datasets[dataset]
        return {**entry, "rebuild": rebuilds} if rebuilds else entry

    def made_from_settled_data(self, dataset: str, output: str | Path) -> bool:
        """Whether a job's `output` (a run's metrics.json, a study's best.json, stored
        negatives) was made from the processed data as they are recorded, and those stand:
        its data inputs are then `ancient` (a rebuild or a file time reruns nothing)."""
        return trained_on_settled_data(self.data_check(dataset), output)

    # --- a job's wildcards -> what it runs -----------------------------------------------

    def run(self, dataset, model, variant, max_len, seed) -> Run:
        """The Run behind a train job's wildcards (only configured runs can be built)."""
        path = f"results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}"
        if path not in self.runs:
            raise ValueError(f"{path} is not a run of the configured groups {list(self.groups)}")
        return self.runs[path]

    def train_params(self, run: Run) -> dict:
        """A run's train settings as its job's params: settings added after runs existed are
        left out at their earlier value, so that adding one re-queues no finished run."""
        return identifying(run.train)

    def study(self, dataset, model) -> Study:
        if (dataset, model) not in self.studies:
            raise ValueError(f"results/tuning/{dataset}/{model} is not a study of the configured "
                             "groups (a group asks for it with overrides [{tuned: true}])")
        return self.studies[dataset, model]

    def cell_arguments(self, device, policy, model, variant, max_len, batch) -> dict:
        """The profile cell behind a profile job's wildcards, as profile_cell's arguments."""
        path = f"results/profile/{device}/{policy}/{model}/{variant}/L{max_len}/B{batch}.json"
        if path not in self.profile_cells:
            raise ValueError(f"{path} is not a cell of the configured profile studies")
        cell, profile = self.profile_cells[path], self.config["profile"]
        return {"model": cell.model, "overrides": cell.overrides, "policy": cell.policy,
                "max_len": cell.max_len, "batch_size": cell.batch_size, "device": cell.device,
                "n_items": profile["n_items"], "steps": profile["steps"],
                "warmup": profile["warmup"]}

    def group_layout(self, group: str) -> dict:
        """What the group table script needs: the paper block and the runs of each section."""
        spec = self.config["groups"][group]
        info = self.model_info()
        models = sorted({run.model for run in group_runs(self.groups, group)})
        return {"paper": spec.get("paper"), "description": spec.get("description", ""),
                "sections": {section: [run.identity() for run in runs]
                             for section, runs in self.groups[group].items()},
                "deterministic": [m for m in models if info[m]["deterministic"]]}

    def model_defaults(self, group: str) -> dict[str, dict]:
        """{model: its Config defaults} of a group's models (none for an external model): how
        a figure names a default variant (scripts/group_figure.py)."""
        return {m: model_defaults(m, self.external)
                for m in sorted({run.model for run in group_runs(self.groups, group)})}

    # --- which tables and figures a config asks for ---------------------------------------

    def group_figure_kind(self, group: str) -> str | None:
        """How a group is drawn (recbench/reporting/figures.py); None = no figure of its own
        (Table 2 is drawn as Fig. 3, against the cost grid)."""
        spec = self.config["groups"][group]
        if spec.get("paper") == "table2":
            return None
        if spec.get("sweeps"):
            return "sensitivity"
        if spec.get("paper"):
            return "bars"
        runs = group_runs(self.groups, group)
        if len({run.max_len for run in runs}) > 1:
            return "accuracy_length"
        if len({run.model for run in runs}) > 1:
            return None  # bars draw one model's variants (a tuned group: its table only)
        return "bars"

    @property
    def figure_groups(self) -> list[str]:
        return [g for g in self.groups if self.group_figure_kind(g)]

    @property
    def main_groups(self) -> list[str]:
        """The groups laid out as Table 2."""
        return [g for g in self.groups if self.config["groups"][g].get("paper") == "table2"]

    def main_max_len(self, group: str) -> int:
        return min(run.max_len for run in group_runs(self.groups, group))

    def study_axis(self, study: str) -> str:
        """The x axis of a cost study's figure: max_len when the study has several, else the
        one option its option sets vary."""
        spec = self.config["profile"]["studies"][study]
        if len(spec["max_lens"]) > 1:
            return "max_len"
        sets = spec.get("overrides", [{}])
        varied = {k for over in sets for k in over
                  if len({str(o.get(k)) for o in sets}) > 1}
        return varied.pop() if len(varied) == 1 else "max_len"

    # --- the rules of external models ------------------------------------------------------

    def check_external_rules(self, rules: dict[str, list[str]]) -> None:
        """Each external model's `rule` names a rule of the workflow ({name: its output
        patterns}, wildcard constraints allowed: the Snakefile passes `workflow.rules`) that
        writes the run folder's metrics.json and test_ranks.parquet; else ValueError naming
        the entry's key."""
        rules = {name: [_without_constraints(o) for o in outputs]
                 for name, outputs in rules.items()}
        user = set(self.config.get("external_model_registry", {}))
        for model, entry in self.external.items():
            key = (f"config external_model_registry.{model}.rule" if model in user
                   else f"config/external_models.yaml {model}.rule")
            rule = entry["rule"]
            if rule not in rules:
                raise ValueError(f"{key}: no rule {rule!r} in this workflow"
                                 f"{nearest(rule, rules) or ''} (include its rules/<rule>.smk "
                                 "from the Snakefile: docs/adding_a_model.md)")
            for name in ("metrics.json", "test_ranks.parquet"):
                want = RUN_FOLDER + name
                if want not in rules[rule]:
                    raise ValueError(f"{key}: rule {rule!r} does not write {want} (its outputs: "
                                     f"{rules[rule]}; docs/adding_a_model.md)")

    # --- what the reporting rules are told about the models ----------------------------------

    def model_info(self) -> dict[str, dict]:
        """{model: {"display_name", "deterministic"}} for every model of the runs and the cost
        cells, the reporting rules' params (recbench/names.py `declare`; the tables): the name
        a model file declares (class attribute `display_name`) or an external model's entry
        (`display_name:`), and whether its runs are the same whatever the seed (an external
        entry's `deterministic: true`; a model file that is not learned, as Popularity)."""
        if self._model_info is not None:
            return self._model_info
        models = {run.model for run in self.runs.values()}
        models |= {cell.model for cell in self.profile_cells.values()}
        info = self._model_info = {}
        for model in sorted(models):
            if model in self.external:
                entry = self.external[model]
                name, fixed = entry.get("display_name"), bool(entry.get("deterministic", False))
            elif model in REGISTRY:
                cls = model_class(model)
                name, fixed = getattr(cls, "display_name", None), not cls.learned
            else:
                name, fixed = None, False
            info[model] = {"display_name": name, "deterministic": fixed}
        return info

    # --- the HTML report: categories and the front page --------------------------------------

    def group_category(self, group: str) -> str:
        """The report's category of a group's table and figure: the paper's table or figure
        named by its `paper` key ("Table 2", "Fig. 4"), else "Beyond the paper"."""
        return PAPER_PARTS.get(self.config["groups"][group].get("paper"), BEYOND)

    def study_category(self, study: str) -> str:
        """The report's category of a cost study (its `paper` key: fig6, fig7)."""
        return PAPER_PARTS.get(self.config["profile"]["studies"][study].get("paper"), BEYOND)

    def categories(self) -> list[str]:
        """The report's categories this config fills, in the paper's order (Table 1, Table 2,
        ..., Fig. 3, ..., Fig. 8), then the rest."""
        found = {DATASETS_CATEGORY} | {self.group_category(g) for g in self.groups}
        found |= {self.study_category(s) for s in self.profile}
        if self.main_groups:
            found |= {CURVES} | ({FIG3} if self.profile_cells else set())
        if self.studies:
            found.add(TUNING)
        if self.fidelity_studies or self.fidelity_runs:
            found.add(FIDELITY)
        if self.runs:
            found.add(EVERY_RUN)
        return [c for c in ORDER if c in found]

    def front_page_layout(self, configfiles=()) -> dict:
        """What the report's front page says (recbench/reporting/front_page.py), as the rule's
        params: the config files, each group and cost study with its category and size, the
        datasets' sources and the report's categories."""
        return {
            "configfiles": [str(f) for f in configfiles],
            "groups": [{"name": g, "description": self.config["groups"][g].get("description", ""),
                        "category": self.group_category(g),
                        "runs": len(group_runs(self.groups, g))} for g in self.groups],
            "studies": [{"name": s, "description": self.config["profile"]["studies"][s].get(
                             "description", ""), "category": self.study_category(s),
                         "cells": len(cells)} for s, cells in self.profile.items()],
            "datasets": {d: {k: self.datasets[d].get(k) for k in ("format", "url", "file")}
                         for d in self.used_datasets},
            "tuning": [f"{s.dataset}/{s.model}" for s in self.studies.values()],
            "categories": self.categories(),
        }

    # --- ours beside the authors' code (rules/reference.smk) --------------------------------

    @property
    def fidelity_studies(self) -> list[str]:
        """Cost studies that measure the authors' code of a model (reference-<model>)."""
        return [study for study, cells in self.profile.items()
                if any(cell.model.startswith(REFERENCE_PREFIX) for cell in cells)]

    @property
    def fidelity_runs(self) -> list[Run]:
        """The runs of every group that trains the authors' code, of the models it has."""
        return [run for group in self.groups
                if any(run.model.startswith(REFERENCE_PREFIX)
                       for run in group_runs(self.groups, group))
                for run in group_runs(self.groups, group)
                if run.model.removeprefix(REFERENCE_PREFIX) in REFERENCE_MODELS]
