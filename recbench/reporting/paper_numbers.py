"""The paper's numbers as data.

`paper_numbers(path)` reads reports/paper_numbers.yaml (every number the paper prints, with its
source; the file's header explains its block grammar) into one long table:

    source    where the number is printed ("Table 2, arXiv 2506.13315v2", the reference log)
    dataset   ml-1m, ml-20m, ml-32m, lfm-1b, netflix
    model     linrec ... recgrela; `improv` = Table 2's "Improv." column (a fraction:
              1.68% -> 0.0168); missing (NaN) for dataset statistics
    variant   `default` for the reference configuration, else a variant_name (`num_layers=1`);
              missing for dataset statistics
    metric    hit@5 ... mrr@10, seconds_per_epoch, gpu_memory_gb, dataset statistics
              (n_users, ..., sparsity as a fraction), the log's best_epoch / epochs_run
    value     the printed number (float)
    label     the paper's own name for the row (a figure legend, "w/o RoPE"), else missing
    max_len   the sequence length the number was measured at (Int64; missing for statistics)
    block     the YAML block it came from (`table2`, `fig4`, `reference_log`, ...)

The same (dataset, model, variant, metric) can appear in several blocks with different values
(Table 3's 4-layer @5 values are not Table 2's): select by `block`.

The YAML's variants are written as recbench/plan/variants.py names a run's model options.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

COLUMNS = ["source", "dataset", "model", "variant", "metric", "value", "label", "max_len",
           "block"]
IDENTITY = ("dataset", "model", "variant", "metric")   # every block must fix or walk each
BLOCK_KEYS = {"source", "note", "rows", "columns", "labels", "values", "max_len", *IDENTITY}


def paper_numbers(path: str | Path) -> pd.DataFrame:
    """reports/paper_numbers.yaml as one long DataFrame (columns: COLUMNS, see module doc)."""
    path = Path(path)
    blocks = yaml.safe_load(path.read_text())
    if not isinstance(blocks, dict) or not blocks:
        raise ValueError(f"{path}: expected a mapping of named blocks, got {type(blocks).__name__}")
    rows = []
    for name, spec in blocks.items():
        rows += [row | {"block": name} for row in _block_rows(spec, f"{path}: block {name!r}")]
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"value": "float64", "max_len": "Int64"})


def _block_rows(spec, where: str) -> list[dict]:
    """Walk one block's `values` along its `rows` fields; each leaf is a number, or a list
    aligned with `columns`."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - BLOCK_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(BLOCK_KEYS)}")
    if not spec.get("source"):
        raise ValueError(f"{where}: every block needs a `source` (where its numbers are printed)")
    walk = list(spec.get("rows") or [])
    columns = spec.get("columns") or {}
    if len(columns) > 1:
        raise ValueError(f"{where}: `columns` names one field, got {sorted(columns)}")
    column_field, column_names = next(iter(columns.items()), (None, None))
    fixed = {k: spec[k] for k in IDENTITY if k in spec}
    named = list(fixed) + walk + ([column_field] if column_field else [])
    for field in IDENTITY:
        if named.count(field) != 1:
            raise ValueError(f"{where}: {field!r} must be given exactly once, as a fixed key, in "
                             f"`rows` or as the `columns` field (found {named.count(field)} times)")
    if set(named) - set(IDENTITY):
        raise ValueError(f"{where}: `rows`/`columns` may only walk {list(IDENTITY)}, got {named}")
    labels = spec.get("labels") or {}
    base = {"source": spec["source"], "max_len": spec.get("max_len")} | fixed

    rows: list[dict] = []

    def leaf(value, ident: dict, key_path: str) -> None:
        label = labels.get(ident[walk[-1]]) if walk else None
        if column_field is None:
            rows.append(base | ident | {"value": _number(value, f"{where}: {key_path}"),
                                        "label": label})
            return
        if not isinstance(value, list) or len(value) != len(column_names):
            raise ValueError(f"{where}: {key_path} must be a list of {len(column_names)} numbers "
                             f"({column_field}: {column_names}), got {value!r}")
        for name, v in zip(column_names, value):
            rows.append(base | ident | {column_field: name, "label": label,
                                        "value": _number(v, f"{where}: {key_path}[{name}]")})

    def descend(node, depth: int, ident: dict, key_path: str) -> None:
        if depth == len(walk):
            return leaf(node, ident, key_path or "values")
        if not isinstance(node, dict):
            raise ValueError(f"{where}: {key_path or 'values'} must be a mapping keyed by "
                             f"{walk[depth]}, got {node!r}")
        for key, child in node.items():
            descend(child, depth + 1, ident | {walk[depth]: key},
                    f"{key_path}.{key}" if key_path else str(key))

    descend(spec.get("values"), 0, {}, "")
    unused = sorted(set(labels) - {r[walk[-1]] for r in rows}) if walk else sorted(labels)
    if unused:
        raise ValueError(f"{where}: labels for rows that have no values: {unused}")
    return rows


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)
