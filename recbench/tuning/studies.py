"""Equal-budget hyperparameter search: one Optuna study per (dataset, model).

Config `tuning` (config/schema.yaml): `trials` (the budget: the same for every model), `seed`,
`workers`, `max_len`, `train` (the trials' train settings), TPE's `sampler_startup_trials`,
MedianPruner's `pruner_warmup` and `pruner_startup_trials`, and `space`:
{model: {option: {low, high[, log][, step]} | {choices: [...]}}}, an option being a field of the
model's Config or the train setting lr / weight_decay. check_tuning() refuses, naming the key,
an unknown model or option, an empty range or empty choices, a value the model refuses.

The study's storage, its workers and its budget: recbench/tuning/worker.py; the tuning table
and plots: recbench/tuning/report.py.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from models import REGISTRY, model_class
from recbench.plan.groups import TUNED, ConfigError, check_model_options, group_runs, model_defaults
from recbench.training.settings import train_settings

TRAIN_KEYS = ("lr", "weight_decay")          # train settings a space may search
OBJECTIVE = "ndcg@10"                        # validation metric maximised
ROOT = "results/tuning"
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Study:
    """One (dataset, model) search, as the tune rules get it (as_dict / from_dict)."""
    dataset: str
    model: str
    max_len: int
    seed: int
    trials: int
    workers: int
    space: dict
    overrides: dict          # model options every trial starts from (config model_overrides)
    train: dict              # train settings of every trial
    sampler_startup_trials: int
    pruner_startup_trials: int
    pruner_warmup: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}"

    @property
    def path(self) -> Path:
        return Path(ROOT) / self.dataset / self.model

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "Study":
        return cls(**values)


# --- config checks (rules/common.smk, at parse time) --------------------------------------

def search_spaces(config: dict) -> dict:
    """config `tuning.space` without its nulls: a config file merged over config/config.yaml
    (Snakemake merges nested keys) removes an option, or a model's space, by setting it null."""
    return {model: {k: v for k, v in space.items() if v is not None}
            for model, space in config.get("tuning", {}).get("space", {}).items()
            if space is not None}


def check_tuning(config: dict, external=()) -> None:
    """Every search space of config `tuning.space`; a mistake raises ConfigError naming its key."""
    for model, space in search_spaces(config).items():
        check_space(model, space, external)


def check_space(model: str, space: dict, external=()) -> None:
    where = f"tuning.space.{model}"
    if model in external:
        raise ConfigError(f"config {where}: {model!r} is an external model; it takes no options")
    if model not in REGISTRY:
        raise ConfigError(f"config {where}: unknown model {model!r}; registered models "
                          f"(models/__init__.py): {sorted(REGISTRY)}")
    if not model_class(model).learned:
        raise ConfigError(f"config {where}: model {model!r} is not trained; nothing to tune")
    if not space:
        raise ConfigError(f"config {where}: empty search space")
    defaults = model_defaults(model)
    options = sorted(set(defaults) - {"max_len"})
    for name, spec in space.items():
        key = f"{where}.{name}"
        if name not in options and name not in TRAIN_KEYS:
            raise ConfigError(f"config {key}: unknown option; options of {model!r}: {options}, "
                              f"and the train settings {list(TRAIN_KEYS)}")
        default = 0.0 if name in TRAIN_KEYS else defaults[name]
        for value in _values(spec, key, default):
            if name in TRAIN_KEYS:
                try:
                    train_settings({name: value})
                except ValueError as err:
                    raise ConfigError(f"config {key}: {value!r} refused: {err}") from None
            else:      # one option at a time, the others at the model's defaults
                check_model_options(model, {name: value}, f"config {key}")


def _values(spec, key: str, default) -> list:
    """The values a spec can take at its ends (a range) or all of them (choices)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"config {key}: a range {{low, high[, log][, step]}} or "
                          f"{{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"}:
            raise ConfigError(f"config {key}: choices take no {sorted(set(spec) - {'choices'})}")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"config {key}: empty choices")
        bad = [c for c in choices if not isinstance(c, (type(None), bool, int, float, str))]
        if bad:     # what Optuna's suggest_categorical takes
            raise ConfigError(f"config {key}: choices are null, booleans, numbers or strings; "
                              f"got {bad}")
        return choices
    if set(spec) - RANGE_KEYS or not {"low", "high"} <= set(spec):
        raise ConfigError(f"config {key}: a range has low, high and optional log, step; got "
                          f"{sorted(spec)}")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise ConfigError(f"config {key}: the option is not a number (default {default!r}); "
                          "give choices")
    kind = int if isinstance(default, int) else float
    for part, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or (kind is int and not isinstance(value, int))):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"config {key}.{part}: {value!r} is not {what}")
    if low >= high:
        raise ConfigError(f"config {key}: empty range (low {low} >= high {high})")
    if spec.get("log") and (low <= 0 or step is not None):
        raise ConfigError(f"config {key}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"config {key}.step: must be > 0, got {step}")
    return [kind(low), kind(high)]


def expand_studies(config: dict, groups: dict) -> dict[tuple[str, str], Study]:
    """{(dataset, model): Study} for every (dataset, model) of a run of variant `tuned`."""
    tuning = config["tuning"]
    pairs = sorted({(run.dataset, run.model) for name in groups
                    for run in group_runs(groups, name) if run.variant == TUNED})
    studies = {}
    for dataset, model in pairs:
        train = config["train"] | config["train_by_dataset"].get(dataset, {}) | tuning["train"]
        try:
            settings = train_settings(train)
        except ValueError as err:
            raise ConfigError(f"config tuning.train ({dataset}): {err}") from None
        if settings.processes != 1:
            raise ConfigError("config tuning.train.processes: trials run in one process each "
                              f"(run more `tuning.workers` instead), got {settings.processes}")
        if int(OBJECTIVE.partition("@")[2]) not in settings.topk:
            raise ConfigError(f"config tuning.train.topk: the objective is validation "
                              f"{OBJECTIVE}, so topk needs 10; got {list(settings.topk)}")
        studies[dataset, model] = Study(
            dataset=dataset, model=model, max_len=int(tuning["max_len"] or config["max_lens"][0]),
            seed=int(tuning["seed"]), trials=int(tuning["trials"]),
            workers=int(tuning["workers"]), space=search_spaces(config)[model],
            overrides=dict(config["model_overrides"].get(model, {})), train=train,
            sampler_startup_trials=int(tuning["sampler_startup_trials"]),
            pruner_startup_trials=int(tuning["pruner_startup_trials"]),
            pruner_warmup=int(tuning["pruner_warmup"]))
    return studies

