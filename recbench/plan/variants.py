"""The name of a run's model options: the workflow names result folders with it
(results/{dataset}/{model}/{variant}/...) and reports/paper_numbers.yaml writes its variants in it."""
from __future__ import annotations

import yaml


def variant_name(overrides: dict, defaults: dict) -> str:
    """A readable name for a run's model options: `key=value` for every option of `overrides`
    that differs from `defaults`, sorted by key, joined by '+'; `default` when none differs.

    Values are written as YAML writes them: true / false / null, numbers, plain strings
    (`num_layers=1`, `drop_path=0.0`, `gate=false+local_shortcut=false`). An int given for a
    float option is written as a float (drop_path=0 and drop_path=0.0 are one run). A key that
    is not an option, or a value that cannot be written unambiguously into a folder name, is an
    error.
    """
    parts = []
    for key in sorted(overrides):
        if key not in defaults:
            raise ValueError(f"variant_name: {key!r} is not an option of the model; its options: "
                             f"{sorted(defaults)}")
        value, default = overrides[key], defaults[key]
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        if not _same(value, default):
            parts.append(f"{key}={_yaml_scalar(key, value)}")
    return "+".join(parts) or "default"


def _same(a, b) -> bool:
    # True == 1 in Python; for options a bool and a number are different settings.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _yaml_scalar(key: str, value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # The name must read back as the same string and be safe in a path and in the name's
        # own separators.
        if not value or any(c in value for c in "/+= \t\n") or yaml.safe_load(value) != value:
            raise ValueError(f"variant_name: option {key}={value!r} cannot be written into a "
                             "variant name (empty, contains / + = or whitespace, or reads back "
                             "as another YAML value)")
        return value
    raise ValueError(f"variant_name: option {key} has a {type(value).__name__} value {value!r}; "
                     "only scalars (bool, number, string, null) name a variant")
