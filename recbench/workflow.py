"""What the Snakefile asks of the library when it parses a config (rules/common.smk).

`Workflow.load(config, config_dir)` checks the whole config and expands it, so that every
mistake fails `snakemake --dry-run` naming its key (ValueError):

    datasets       the registry (config/datasets.yaml) with the config's additions, checked
    external       models made by a rule outside the engine (config/external_models.yaml)
    groups         {group: {section: [Run]}}        recbench/plan/groups.py
    runs           {results path: Run}
    studies        {(dataset, model): Study}        recbench/tuning/studies.py (variant tuned)
    profile        {study: [ProfileCell]}           recbench/cost/grid.py
    profile_cells  {results path: ProfileCell}

and answers the questions the rules ask of a job's wildcards (which run, which study, which
cell) and of a config (which groups get which figure, the x axis of a cost figure, which
studies and runs are compared with the authors' code), and of the data on disk (which data
rule must rebuild a damaged file; whether a finished job's data inputs are `ancient`:
recbench/data/integrity.py). The rule files only declare.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
)
from recbench.training.settings import identifying
from recbench.tuning.studies import Study, check_tuning, expand_studies


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
            external = load_external_models(config_dir / "external_models.yaml")
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
        return {"paper": spec.get("paper"), "description": spec.get("description", ""),
                "sections": {section: [run.identity() for run in runs]
                             for section, runs in self.groups[group].items()}}

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
