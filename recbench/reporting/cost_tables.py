"""The cost grid's tables (rule profile_table): memory, step time and FLOPs per max_len, and
the fitted slopes, from the cells (recbench/cost/cells.py)."""
from __future__ import annotations

import math

import pandas as pd

from recbench.cost.cells import TAIL, memory_claim, slopes
from recbench.reporting.tables import Table


def _wide(cells: pd.DataFrame, value: str, fmt: str) -> pd.DataFrame:
    def show(row):
        if row["status"] == "ok":
            number = row[value]
            return "n/a" if pd.isna(number) else fmt.format(number)
        return f"{row['status'].upper()}: {row['reason']}" if row["reason"] == row["reason"] \
            else row["status"].upper()
    shown = cells.assign(text=cells.apply(show, axis=1))
    table = shown.pivot_table(index="label", columns="max_len", values="text", aggfunc="first",
                              sort=False).fillna("not run")
    table.columns = [f"L={c}" for c in table.columns]
    table.index.name = "model"
    return table


def cost_tables(cells: pd.DataFrame, study: str, description: str = "") -> list[Table]:
    """Memory (MB), seconds per training step, FLOPs per sequence, and the fitted slopes, one
    row per series (model, variant, memory policy), one column per max_len."""
    device = ", ".join(sorted(cells["device"].dropna().unique()))
    batch = ", ".join(str(b) for b in sorted(cells["batch_size"].dropna().unique()))
    memory = ("torch.cuda.max_memory_reserved" if device.startswith("cuda")
              else "peak RSS growth of the cell's process")
    note = (f"Profile study `{study}`{': ' + description if description else ''}. Device "
            f"{device}, batch {batch} of full-length random sequences, one fresh process per "
            f"cell; memory = {memory}; time = median training step (forward, CE over all "
            "items, backward, Adam). [recompute] = activation recomputation; every other row "
            "keeps all activations, as the reference code trains. OOM / TIMEOUT cells give "
            "their limit.")
    tables = []
    for value, title, fmt in [("memory_mb", "training memory (MB)", "{:,.0f}"),
                              ("seconds_per_step", "seconds per training step", "{:.3f}"),
                              ("flops_per_sequence", "forward FLOPs per sequence", "{:.3g}")]:
        wide = _wide(cells, value, fmt)
        tables.append(Table(title=f"Cost ({study}): {title}", cells=wide,
                            marks=wide.map(lambda _: ""), notes=[note],
                            data=cells.drop(columns=["label"])))
    fitted = slopes(cells).set_index("label")
    shown = fitted[["memory_slope", "memory_tail_slope", "time_slope", "time_tail_slope",
                    "longest_ok", "first_failed"]].map(
        lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v))
        else (f"{v:.2f}" if isinstance(v, float) else str(v)))
    shown.index.name = "model"
    tables.append(Table(title=f"Cost ({study}): log-log slopes against max_len", cells=shown,
                        marks=shown.map(lambda _: ""),
                        notes=[f"Slope of log memory / log time against log max_len (1 = "
                               f"linear, 2 = quadratic); tail = the last {TAIL} finished "
                               "lengths." + (f" {claim}" if (claim := memory_claim(cells))
                                             else "")],
                        data=fitted.reset_index()))
    return tables
