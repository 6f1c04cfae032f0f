"""The table kernel: ours (mean ± std over seeds) beside the paper's, as a `Table`.

Reads only results and the paper's numbers, never a model or the engine:
    runs        metrics.json dicts (results contract): dataset, model, variant, max_len, seed,
                status ("ok" | "oom" | "failed"), reason, valid{}, test{}, best_epoch,
                epochs_run, seconds_per_epoch, peak_memory_mb (+ peak_memory_kind, device)
    test_ranks  {run_key(run): DataFrame(user_id, rank)}, each run's test_ranks.parquet
    stats       {dataset: stats.json}
    paper       recbench.reporting.paper_numbers.paper_numbers("reports/paper_numbers.yaml")

Every table is a `Table`: display text in `cells` (rows end with a "source" level, "ours" or
"paper"), best / second marks in `marks`, footnotes in `notes`, and the numbers in long form in
`data` (the CSV). recbench/reporting/render.py renders any of them (Markdown, LaTeX, CSV); the
paper's tables themselves are built in recbench/reporting/paper_tables.py.

A cell of ours is the mean over the seeds that finished, ± their sample standard deviation
(ddof=1; none with one seed), and (n=seeds). A cell that has no results file reads "not run"; a
run that ran out of memory or failed reads "OOM at L=...: reason" / "failed: reason" (reason
shortened here, in full in the CSV). A paper value is shown only for the same dataset, model,
variant and max_len, from the table's own paper block; anything else is "n/a".
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from recbench.names import display_name

ACCURACY = ["hit@5", "ndcg@5", "mrr@5", "hit@10", "ndcg@10", "mrr@10"]
EFFICIENCY = ["seconds_per_epoch", "gpu_memory_gb"]
PAPER_MODELS = ["linrec", "lrurec", "mamba4rec", "echomamba4rec", "eulerformer", "recblr",
                "sigma", "recgrela"]
PAPER_DATASETS = ["ml-1m", "ml-20m", "ml-32m", "lfm-1b", "netflix"]
FORMATS = {"seconds_per_epoch": "{:.2f}", "gpu_memory_gb": "{:.2f}"}   # else 4 decimals
NOT_RUN = "not run"
DETERMINISTIC = "(deterministic)"   # a model whose runs do not depend on the seed
NA = "n/a"
REASON_CHARS = 60          # a reason longer than this is cut in the cell (kept whole in the CSV)
IDENTITY = ["dataset", "model", "variant", "max_len", "seed"]
# The paper's training protocol (§4.1.1 of arXiv 2506.13315v2; the reference configs): full
# ranking, up to 300 epochs, early-stopping patience 20 on ML-1M and 10 on the other datasets.
# A paper value stands beside ours only when our runs were trained so (config.train of
# metrics.json).
PAPER_TRAINING = {"eval_mode": "full", "epochs": 300, "precision": "fp32"}
PRECISIONS = {"fp32": "float32 training", "bf16": "bfloat16 autocast training (train.precision)"}
PAPER_STOPPING_STEP = {"ml-1m": 20}        # every other dataset: 10
RANKING = {"full": "full ranking over all items (no sampled negatives)",
           "uni100": "the target ranked among 100 uniformly drawn negatives per user",
           "pop100": "the target ranked among 100 popularity-drawn negatives per user"}


def protocol(frame: pd.DataFrame) -> str:
    """The protocol sentence of a table, with the ranking of its runs (train.eval_mode)."""
    modes = list(dict.fromkeys(frame["eval_mode"])) or ["full"]
    ranking = "; ".join(RANKING.get(m, m) for m in modes)
    sampled = " (negatives drawn once, never the target nor an item of the user's history)" \
        if set(modes) - {"full"} else ""
    precisions = list(dict.fromkeys(frame["precision"])) if "precision" in frame else []
    arithmetic = " / ".join(PRECISIONS.get(p, p) for p in precisions or ["fp32"])
    return (f"Protocol: {ranking}{sampled}; leave-one-out by time (last item = test, "
            "second-to-last = validation); items already in the history are not masked; "
            "cross-entropy loss over all items (a model's own objective where it has one, e.g. "
            f"BERT4Rec's cloze loss); {arithmetic}; the best-validation NDCG@10 checkpoint is "
            "tested.")


@dataclass
class Table:
    title: str
    cells: pd.DataFrame     # display text; the last index level is "source" (ours / paper)
    marks: pd.DataFrame     # same shape: "best", "second" or ""
    notes: list[str]
    data: pd.DataFrame      # the numbers, long form (the CSV)


def run_key(run: dict) -> tuple:
    """(dataset, model, variant, max_len, seed): a run's identity, from its metrics.json."""
    return tuple(run[k] for k in IDENTITY)


# --- runs -> cells ------------------------------------------------------------------------

def runs_frame(runs: Sequence[dict]) -> pd.DataFrame:
    """One row per run: identity, status, reason, the test metrics, seconds_per_epoch and
    gpu_memory_gb (peak_memory_mb / 1024, so GiB as RecBole prints it), memory_kind."""
    rows = []
    for run in runs:
        missing = [k for k in IDENTITY + ["status"] if k not in run]
        if missing:
            raise ValueError(f"metrics.json of run {run.get('run', '?')!r} lacks {missing} "
                             "(results contract: dataset, model, variant, max_len, seed, status)")
        test = run.get("test") or {}
        train = (run.get("config") or {}).get("train") or {}
        memory = run.get("peak_memory_mb")
        rows.append({k: run[k] for k in IDENTITY} | {
            "status": run["status"], "reason": run.get("reason"),
            **{m: test.get(m) for m in ACCURACY},
            "seconds_per_epoch": run.get("seconds_per_epoch"),
            "gpu_memory_gb": None if memory is None else memory / 1024,
            "memory_kind": run.get("peak_memory_kind"),
            "best_epoch": run.get("best_epoch"), "epochs_run": run.get("epochs_run"),
            "device": run.get("device"), "eval_mode": run.get("eval_mode", "full"),
            "epochs": train.get("epochs"), "stopping_step": train.get("stopping_step"),
            # runs from before the setting trained in fp32
            "precision": train.get("precision", "fp32")})
    columns = IDENTITY + ["status", "reason"] + ACCURACY + EFFICIENCY + [
        "memory_kind", "best_epoch", "epochs_run", "device", "eval_mode", "epochs",
        "stopping_step", "precision"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({m: "float64" for m in ACCURACY + EFFICIENCY}
                        | {"epochs": "Int64", "stopping_step": "Int64"})


@dataclass
class Cell:
    text: str
    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    problems: str = ""      # full reasons of the seeds that did not finish


def format_value(metric: str, value) -> str:
    if value is None or pd.isna(value):
        return NA
    return FORMATS.get(metric, "{:.4f}").format(value)


def short_reason(reason) -> str:
    reason = " ".join(str(reason).split()) if reason is not None and not pd.isna(reason) else ""
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."


def problem_text(status: str, max_len, reason, short: bool = True) -> str:
    """How a run that did not finish reads: "OOM at L=3200: reason", "failed: reason"."""
    if status == "ok":
        return "ok"
    reason = short_reason(reason) if short else ("" if reason is None or pd.isna(reason) else reason)
    head = {"oom": f"OOM at L={max_len}", "failed": "failed"}.get(status,
                                                                  f"not finished ({status})")
    return f"{head}: {reason}" if reason else head


def summarise(runs: pd.DataFrame, metric: str, deterministic: bool = False) -> Cell:
    """One cell from the seeds of one setting (rows of runs_frame). A `deterministic` model
    (its runs do not depend on the seed: run once, or the same number from every seed) reads
    "0.0123 (deterministic)", with no standard deviation."""
    if runs.empty:
        return Cell(NOT_RUN)
    bad = runs[runs.status != "ok"]
    problems = list(zip(bad.status, bad.max_len, bad.reason))
    shown = list(dict.fromkeys(problem_text(*p) for p in problems))
    full = "; ".join(dict.fromkeys(problem_text(*p, short=False) for p in problems))
    values = runs.loc[runs.status == "ok", metric].dropna()
    if values.empty:
        text = "; ".join(shown) if shown else NA    # ok runs that lack the metric: n/a
        return Cell(text, problems=full)
    mean, n = float(values.mean()), len(values)
    if deterministic and values.max() - values.min() <= 1e-12:
        text = format_value(metric, mean) + f" {DETERMINISTIC}"
        if shown:
            text += f" (+{len(bad)} not ok: {'; '.join(shown)})"
        return Cell(text, mean, math.nan, n, full)
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    text = format_value(metric, mean) + (f" ± {format_value(metric, std)}" if n > 1 else "") + f" (n={n})"
    if shown:
        text += f" (+{len(bad)} not ok: {'; '.join(shown)})"
    return Cell(text, mean, std, n, full)


def best_and_second(means: Mapping[str, float]) -> dict[str, str]:
    """best / second among the finite means, compared as printed (4 decimals); ties share."""
    shown = {k: round(v, 4) for k, v in means.items() if not math.isnan(v)}
    levels = sorted(set(shown.values()), reverse=True)
    marks = {k: "best" for k, v in shown.items() if v == levels[0]} if levels else {}
    if len(levels) > 1:
        marks |= {k: "second" for k, v in shown.items() if v == levels[1]}
    return marks


def paper_lookup(paper: pd.DataFrame) -> dict[tuple, float]:
    """{(block, dataset, model, variant, metric, max_len): value}; missing fields are None."""
    def clean(v):
        return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
    keys = ["block", "dataset", "model", "variant", "metric", "max_len"]
    return {tuple(clean(v) for v in row[:-1]): row[-1]
            for row in paper[keys + ["value"]].itertuples(index=False, name=None)}


def build_table(title: str, index: list[tuple], names: list[str], cells: list[dict],
           marks: list[dict], notes: list[str], data: list[dict]) -> Table:
    idx = pd.MultiIndex.from_tuples(index, names=names)
    cell_frame = pd.DataFrame(cells, index=idx).fillna(NA)
    mark_frame = pd.DataFrame([{c: m.get(c, "") for c in cell_frame.columns} for m in marks],
                              index=idx, columns=cell_frame.columns)
    return Table(title, cell_frame, mark_frame, notes, pd.DataFrame(data))


def seeds_note(frame: pd.DataFrame, deterministic: Collection[str] = ()) -> str:
    seeds = sorted(set(frame.loc[frame.status == "ok", "seed"]))
    fixed = sorted(set(deterministic) & set(frame.model))
    return (f"Ours: mean ± sample standard deviation (ddof=1) over the seeds that finished, "
            f"n = number of seeds; seeds run: {seeds or 'none'}. 'not run' = no results file; "
            f"'OOM at L=...' / 'failed' = the run's status and reason (whole in the CSV)."
            + (f" {DETERMINISTIC} = a model whose result does not depend on the seed "
               f"({', '.join(display_name(m) for m in fixed)}): one number, no spread."
               if fixed else ""))


def memory_note(frame: pd.DataFrame) -> str:
    kinds = sorted(set(frame["memory_kind"].dropna()))
    return (f"Memory: ours = peak_memory_mb / 1024 ({', '.join(kinds) or 'kind not recorded'}); "
            "the paper's = GPU memory reserved (RecBole's max_memory_reserved, GB = 1024^3 bytes)"
            ", so ours reads lower when it counts allocated memory.")


# --- Table 1 ------------------------------------------------------------------------------
