"""The cost grid's cells (results/profile/.../*.json) as a frame, fitted slopes, the paper's
efficiency claim checked against them (the tables: recbench/reporting/cost_tables.py).

Memory is the training step's peak: on CUDA `max_memory_reserved` (what RecBole reports, and so
the paper's figures), on CPU the peak RSS growth of the cell's process (recbench/cost/measure.py).
A slope is the least-squares slope of log y against log max_len over a model's finished cells:
1 = linear, 2 = quadratic. `tail_slope` uses only the last two finished lengths, where fixed costs
(item table, optimiser state) no longer hide the growth.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recbench.external.catalogue import PREFIX as REFERENCE_PREFIX
from recbench.names import display_name

TAIL = 2                       # lengths in the tail slope: the local slope at the end


def read_cells(paths: Sequence[str | Path]) -> pd.DataFrame:
    """One row per cell: identity, status, reason and every measurement (NaN where absent)."""
    rows = []
    for path in paths:
        cell = json.loads(Path(path).read_text())
        for key in ("model", "policy", "max_len", "status"):
            if key not in cell:
                raise ValueError(f"{path}: profile cell lacks {key!r}")
        cell["variant"] = Path(path).parts[-3]
        cell["memory_mb"] = cell.get("peak_cuda_reserved_mb", cell.get("peak_rss_mb"))
        cell["overrides"] = json.dumps(cell.get("overrides") or {}, sort_keys=True)
        rows.append(cell)
    frame = pd.DataFrame(rows)
    for column in ("seconds_per_step", "memory_mb", "flops_per_sequence", "users_per_second",
                   "predict_latency_ms", "reason"):
        if column not in frame:
            frame[column] = np.nan
    frame["label"] = [series_label(m, v, p) for m, v, p in
                      zip(frame["model"], frame["variant"], frame["policy"])]
    return frame.sort_values(["model", "variant", "policy", "max_len"], ignore_index=True)


def series_label(model: str, variant: str, policy: str) -> str:
    """'RecGRELA', 'SASRec (attention=math)', 'RecGRELA [recompute]'."""
    label = display_name(model) + ("" if variant == "default" else f" ({variant})")
    return label + (" [recompute]" if policy == "recompute" else "")


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log y on log x; NaN with fewer than two points."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    keep = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    if keep.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(xs[keep]), np.log(ys[keep]), 1)[0])


def slopes(cells: pd.DataFrame) -> pd.DataFrame:
    """Per series: memory and time slopes over all finished lengths and over the last TAIL,
    the longest finished length and the first length that did not finish (with its status)."""
    rows = []
    for label, part in cells.groupby("label", sort=False):
        ok = part[part["status"] == "ok"].sort_values("max_len")
        failed = part[part["status"] != "ok"].sort_values("max_len")
        tail = ok.tail(TAIL)
        rows.append({
            "label": label, "model": part["model"].iat[0], "variant": part["variant"].iat[0],
            "policy": part["policy"].iat[0],
            "memory_slope": loglog_slope(ok["max_len"], ok["memory_mb"]),
            "memory_tail_slope": loglog_slope(tail["max_len"], tail["memory_mb"]),
            "time_slope": loglog_slope(ok["max_len"], ok["seconds_per_step"]),
            "time_tail_slope": loglog_slope(tail["max_len"], tail["seconds_per_step"]),
            "longest_ok": int(ok["max_len"].max()) if len(ok) else None,
            "first_failed": (f"{failed['status'].iat[0].upper()} at L={failed['max_len'].iat[0]}"
                             if len(failed) else ""),
        })
    return pd.DataFrame(rows)


def memory_claim(cells: pd.DataFrame, policy: str = "stored") -> str:
    """The paper's claim (RecGRELA needs the least training memory) checked on these cells,
    under one memory policy: RecGRELA's memory against every other model's at the longest and
    the shortest length where both finished, which models did not finish at all, and RecGRELA's
    own cells that did not finish (then the claim does not hold where another model finished).

    "" (no claim) where it does not apply: a study with no other model (RecGRELA's variants
    only), or one at a single max_len whose option sets vary (layers, heads: the claim is about
    models at their own configuration, not about one option)."""
    if "batch_size" in cells and cells["batch_size"].nunique() > 1:   # compared within a batch
        claims = {b: memory_claim(part, policy) for b, part in cells.groupby("batch_size")}
        return " ".join(f"Batch {b:.0f}: {c}" for b, c in claims.items() if c)
    # the authors' code of a model (reference-*) is not a rival of ours: recbench/reporting/fidelity.py
    # checks the claim on it alone
    same = cells[(cells["policy"] == policy) & ~cells["model"].str.startswith(REFERENCE_PREFIX)]
    varied = (same["variant"] != "default").any()
    if (same["model"] != "recgrela").sum() == 0 or (same["max_len"].nunique() < 2 and varied):
        return ""
    done = same[same["status"] == "ok"]
    ours = done[(done["model"] == "recgrela") & (done["variant"] == "default")]
    others = done[done["model"] != "recgrela"]
    mine_failed = same[(same["model"] == "recgrela") & (same["variant"] == "default")
                       & (same["status"] != "ok")].sort_values("max_len")
    own, contradicted = "", False      # RecGRELA's own cells that did not finish
    if len(mine_failed):
        first = mine_failed.iloc[0]
        beyond = list(dict.fromkeys(others.loc[others["max_len"] >= first["max_len"], "label"]))
        reason = first["reason"] if isinstance(first["reason"], str) else ""
        own = (f"RecGRELA itself did not finish at L={first['max_len']} "
               f"({first['status'].upper()}{': ' + reason if reason else ''})")
        contradicted = bool(beyond)
        own += (f", where {', '.join(beyond)} finished: the claim does not hold" if beyond
                else ", nor did any other model")
    common = sorted(set(ours["max_len"]) & set(others["max_len"]))
    if not common:
        return ("RecGRELA and another model never finished at the same max_len here: the "
                "paper's memory claim cannot be checked" + (f". {own}." if own else "."))

    def compare(at):
        mine = float(ours.loc[ours["max_len"] == at, "memory_mb"].iat[0])
        rivals = others[others["max_len"] == at].sort_values("memory_mb")
        ratios = ", ".join(f"{r.label} {r.memory_mb / mine:.2f}x" for r in rivals.itertuples())
        return mine, ratios, mine <= rivals["memory_mb"].min()

    def verdict(holds: bool, subject: str) -> str:
        if contradicted:      # lowest where it finished, but not where it ran out of memory
            return f"it is {'the lowest' if holds else 'not the lowest'} there"
        return f"{subject} {'holds' if holds else 'does not hold'}"

    longest, shortest = common[-1], common[0]
    mine, ratios, holds = compare(longest)
    text = (f"Paper: RecGRELA needs the least training memory. Here ({policy} activations), at "
            f"max_len {longest} RecGRELA uses {mine:,.0f} MB and the others {ratios} of that: "
            f"{verdict(holds, 'the claim')}")
    if shortest != longest:
        _, ratios, held = compare(shortest)
        text += f"; at max_len {shortest} ({ratios}) {verdict(held, 'it')}"
    if own:
        text += f". {own}"
    failed = same[(same["status"] != "ok") & (same["model"] != "recgrela")]
    if len(failed):
        first = failed.sort_values("max_len").groupby("label", sort=False).head(1)
        text += ". Did not finish: " + ", ".join(
            f"{r.label} ({r.status.upper()} at L={r.max_len})" for r in first.itertuples())
    return text + "."
