"""Ours beside the authors' code: the fidelity tables (rule fidelity_table).

The authors' code of a model runs as `reference-<model>` (recbench/external/authors_code.py): in the cost
grid's cells (recbench/cost/measure.py) and as a run of rule external_recbole. Each of ours is set
beside its own reference:

    cost      per model and max_len, from the same profile cells: trainable parameters (real
              numbers: a complex one counts twice), training memory, the activations autograd
              keeps for backward, seconds per training step; memory ours / authors' - 1, and
              whether it is within TOLERANCE. The paper's memory claim (recbench/cost/cells.py) is
              checked twice: on our implementations, and on the authors' code alone.
    accuracy  per dataset, max_len and model: test NDCG@10 and HR@10 (mean ± std over seeds),
              ours minus the authors', and the paired test over the test users (each user's
              value averaged over seeds; two-sided Wilcoxon signed-rank, the direction from the
              signed-rank sums: recbench/evaluation/significance.py).

Models whose authors' code needs CUDA kernels (mamba_ssm) read "needs CUDA" in the authors'
columns when the cells ran on a CPU. Reads only profile cells and results files.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from recbench.cost.cells import memory_claim, series_label
from recbench.evaluation.significance import compare_to, per_user_values
from recbench.external.catalogue import NEEDS_CUDA, PREFIX
from recbench.names import display_name
from recbench.reporting.tables import NA, NOT_RUN, PAPER_MODELS, Table, runs_frame, summarise

TOLERANCE = 0.10               # memory within 10% of the authors' code counts as the same
METRICS = ("ndcg@10", "hit@10")
OURS, AUTHORS = "ours", "authors'"
# RecGRELA first, then the baselines in the paper's order
ORDER = ["recgrela"] + [m for m in PAPER_MODELS if m != "recgrela"]


def source_of(model: str) -> tuple[str, str]:
    """'reference-linrec' -> ('linrec', "authors'"); 'linrec' -> ('linrec', 'ours')."""
    return (model.removeprefix(PREFIX), AUTHORS) if model.startswith(PREFIX) else (model, OURS)


def _ordered(models) -> list[str]:
    models = set(models)
    return [m for m in ORDER if m in models] + sorted(models - set(ORDER))


def _number(value, fmt: str) -> str:
    return NA if value is None or pd.isna(value) else fmt.format(value)


def _cell_text(row, value: str, fmt: str) -> str:
    """A number, "not run", or the status of a cell that did not finish (its reason in a
    note: `_limits`)."""
    if row is None:
        return NOT_RUN
    return _number(row.get(value), fmt) if row["status"] == "ok" else row["status"].upper()


def _limits(cells: pd.DataFrame) -> str:
    """What stopped the cells that did not finish: 'OOM = out of memory (16 GB ...)'."""
    stopped = cells[cells["status"] != "ok"]
    said = dict.fromkeys(f"{r.status.upper()} = {r.reason}" for r in stopped.itertuples()
                         if isinstance(r.reason, str))
    return ("Cells that did not finish: " + "; ".join(said) + ".") if said else ""


def _as_authors_models(cells: pd.DataFrame) -> pd.DataFrame:
    """The authors' cells named as models, so that the paper's claim can be checked on them."""
    theirs = cells[cells["model"].str.startswith(PREFIX)].copy()
    theirs["model"] = theirs["model"].str.removeprefix(PREFIX)
    theirs["label"] = [series_label(m, v, p) for m, v, p in
                       zip(theirs["model"], theirs["variant"], theirs["policy"])]
    return theirs


def cost_table(cells: pd.DataFrame, study: str = "") -> Table:
    """One row per (model, max_len) of the cells (read_cells), `stored` policy, default options."""
    cells = cells[(cells["policy"] == "stored") & (cells["variant"] == "default")]
    device = ", ".join(sorted(cells["device"].dropna().unique()))
    on_cpu = not device.startswith("cuda")
    split = pd.DataFrame([source_of(m) for m in cells["model"]], index=cells.index,
                         columns=["base", "source"])
    cells = cells.join(split)
    lookup = {(r.base, r.source, r.max_len): r._asdict() for r in cells.itertuples()}
    bases = _ordered(cells["base"])
    if on_cpu:       # the authors' Mamba family cannot run here: say so beside ours
        bases += [m for m in NEEDS_CUDA if m not in bases]
    index, rows, data, verdicts = [], [], [], {}
    lengths = sorted(cells["max_len"].unique())
    for base in bases:
        measured = [L for L in lengths if (base, OURS, L) in lookup or (base, AUTHORS, L) in lookup]
        # a model measured on neither side (the authors' Mamba family here): one row says so
        for max_len in measured or ["-"]:
            ours = lookup.get((base, OURS, max_len))
            theirs = lookup.get((base, AUTHORS, max_len))
            row = {}
            for name, value, fmt in [("params", "params", "{:,.0f}"),
                                     ("memory MB", "memory_mb", "{:,.0f}"),
                                     ("saved activations MB", "saved_activation_mb", "{:,.0f}"),
                                     ("s/step", "seconds_per_step", "{:.2f}")]:
                row[f"{name} ({OURS})"] = _cell_text(ours, value, fmt)
                row[f"{name} ({AUTHORS})"] = (
                    "needs CUDA" if theirs is None and base in NEEDS_CUDA and on_cpu
                    else _cell_text(theirs, value, fmt))
            ratio = math.nan
            if ours and theirs and ours["status"] == theirs["status"] == "ok":
                ratio = ours["memory_mb"] / theirs["memory_mb"] - 1
                verdicts.setdefault(base, []).append((max_len, ratio, ours, theirs))
            row["memory: ours vs authors'"] = NA if math.isnan(ratio) else (
                f"{ratio:+.1%}" + ("" if abs(ratio) <= TOLERANCE else " (over 10%)"))
            index.append((display_name(base), max_len))
            rows.append(row)
            data.append({"model": base, "max_len": None if max_len == "-" else int(max_len),
                         "memory_ratio": ratio}
                        | {f"{k}_{s}": (r or {}).get(k) for s, r in [("ours", ours),
                                                                      ("authors", theirs)]
                           for k in ("status", "params", "memory_mb", "saved_activation_mb",
                                     "seconds_per_step")})
    frame = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index,
                                                               names=["model", "max_len"]))
    notes = [n for n in (_cost_note(study, device, cells), _limits(cells), _verdict(verdicts))
             if n]
    ours_claim = memory_claim(cells[cells["source"] == OURS].drop(columns=["base", "source"]))
    theirs_claim = memory_claim(_as_authors_models(cells.drop(columns=["base", "source"])))
    notes.append(f"Memory claim on our implementations: {ours_claim or 'not applicable'}")
    notes.append(f"Memory claim on the authors' code: {theirs_claim or 'not applicable'}")
    return Table(title=f"Fidelity ({study or 'cost'}): ours beside the authors' code, cost",
                 cells=frame, marks=frame.map(lambda _: ""), notes=notes,
                 data=pd.DataFrame(data))


def _cost_note(study: str, device: str, cells: pd.DataFrame) -> str:
    batch = ", ".join(str(b) for b in sorted(cells["batch_size"].dropna().unique()))
    memory = ("torch.cuda.max_memory_reserved" if device.startswith("cuda")
              else "peak RSS growth of the cell's process")
    return (f"Profile study `{study}`, device {device}, batch {batch} of full-length random "
            f"sequences, one fresh process per cell, every activation kept (the reference's "
            f"training). memory = {memory}; saved activations = the distinct tensors autograd "
            f"keeps for backward in one forward (parameters not counted); params count a "
            f"complex parameter twice. 'authors'' = TBI805/RecGRELA's model files with their "
            f"config's options (recbench/external/authors_code.py).")


def _verdict(verdicts: Mapping[str, list]) -> str:
    """Which models are within TOLERANCE at every length, and for the others how much of the
    memory difference the kept activations account for."""
    same = [display_name(m) for m, v in verdicts.items()
            if all(abs(r) <= TOLERANCE for _, r, _, _ in v)]
    parts = [f"Memory within {TOLERANCE:.0%} of the authors' code at every length: "
             + (", ".join(same) if same else "none") + "."]
    for model, values in verdicts.items():
        off = [(L, r, o, t) for L, r, o, t in values if abs(r) > TOLERANCE]
        if not off:
            continue
        L, ratio, ours, theirs = max(off, key=lambda v: abs(v[1]))
        gap = ours["memory_mb"] - theirs["memory_mb"]
        kept = ours.get("saved_activation_mb", math.nan) - theirs.get("saved_activation_mb",
                                                                        math.nan)
        parts.append(f"{display_name(model)}: {ratio:+.1%} at L={L} ({gap:+,.0f} MB), of which "
                     f"the activations kept for backward differ by {kept:+,.0f} MB.")
    if len(parts) > 1:
        parts.append("docs/fidelity.md names the operations behind each difference.")
    return " ".join(parts)


def accuracy_table(runs: Sequence[dict], test_ranks: Mapping[tuple, pd.DataFrame],
                   metrics: Sequence[str] = METRICS) -> Table:
    """Ours beside the authors' code on test accuracy, with the paired test per metric."""
    frame = runs_frame(runs)
    split = pd.DataFrame([source_of(m) for m in frame["model"]], index=frame.index,
                         columns=["base", "source"])
    frame = frame.join(split)
    index, rows, data = [], [], []
    for (dataset, max_len), here in frame.groupby(["dataset", "max_len"], sort=True):
        for base in _ordered(here["base"]):
            # ours at its defaults: the reference configs' options (docs/fidelity.md)
            mine = here[(here["base"] == base) & (here["source"] == OURS)
                        & (here["variant"] == "default")]
            theirs = here[(here["base"] == base) & (here["source"] == AUTHORS)]
            for metric in metrics:
                a, b = summarise(mine, metric), summarise(theirs, metric)
                test = _paired(mine, theirs, test_ranks, metric)
                diff = a.mean - b.mean
                rows.append({OURS: a.text, AUTHORS: b.text,
                             "ours - authors'": _number(diff, "{:+.4f}"),
                             "Wilcoxon p": _number(test.get("p_value"), "{:.3g}"),
                             "ours vs authors'": test.get("verdict", NA)})
                index.append((display_name(dataset), max_len, display_name(base),
                              display_name(metric)))
                data.append({"dataset": dataset, "max_len": int(max_len), "model": base,
                             "metric": metric, "ours_mean": a.mean, "ours_std": a.std,
                             "ours_n": a.n, "authors_mean": b.mean, "authors_std": b.std,
                             "authors_n": b.n, **test})
    cells = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(
        index, names=["dataset", "max_len", "model", "metric"]))
    note = ("Ours = this suite's model trained by its engine; authors' = TBI805/RecGRELA's "
            "model file with its config's options, trained by RecBole 1.2.1 (rule "
            "external_recbole) on the same processed data, split and train settings. Mean ± "
            "sample std over seeds (n). Paired test: two-sided Wilcoxon signed-rank over the "
            "test users, each user's value averaged over that side's seeds; 'better' / 'worse' "
            "= ours, from the signed-rank sums, when p < 0.05, else 'no difference'.")
    return Table(title="Fidelity: ours beside the authors' code, test accuracy", cells=cells,
                 marks=cells.map(lambda _: ""), notes=[note], data=pd.DataFrame(data))


def _paired(mine: pd.DataFrame, theirs: pd.DataFrame, test_ranks, metric: str) -> dict:
    def ranks(part):
        keys = [tuple(r) for r in part.loc[part["status"] == "ok", ["dataset", "model",
                                                                    "variant", "max_len",
                                                                    "seed"]].to_numpy()]
        return [test_ranks[k] for k in keys if k in test_ranks]

    ours, authors = ranks(mine), ranks(theirs)
    if not ours or not authors:
        return {}
    per_user = per_user_values({OURS: ours, AUTHORS: authors}, metric)
    row = compare_to(per_user, OURS, metric).iloc[0]
    verdict = row["direction"] if row["p_value"] < 0.05 else "no difference"
    return {"p_value": float(row["p_value"]), "direction": row["direction"],
            "n_users": int(row["n_users"]), "verdict": verdict}
