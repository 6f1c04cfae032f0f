"""The `train` settings of a run: config/schema.yaml's `train` section holds every default and
bound; `train_settings` validates a dict against it (filling defaults, as snakemake's validate
does) into a frozen `TrainSettings`. max_len and seed are the run's identity, not settings."""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
# Settings added after runs existed, with the value every earlier run trained with. At that value
# they are left out of what identifies a job (a train job's params, a study's identity), so that
# adding them re-queues no finished run and reopens no finished study; checkpoints without them
# resume (recbench/training/checkpoint.py).
ADDED_AFTER_RUNS = {"precision": "fp32", "compile": False}


@dataclass(frozen=True)
class TrainSettings:
    """Validated `train` settings; config/schema.yaml documents each one and holds its default."""
    mode: str
    epochs: int
    stopping_step: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    device: str
    valid_metric: str
    topk: tuple
    eval_mode: str
    processes: int
    restart_bad_checkpoint: bool
    precision: str
    compile: bool


@functools.lru_cache(maxsize=1)
def train_schema() -> dict:
    """The `train` sub-schema of config/schema.yaml."""
    return yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["train"]


def _filling_defaults(validator_class):
    """`validator_class` that also sets each missing property's default (the extension
    snakemake.utils.validate(..., set_default=True) uses)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _filling_defaults(jsonschema.Draft202012Validator)


def identifying(train: dict) -> dict:
    """`train` without the settings of ADDED_AFTER_RUNS that are at their earlier value."""
    return {k: v for k, v in train.items()
            if not (k in ADDED_AFTER_RUNS and v == ADDED_AFTER_RUNS[k])}


def train_settings(values: dict | None) -> TrainSettings:
    """Validate `values` against the train schema (defaults filled) -> TrainSettings.
    Every problem raises one ValueError naming the key (`train.batch_size: ...`)."""
    values = copy.deepcopy(dict(values or {}))
    schema = train_schema()
    errors = sorted(_Validator(schema).iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        def describe(err):
            key = ".".join(["train", *map(str, err.absolute_path)])
            known = f"; known keys: {sorted(schema['properties'])}" \
                if err.validator == "additionalProperties" else ""
            return f"{key}: {err.message}{known}"
        moved = sorted({"max_len", "seed", "progress"} & set(values))
        hint = (f" ({moved}: arguments of train_and_evaluate, the run's identity and a runtime "
                "switch, not train settings)") if moved else ""
        raise ValueError("train config: " + "; ".join(describe(e) for e in errors) + hint)
    # the one cross-field rule the schema cannot say
    k = int(values["valid_metric"].partition("@")[2])
    if k not in values["topk"]:
        raise ValueError(f"train config: train.valid_metric {values['valid_metric']!r} cuts at "
                         f"k={k}, which is not one of train.topk {values['topk']}")
    values.update(topk=tuple(values["topk"]), lr=float(values["lr"]),
                  weight_decay=float(values["weight_decay"]))
    return TrainSettings(**values)
