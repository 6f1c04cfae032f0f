"""The results contract: what a run directory must hold for the tables to read it.

A run is `results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/` with

    metrics.json         checked against config/results_schema.yaml (identity, status,
                         eval_mode, test metrics when ok, typed optional fields; no NaN or
                         infinity in a typed field)
    test_ranks.parquet   when status is ok: one row per test user, `user_id` (string) and
                         `rank` (1-based integer), the input of the paired tests

Any rule may write them: the suite's engine (rules/train.smk) or outside code
(rules/external_recbole.smk). The table scripts read every run through `read_run` and
`read_test_ranks`, so a run that breaks the contract stops the table with one line naming the
file and the field, instead of an empty cell or a KeyError further on.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "results_schema.yaml"
RANKS_FILE = "test_ranks.parquet"


class ResultsError(ValueError):
    """A run breaks the results contract; the message names the file and the field."""


@lru_cache(maxsize=1)
def results_schema() -> dict:
    """config/results_schema.yaml, parsed."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def required_fields() -> list[str]:
    """The fields every metrics.json has (status ok adds `test`)."""
    return list(results_schema()["required"])


def _missing(path: str, key: str) -> str:
    name = ".".join(filter(None, [path, key]))
    description = results_schema()["properties"].get(key, {}).get("description", "")
    when = " (status 'ok')" if key == "test" else ""
    return f"missing field {name!r}{when}: {' '.join(description.split())}"


def _problem(err) -> str:
    """One jsonschema error as "field 'x' ..." (a missing field with its description)."""
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "required":
        return "; ".join(_missing(path, k) for k in err.validator_value if k not in err.instance)
    if not path:
        return f"must be a JSON object of fields, got {type(err.instance).__name__}"
    if "propertyNames" in err.schema_path:
        return (f"field {path!r} has a metric named {err.instance!r}; metrics are named "
                "hit@k, ndcg@k or mrr@k")
    if err.validator == "minProperties":
        return f"field {path!r} is empty; a run with status 'ok' needs its test metrics"
    return f"field {path!r} is {err.instance!r}: {err.message}"


def _not_finite(run: dict) -> list[str]:
    """'field ... is not a finite number' for each NaN / infinity in a field the contract types
    (a metric of valid / test, or a top-level number): Python's json reads and writes them,
    and JSON Schema's minimum / maximum let NaN through."""
    def bad(v):
        return isinstance(v, float) and not math.isfinite(v)
    found = []
    for key in results_schema()["properties"]:
        value = run.get(key)
        if isinstance(value, dict):
            found += [f"{key}.{k}" for k, v in value.items() if bad(v)]
        elif bad(value):
            found.append(key)
    return [f"field {key!r} is not a finite number (NaN or infinity); write null where a "
            f"value is absent" for key in found]


def check_metrics(run, where: str) -> dict:
    """Validate one metrics.json content; raise ResultsError "{where}: <problem>; ..."."""
    validator = Draft202012Validator(results_schema())
    errors = sorted(validator.iter_errors(run),
                    key=lambda e: ([str(p) for p in e.absolute_path], e.validator))
    nan = _not_finite(run) if isinstance(run, dict) else []
    if errors or nan:
        problems = dict.fromkeys([_problem(e) for e in errors] + nan)
        raise ResultsError(f"{where}: " + "; ".join(problems)
                           + f" (results contract: {SCHEMA_PATH.name})")
    return run


def read_run(metrics_path) -> dict:
    """metrics.json, read and checked against the contract."""
    path = Path(metrics_path)
    try:
        run = json.loads(path.read_text())
    except OSError as err:
        raise ResultsError(f"{path}: cannot read the run's metrics ({err.strerror})") from None
    except ValueError as err:
        raise ResultsError(f"{path}: not valid JSON ({err})") from None
    return check_metrics(run, str(path))


def read_test_ranks(metrics_path, run: dict | None = None):
    """The per-user test ranks beside metrics.json, checked: a DataFrame (user_id, rank).

    `run` (the metrics.json content) adds the check that there is one row per test user when
    it gives `n_test_users`.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    path = Path(metrics_path).with_name(RANKS_FILE)
    if not path.exists():
        raise ResultsError(f"{path}: missing; a run with status 'ok' needs its per-user test "
                           f"ranks (columns user_id, rank) for the paired tests")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: not a readable parquet file ({err})") from None
    missing = [c for c in ("user_id", "rank") if c not in table.column_names]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {missing}; it has {table.column_names} "
                           "(results contract: user_id, rank)")
    frame = table.select(["user_id", "rank"]).to_pandas()
    if not (pd.api.types.is_string_dtype(frame.user_id) or pd.api.types.is_object_dtype(
            frame.user_id)) or not frame.user_id.map(lambda u: isinstance(u, str)).all():
        raise ResultsError(f"{path}: column 'user_id' must hold the users' original tokens as "
                           f"strings, got {table.schema.field('user_id').type}")
    if not pd.api.types.is_integer_dtype(frame["rank"]):
        raise ResultsError(f"{path}: column 'rank' must be integers (1-based ranks), got "
                           f"{table.schema.field('rank').type}")
    bad = frame.index[frame["rank"] < 1]
    if len(bad):
        raise ResultsError(f"{path}: column 'rank' must be >= 1 (1-based); row {int(bad[0])} "
                           f"has {int(frame['rank'].iloc[bad[0]])}")
    dup = frame.user_id[frame.user_id.duplicated()]
    if len(dup):
        raise ResultsError(f"{path}: column 'user_id' repeats user {dup.iloc[0]!r}; one row "
                           "per test user")
    expected = (run or {}).get("n_test_users")
    if expected is not None and expected != len(frame):
        raise ResultsError(f"{path}: {len(frame)} rows, but metrics.json field 'n_test_users' "
                           f"is {expected}")
    return frame


def check_run_dir(run_dir) -> dict:
    """A whole run directory against the contract (metrics.json, and the ranks when ok)."""
    metrics_path = Path(run_dir) / "metrics.json"
    run = read_run(metrics_path)
    if run["status"] == "ok":
        read_test_ranks(metrics_path, run)
    return run
