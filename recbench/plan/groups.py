"""Experiment groups: the config's named groups expanded into runs, checked before any job.

A run is identified by (dataset, model, variant, max_len, seed) and lives in
`results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/`. Its variant is a readable name
made from the model options it sets that differ from the model's own defaults
(`num_layers=1`, `gate=false+local_shortcut=false`); `default` when there are none. So two
runs with different options never share a folder, and the same run asked for by two groups
(Table 2's RecGRELA and Table 3's 4-layer row) is trained once.

A group (config key `groups`) is a block of lists whose cross product gives its runs:

    datasets, models, max_lens, seeds    default: the config's top-level lists
    overrides                            list of model-option dicts (default [{}]); each applies
                                         to every model of the group that has those options;
                                         `{tuned: true}` = variant `tuned`: the best options of
                                         the model's Optuna study (recbench/tuning/studies.py), for
                                         every model of the group with a `tuning.space`
    train                                train settings for this group only (epochs, ...)
    sweeps                               {name: partial block}: one-factor sweeps; each is
                                         merged over the group's own block and expanded alone

Train settings of a run: config `train`, then `train_by_dataset[dataset]`, then the group's.

External models (config/external_models.yaml, or a config's `external_model_registry`: made by
a rule running outside code, e.g. RecBole's own SASRec) are named in `models` like any model;
the config key `external_models` adds them to every group that keeps the top-level `models`.
They take no options (variant `default`), and each declares the train settings its rule
supports (`requires`); one declared `deterministic` runs once, for the group's first seed.
Everything a user can get wrong (a model name, an option name or value, a group name, two
groups asking for the same run with different settings) fails here, when the workflow is
built, naming what is wrong, instead of hours later in a training job.
"""
from __future__ import annotations

import dataclasses
import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from models import REGISTRY, model_class
from recbench.plan.variants import variant_name

EXTERNAL_PATH = Path(__file__).resolve().parents[2] / "config" / "external_models.yaml"
GROUP_KEYS = {"description", "paper", "datasets", "models", "max_lens", "seeds", "overrides", "train",
              "sweeps"}


TUNED = "tuned"     # the variant (and the option-set key) of a run with a study's best options


class ConfigError(ValueError):
    """A config mistake found when the workflow is built; the message names the key."""


def nearest(word, choices) -> str:
    """"; did you mean 'x'?" for the valid choice nearest to a misspelt `word` (difflib), or ""."""
    close = difflib.get_close_matches(str(word), sorted(map(str, choices)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def model_fields(model: str, external=()) -> set[str]:
    if model in external:
        return set()
    return {f.name for f in dataclasses.fields(model_class(model).Config)} - {"max_len"}


def model_defaults(model: str, external=()) -> dict:
    """The model's Config defaults (the reference hyperparameters); none for an external one."""
    if model in external:
        return {}
    return dataclasses.asdict(model_class(model).Config())


def load_external_models(path=EXTERNAL_PATH, extra: dict | None = None) -> dict[str, dict]:
    """config/external_models.yaml, with a config's `external_model_registry` entries (`extra`)
    merged over it: {name: entry}, each checked (check_external_models)."""
    path = Path(path)
    try:
        catalogue = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the external models: {err}") from None
    if not isinstance(catalogue, dict):
        raise ConfigError(f"{path}: must map model names to entries")
    where = {name: f"{path.name}: external model {name!r}" for name in catalogue}
    for name in extra or {}:
        where[name] = f"config external_model_registry.{name}"
    return check_external_models(catalogue | (extra or {}), where)


def check_external_models(catalogue: dict, where: dict | None = None) -> dict[str, dict]:
    """Each entry: `rule` and `description` (strings), optional `display_name` (string: how
    tables and legends name it), `deterministic` (bool: its result does not depend on the
    seed, so it runs once per group, for the group's first seed) and `requires` ({train key:
    [allowed values]}); names distinct from models/REGISTRY. `where` names each entry's place
    in an error."""
    where = where or {}
    for name, entry in catalogue.items():
        at = where.get(name, f"external model {name!r}")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", str(name)):
            raise ConfigError(f"{at}: a name is lower-case letters, digits, '_', '.', '-'")
        if name in REGISTRY:
            raise ConfigError(f"{at} has the name of a registered model (models/__init__.py)")
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("rule", "description")):
            raise ConfigError(f"{at} needs `rule` (the rule that makes its runs) and "
                              "`description`, both strings")
        requires = entry.get("requires", {})
        if not isinstance(requires, dict) or not all(isinstance(v, list)
                                                     for v in requires.values()):
            raise ConfigError(f"{at}: `requires` maps train keys to lists of allowed values")
        if not isinstance(entry.get("display_name", ""), str):
            raise ConfigError(f"{at}: `display_name` is a string")
        if not isinstance(entry.get("deterministic", False), bool):
            raise ConfigError(f"{at}: `deterministic` is true or false")
    return catalogue


def is_deterministic(model: str, external: dict) -> bool:
    """An external model whose entry says its result does not depend on the seed."""
    return bool(external.get(model, {}).get("deterministic", False))


def check_model_options(model: str, overrides: dict, where: str, external=None) -> None:
    """Unknown model, unknown option or a value the model's Config refuses -> ConfigError.
    `external`: the external models (load_external_models), which take no options."""
    external = external or {}
    if model in external:
        if overrides:
            raise ConfigError(f"{where}: {model!r} is an external model (config/"
                              f"external_models.yaml, made by rule {external[model]['rule']!r}"
                              f"); it takes no model options, got {sorted(overrides)}")
        return
    if model not in REGISTRY:
        raise ConfigError(f"{where}: unknown model {model!r}; registered models "
                          f"(models/__init__.py): {sorted(REGISTRY)}"
                          + (f"; external models (config/external_models.yaml): "
                             f"{sorted(external)}" if external else ""))
    fields = model_fields(model)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"{where}: model {model!r} has no option(s) {unknown}; its options: "
                          f"{sorted(fields)}")
    try:
        model_class(model).Config(**overrides)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: model {model!r} refuses {overrides}: {err}") from None


@dataclass(frozen=True)
class Run:
    dataset: str
    model: str
    variant: str
    max_len: int
    seed: int
    overrides: dict = field(compare=False, hash=False)
    train: dict = field(compare=False, hash=False)

    def identity(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "variant": self.variant,
                "max_len": self.max_len, "seed": self.seed}

    @property
    def path(self) -> str:
        return (f"results/{self.dataset}/{self.model}/{self.variant}/L{self.max_len}/"
                f"seed{self.seed}")


def _blocks(name: str, group: dict, config: dict):
    """(section, where, block) triples of a group: the group itself (section ""), or one per
    sweep (section = the sweep's name)."""
    unknown = sorted(set(group) - GROUP_KEYS)
    if unknown:
        raise ConfigError(f"config groups.{name}.{unknown[0]}: unknown key"
                          f"{nearest(unknown[0], GROUP_KEYS) or f'; allowed: {sorted(GROUP_KEYS)}'}")
    base = {k: group.get(k, config[k]) for k in ("datasets", "models", "max_lens", "seeds")}
    if "models" not in group:     # the top-level list, with the switched-on external models
        base["models"] = list(dict.fromkeys(config["models"]
                                            + list(config.get("external_models", []))))
    base["overrides"] = group.get("overrides", [{}])
    base["train"] = group.get("train", {})
    sweeps = group.get("sweeps") or {}
    if not sweeps:
        return [("", f"groups.{name}", base)]
    blocks = []
    for sweep, part in sweeps.items():
        where = f"groups.{name}.sweeps.{sweep}"
        allowed = GROUP_KEYS - {"sweeps", "description", "paper"}
        bad = sorted(set(part) - allowed)
        if bad:
            raise ConfigError(f"config {where}.{bad[0]}: unknown key"
                              f"{nearest(bad[0], allowed) or f'; allowed: {sorted(allowed)}'}")
        blocks.append((sweep, where,
                       base | part | {"train": base["train"] | part.get("train", {})}))
    return blocks


def _check_train(settings: dict, schema: dict, where: str) -> None:
    """Partial train settings against config/schema.yaml's `train` properties."""
    props = schema["properties"]["train"]["properties"]
    unknown = sorted(set(settings) - set(props))
    if unknown:
        raise ConfigError(f"config {where}.{unknown[0]}: unknown train key"
                          f"{nearest(unknown[0], props) or f'; known: {sorted(props)}'}")
    for key, value in settings.items():
        try:
            jsonschema.validate(value, props[key])
        except jsonschema.ValidationError as err:
            raise ConfigError(f"config {where}.{key}: {err.message}") from None


def expand_groups(config: dict, schema: dict, datasets: dict,
                  external: dict | None = None) -> dict[str, dict[str, list[Run]]]:
    """{group: {section: [Run, ...]}} for every group named in `run_groups`, each run checked;
    a group's sections are its sweeps, or the one section "" without sweeps.

    `config` is the validated config (defaults filled), `schema` config/schema.yaml as a dict,
    `datasets` the dataset registry (names only are used), `external` the external models
    (load_external_models; none if omitted).
    """
    external = external or {}
    unknown = [m for m in config.get("external_models", []) if m not in external]
    if unknown:
        raise ConfigError(f"config external_models: unknown external model(s) {unknown}; "
                          f"defined in config/external_models.yaml: {sorted(external)}")
    groups = config["groups"]
    unknown = [g for g in config["run_groups"] if g not in groups]
    if unknown:
        raise ConfigError(f"config run_groups: unknown group(s) {unknown}; defined in config "
                          f"'groups': {sorted(groups)}")
    for dataset, settings in config["train_by_dataset"].items():
        if dataset not in datasets:
            raise ConfigError(f"config train_by_dataset: unknown dataset {dataset!r}; known: "
                              f"{sorted(datasets)}")
        _check_train(settings, schema, f"train_by_dataset.{dataset}")
    for model, over in config["model_overrides"].items():
        check_model_options(model, over, f"config model_overrides.{model}", external)
    # models that have a search space (checked by recbench.tuning.studies.check_tuning) can be tuned
    searchable = {model for model, space in config.get("tuning", {}).get("space", {}).items()
                  if space is not None} - set(external)

    runs: dict[str, dict[str, list[Run]]] = {}
    seen: dict[str, tuple[str, Run]] = {}
    for name in config["run_groups"]:
        runs[name] = {}
        blocks = _blocks(name, groups[name], config)
        for section, where, block in blocks:
            found = runs[name].setdefault(section, [])
            _check_train(block["train"], schema, f"{where}.train")
            missing = [d for d in block["datasets"] if d not in datasets]
            if missing:
                raise ConfigError(f"config {where}: unknown dataset(s) {missing}; known "
                                  f"(config/datasets.yaml or 'dataset_registry'): "
                                  f"{sorted(datasets)}")
            for model in block["models"]:
                check_model_options(model, {}, f"config {where}.models", external)
            for over in block["overrides"]:   # each option set must fit some model of the block
                if TUNED in over:
                    _check_tuned(over, block["models"], searchable, f"{where}.overrides")
                    continue
                if not any(set(over) <= model_fields(m, external) for m in block["models"]):
                    check_model_options(block["models"][0], over, f"config {where}.overrides",
                                        external)
            # each (model, option set) checked and named once; sets meant for another model
            # of the block are skipped
            variants = {}
            for model, (i, over) in itertools.product(block["models"],
                                                      enumerate(block["overrides"])):
                if TUNED in over:                   # options known once the study has run
                    if model in searchable:
                        variants[model, i] = config["model_overrides"].get(model, {}), TUNED
                elif set(over) <= model_fields(model, external):
                    options = config["model_overrides"].get(model, {}) | over
                    check_model_options(model, options, f"config {where}.overrides", external)
                    variants[model, i] = options, variant_name(
                        options, model_defaults(model, external))
            for dataset, model, i, max_len, seed in itertools.product(
                    block["datasets"], block["models"], range(len(block["overrides"])),
                    block["max_lens"], block["seeds"]):
                if (model, i) not in variants:
                    continue
                if is_deterministic(model, external) and seed != block["seeds"][0]:
                    continue          # the same result whatever the seed: run once
                options, variant = variants[model, i]
                train = (config["train"] | config["train_by_dataset"].get(dataset, {})
                         | block["train"])
                run = Run(dataset, model, variant, int(max_len), int(seed), options, train)
                if model in external:
                    _check_requires(run, external[model], where)
                if run.path in seen:
                    other_where, other = seen[run.path]
                    if other.train != run.train:
                        diff = sorted(k for k in run.train | other.train
                                      if run.train.get(k) != other.train.get(k))
                        raise ConfigError(f"config {where} and {other_where} both ask for "
                                          f"{run.path} with different train settings {diff}; "
                                          "give one of them other seeds or the same settings")
                    run = other
                else:
                    seen[run.path] = (where, run)
                if run not in found:
                    found.append(run)
        if not group_runs(runs, name) and any(block["models"] for _, _, block in blocks):
            raise ConfigError(f"config groups.{name}: expands to no run (do its overrides "
                              f"match options of its models {groups[name].get('models')}?)")
    return runs


def _check_tuned(over: dict, models: list, searchable: set, where: str) -> None:
    """`{tuned: true}` stands alone and needs a model of the block with a search space."""
    if over != {TUNED: True}:
        raise ConfigError(f"config {where}: the tuned variant is the option set {{{TUNED}: true}} "
                          f"alone (its options are the study's best), got {over}")
    if not searchable & set(models):
        raise ConfigError(f"config {where}: {{{TUNED}: true}} asks for the tuned variant, but "
                          f"none of the models {list(models)} has a search space (config "
                          f"tuning.space; spaces for: {sorted(searchable)})")


def _check_requires(run: Run, entry: dict, where: str) -> None:
    """An external model's rule supports some train settings with some values only."""
    for key, allowed in entry.get("requires", {}).items():
        if key in run.train and run.train[key] not in allowed:
            raise ConfigError(f"config {where}: {run.path}: external model {run.model!r} "
                              f"(rule {entry['rule']!r}) supports train.{key} {allowed} only, "
                              f"got {run.train[key]!r}")


def group_runs(groups: dict, name: str) -> list[Run]:
    """The runs of group `name`, each once, in section order."""
    return list({run.path: run for section in groups[name].values() for run in section}.values())


def all_runs(groups: dict) -> dict[str, Run]:
    """Every run once, by results path."""
    return {run.path: run for name in groups for run in group_runs(groups, name)}
