"""The dataset registry (config/datasets.yaml): load it and check its entries.

The keys an entry may have, their types, allowed values and defaults live in one place, the
JSON schema config/dataset_schema.yaml; the workflow validates against the same file. A bad
entry raises DataError naming the registry file, the dataset, the key and what is allowed.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from recbench.data.parsers import DataError
from recbench.data.protocol import InterFilter

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "dataset_schema.yaml"
REGISTRY_PATH = SCHEMA_PATH.with_name("datasets.yaml")
WHERE = "config/datasets.yaml"


@lru_cache(maxsize=1)
def entry_schema() -> dict:
    """config/dataset_schema.yaml, parsed."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def allowed_keys() -> list[str]:
    """The keys a registry entry may have, sorted."""
    return sorted(entry_schema()["properties"])


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string",
               "null": "null", "object": "a mapping", "array": "a list", "boolean": "true/false"}


def _problem(err) -> str:
    """One jsonschema error as a sentence naming the key and what it may be."""
    path = [str(p) for p in err.absolute_path]      # [] (the entry) or [key] or [key, subkey]
    key = ".".join(path)
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        within = f" in {key!r}" if key else ""
        return (f"has unknown key(s) {['.'.join(path + [k]) for k in unknown]}; "
                f"allowed{within}: {allowed}")
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        props = err.schema["properties"]
        return "needs key(s) " + ", ".join(f"{k!r} ({props[k]['description'].strip()})"
                                           for k in missing)
    if not key:
        return f"must be a mapping of keys, got {type(err.instance).__name__}"
    if err.validator == "enum":
        return f"key {key!r} is {err.instance!r}; allowed values: {err.validator_value}"
    if err.validator == "type":
        types = err.validator_value if isinstance(err.validator_value, list) \
            else [err.validator_value]
        return (f"key {key!r} is {err.instance!r} ({type(err.instance).__name__}); "
                f"expected {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}")
    return f"key {key!r}: {err.message}"  # a bound or a pattern; the message shows the value


def check_entry(name: str, entry: dict, where: str = WHERE) -> dict:
    """Validate one entry against the schema; returns a copy with the schema's defaults.

    Raises DataError "{where}: dataset {name!r} <problem>[; <problem>...]".
    """
    validator = Draft202012Validator(entry_schema())
    errors = sorted(validator.iter_errors(entry),
                    key=lambda e: ([str(p) for p in e.absolute_path], e.validator))
    if errors:
        raise DataError(f"{where}: dataset {name!r} "
                        + "; ".join(dict.fromkeys(_problem(e) for e in errors)))
    return _with_defaults(entry_schema(), entry)


def _with_defaults(schema: dict, value):
    """A copy of `value` with the schema's defaults filled in at every level present, as
    snakemake's validate(set_default=True) fills them (the workflow gets the same entry)."""
    props = schema.get("properties")
    if not props or not isinstance(value, dict):
        return value
    out = {k: spec["default"] for k, spec in props.items() if "default" in spec}
    out.update({k: _with_defaults(props.get(k, {}), v) for k, v in value.items()})
    return out


def check_registry(registry: dict, where: str = WHERE) -> dict:
    """Every entry of `registry` checked (see check_entry); returns {name: checked entry}."""
    if not isinstance(registry, dict):
        raise DataError(f"{where}: the registry must map dataset names to entries, "
                        f"got {type(registry).__name__}")
    return {name: check_entry(name, entry, where) for name, entry in registry.items()}


def load_registry(path: str | Path = REGISTRY_PATH) -> dict:
    """Read a registry YAML file and check every entry."""
    path = Path(path)
    try:
        registry = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read the dataset registry: {err}") from None
    return check_registry(registry, str(path))


def registry_entry(registry: dict, name: str, where: str = WHERE) -> dict:
    """The checked entry of dataset `name`; an unknown name lists the known ones."""
    if name not in registry:
        raise DataError(f"unknown dataset {name!r} (not in {where}); known: {sorted(registry)}")
    return check_entry(name, registry[name], where)


def entry_filter(entry: dict) -> InterFilter:
    """The entry's interaction-count filter (user_min/user_max/item_min/item_max)."""
    return InterFilter(**{k: entry.get(k) for k in ("user_min", "user_max",
                                                   "item_min", "item_max")})
