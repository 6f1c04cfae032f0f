"""The paper's tables from the results files: ours (mean ± std over seeds) beside the paper's.

Reads only results and the paper's numbers, never a model or the engine:
    runs        metrics.json dicts (results contract): dataset, model, variant, max_len, seed,
                status ("ok" | "oom" | "failed"), reason, valid{}, test{}, best_epoch,
                epochs_run, seconds_per_epoch, peak_memory_mb (+ peak_memory_kind, device)
    test_ranks  {run_key(run): DataFrame(user_id, rank)}, each run's test_ranks.parquet
    stats       {dataset: stats.json}
    paper       recbench.reporting.paper_numbers.paper_numbers("reports/paper_numbers.yaml")

Every table is a `Table`: display text in `cells` (rows end with a "source" level, "ours" or
"paper"), best / second marks in `marks`, footnotes in `notes`, and the numbers in long form in
`data` (the CSV). `to_markdown`, `to_latex` and `write_table` render any of them.

A cell of ours is the mean over the seeds that finished, ± their sample standard deviation
(ddof=1; none with one seed), and (n=seeds). A cell that has no results file reads "not run"; a
run that ran out of memory or failed reads "OOM at L=...: reason" / "failed: reason" (reason
shortened here, in full in the CSV). A paper value is shown only for the same dataset, model,
variant and max_len, from the table's own paper block; anything else is "n/a".
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from recbench.io import write_text_atomic
from recbench.evaluation.significance import ZERO_METHOD, compare_to, per_user_values

ACCURACY = ["hit@5", "ndcg@5", "mrr@5", "hit@10", "ndcg@10", "mrr@10"]
EFFICIENCY = ["seconds_per_epoch", "gpu_memory_gb"]
PAPER_MODELS = ["linrec", "lrurec", "mamba4rec", "echomamba4rec", "eulerformer", "recblr",
                "sigma", "recgrela"]
PAPER_DATASETS = ["ml-1m", "ml-20m", "ml-32m", "lfm-1b", "netflix"]
TITLES = {"hit@5": "HR@5", "ndcg@5": "NDCG@5", "mrr@5": "MRR@5", "hit@10": "HR@10",
          "ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "seconds_per_epoch": "s/epoch",
          "gpu_memory_gb": "memory (GB)",
          "linrec": "LinRec", "lrurec": "LRURec", "mamba4rec": "Mamba4Rec",
          "echomamba4rec": "EchoMamba4Rec", "eulerformer": "EulerFormer", "recblr": "RecBLR",
          "sigma": "SIGMA", "recgrela": "RecGRELA", "sasrec": "SASRec", "gru4rec": "GRU4Rec",
          "bert4rec": "BERT4Rec", "popularity": "Pop",
          "recbole-sasrec": "SASRec (RecBole)", "recbole-gru4rec": "GRU4Rec (RecBole)",
          "reference-recgrela": "RecGRELA (authors' code)",
          "reference-linrec": "LinRec (authors' code)",
          "reference-lrurec": "LRURec (authors' code)",
          "reference-eulerformer": "EulerFormer (authors' code)",
          "reference-recblr": "RecBLR (authors' code)",
          "ml-1m": "ML-1M", "ml-20m": "ML-20M", "ml-32m": "ML-32M", "lfm-1b": "LFM-1B",
          "netflix": "Netflix", "ml-100k": "ML-100K"}
FORMATS = {"seconds_per_epoch": "{:.2f}", "gpu_memory_gb": "{:.2f}"}   # else 4 decimals
NOT_RUN = "not run"
NA = "n/a"
REASON_CHARS = 60          # a reason longer than this is cut in the cell (kept whole in the CSV)
IDENTITY = ["dataset", "model", "variant", "max_len", "seed"]
# The paper's training protocol (§4.1.1 of arXiv 2506.13315v2; the reference configs): full
# ranking, up to 300 epochs, early-stopping patience 20 on ML-1M and 10 on the other datasets.
# A paper value stands beside ours only when our runs were trained so (config.train of
# metrics.json).
PAPER_TRAINING = {"eval_mode": "full", "epochs": 300}
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
    return (f"Protocol: {ranking}{sampled}; leave-one-out by time (last item = test, "
            "second-to-last = validation); items already in the history are not masked; "
            "cross-entropy loss over all items (a model's own objective where it has one, e.g. "
            "BERT4Rec's cloze loss); the best-validation NDCG@10 checkpoint is tested.")


@dataclass
class Table:
    title: str
    cells: pd.DataFrame     # display text; the last index level is "source" (ours / paper)
    marks: pd.DataFrame     # same shape: "best", "second" or ""
    notes: list[str]
    data: pd.DataFrame      # the numbers, long form (the CSV)


def display_name(name) -> str:
    """The paper's spelling of a model, dataset or metric name ('recgrela' -> 'RecGRELA')."""
    return TITLES.get(name, str(name))


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
            "epochs": train.get("epochs"), "stopping_step": train.get("stopping_step")})
    columns = IDENTITY + ["status", "reason"] + ACCURACY + EFFICIENCY + [
        "memory_kind", "best_epoch", "epochs_run", "device", "eval_mode", "epochs",
        "stopping_step"]
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


def _fmt(metric: str, value) -> str:
    if value is None or pd.isna(value):
        return NA
    return FORMATS.get(metric, "{:.4f}").format(value)


def _short(reason) -> str:
    reason = " ".join(str(reason).split()) if reason is not None and not pd.isna(reason) else ""
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."


def _problem(status: str, max_len, reason, short: bool = True) -> str:
    """How a run that did not finish reads: "OOM at L=3200: reason", "failed: reason"."""
    if status == "ok":
        return "ok"
    reason = _short(reason) if short else ("" if reason is None or pd.isna(reason) else reason)
    head = {"oom": f"OOM at L={max_len}", "failed": "failed"}.get(status,
                                                                  f"not finished ({status})")
    return f"{head}: {reason}" if reason else head


def summarise(runs: pd.DataFrame, metric: str) -> Cell:
    """One cell from the seeds of one setting (rows of runs_frame)."""
    if runs.empty:
        return Cell(NOT_RUN)
    bad = runs[runs.status != "ok"]
    problems = list(zip(bad.status, bad.max_len, bad.reason))
    shown = list(dict.fromkeys(_problem(*p) for p in problems))
    full = "; ".join(dict.fromkeys(_problem(*p, short=False) for p in problems))
    values = runs.loc[runs.status == "ok", metric].dropna()
    if values.empty:
        text = "; ".join(shown) if shown else NA    # ok runs that lack the metric: n/a
        return Cell(text, problems=full)
    mean, n = float(values.mean()), len(values)
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    text = _fmt(metric, mean) + (f" ± {_fmt(metric, std)}" if n > 1 else "") + f" (n={n})"
    if shown:
        text += f" (+{len(bad)} not ok: {'; '.join(shown)})"
    return Cell(text, mean, std, n, full)


def _best_second(means: Mapping[str, float]) -> dict[str, str]:
    """best / second among the finite means, compared as printed (4 decimals); ties share."""
    shown = {k: round(v, 4) for k, v in means.items() if not math.isnan(v)}
    levels = sorted(set(shown.values()), reverse=True)
    marks = {k: "best" for k, v in shown.items() if v == levels[0]} if levels else {}
    if len(levels) > 1:
        marks |= {k: "second" for k, v in shown.items() if v == levels[1]}
    return marks


def _paper_lookup(paper: pd.DataFrame) -> dict[tuple, float]:
    """{(block, dataset, model, variant, metric, max_len): value}; missing fields are None."""
    def clean(v):
        return None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
    keys = ["block", "dataset", "model", "variant", "metric", "max_len"]
    return {tuple(clean(v) for v in row[:-1]): row[-1]
            for row in paper[keys + ["value"]].itertuples(index=False, name=None)}


def _build(title: str, index: list[tuple], names: list[str], cells: list[dict],
           marks: list[dict], notes: list[str], data: list[dict]) -> Table:
    idx = pd.MultiIndex.from_tuples(index, names=names)
    cell_frame = pd.DataFrame(cells, index=idx).fillna(NA)
    mark_frame = pd.DataFrame([{c: m.get(c, "") for c in cell_frame.columns} for m in marks],
                              index=idx, columns=cell_frame.columns)
    return Table(title, cell_frame, mark_frame, notes, pd.DataFrame(data))


def _seeds_note(frame: pd.DataFrame) -> str:
    seeds = sorted(set(frame.loc[frame.status == "ok", "seed"]))
    return (f"Ours: mean ± sample standard deviation (ddof=1) over the seeds that finished, "
            f"n = number of seeds; seeds run: {seeds or 'none'}. 'not run' = no results file; "
            f"'OOM at L=...' / 'failed' = the run's status and reason (whole in the CSV).")


def _memory_note(frame: pd.DataFrame) -> str:
    kinds = sorted(set(frame["memory_kind"].dropna()))
    return (f"Memory: ours = peak_memory_mb / 1024 ({', '.join(kinds) or 'kind not recorded'}); "
            "the paper's = GPU memory reserved (RecBole's max_memory_reserved, GB = 1024^3 bytes)"
            ", so ours reads lower when it counts allocated memory.")


# --- Table 1 ------------------------------------------------------------------------------

STAT_COLUMNS = [  # (our stats.json key or derived, paper metric, title, format)
    ("n_users", "n_users", "#users", "{:,.0f}"),
    ("n_items", "n_items", "#items", "{:,.0f}"),
    ("n_interactions", "n_interactions", "#interactions", "{:,.0f}"),
    ("avg_seq_len", "avg_actions_per_user", "avg. UA", "{:,.1f}"),
    ("avg_actions_per_item", "avg_actions_per_item", "avg. IA", "{:,.1f}"),
    ("sparsity", "sparsity", "sparsity", "{:.2%}"),
]


def stats_table(stats: Mapping[str, dict], paper: pd.DataFrame) -> Table:
    """Table 1: each dataset's statistics (stats.json) above the paper's."""
    lookup = _paper_lookup(paper)
    index, cells, data = [], [], []
    for dataset, ours in stats.items():
        missing = [k for k in ("n_users", "n_items", "n_interactions", "avg_seq_len", "sparsity")
                   if k not in ours]
        if missing:
            raise ValueError(f"stats.json of {dataset!r} lacks {missing}")
        ours = ours | {"avg_actions_per_item": ours["n_interactions"] / ours["n_items"]}
        row_ours, row_paper = {}, {}
        for key, metric, head, spec in STAT_COLUMNS:
            theirs = lookup.get(("statistics", dataset, None, None, metric, None))
            row_ours[head] = spec.format(ours[key])
            row_paper[head] = NA if theirs is None else spec.format(theirs)
            data.append({"dataset": dataset, "statistic": metric, "ours": ours[key],
                         "paper": theirs})
        index += [(display_name(dataset), "ours"), (display_name(dataset), "paper")]
        cells += [row_ours, row_paper]
    notes = [
        "The paper counts RecBole's padding id (0) as a user and as an item; ours do not, so "
        "ours = paper - 1 for #users and #items when the data match (ML-1M: 6,040 / 3,416 "
        "against the printed 6,041 / 3,417). avg. UA = interactions / users (our avg_seq_len), "
        "avg. IA = interactions / items.",
        "Paper: Table 1 of arXiv 2506.13315v2, as printed (its ML-1M and ML-32M sparsity are "
        "truncated to 0.01 points; see reports/paper_numbers.yaml for its inconsistencies).",
    ]
    return _build("Table 1: dataset statistics (after filtering)", index, ["dataset", "source"],
                  cells, [{} for _ in cells], notes, data)


# --- Table 2 ------------------------------------------------------------------------------

def _off_paper_settings(runs: pd.DataFrame, dataset: str, variant: str) -> list[str]:
    """How the finished runs of one cell were trained otherwise than the paper's Table 2
    (variant default, PAPER_TRAINING, the dataset's patience); [] = as the paper."""
    ok = runs[runs.status == "ok"]
    if ok.empty:                    # nothing of ours beside the paper's number
        return []
    gaps = [] if variant == "default" else [f"variant {variant} (paper: default)"]
    return gaps + _off_paper_training(ok, dataset)


def _off_paper_training(runs: pd.DataFrame, dataset: str) -> list[str]:
    """How these runs were trained otherwise than the paper (PAPER_TRAINING, the dataset's
    patience: §4.1.1); [] = as the paper."""
    if runs[["epochs", "stopping_step"]].isna().any(axis=None):
        return ["train settings not recorded (metrics.json config.train)"]
    paper = PAPER_TRAINING | {"stopping_step": PAPER_STOPPING_STEP.get(dataset, 10)}
    gaps = []
    for key, theirs in paper.items():
        ours = list(dict.fromkeys(runs[key]))
        if ours != [theirs]:
            gaps.append(f"{key} {'/'.join(map(str, ours))} (paper {theirs})")
    return gaps


def main_table(runs: Sequence[dict], paper: pd.DataFrame, *, max_len: int,
               test_ranks: Mapping[tuple, pd.DataFrame] | None = None,
               reference: str = "recgrela", datasets: Sequence[str] | None = None,
               metrics: Sequence[str] = ACCURACY,
               variants: Mapping[str, str | Sequence[str]] | None = None) -> Table:
    """Table 2 in the paper's layout: rows (dataset, metric, ours / paper), columns the paper's
    models (then any other model run, then the reference) and "Improv.".

    `variants` {model: variant or [variants]} says which of our variants of a model are shown,
    one column each, "SASRec (attention=sdpa)" for a variant other than `default` (the
    reference configuration, what the paper's numbers are for; the default when a model is not
    named). The reference's first variant is the one compared with the baselines."""
    asked = {m: [v] if isinstance(v, str) else list(v) for m, v in (variants or {}).items()}
    frame = runs_frame(runs)
    shown = [v in asked.get(m, ["default"]) for m, v in zip(frame.model, frame.variant)]
    frame = frame[pd.Series(shown, index=frame.index, dtype=bool) & (frame.max_len == max_len)]
    frame = frame.assign(column=[_column(m, v) for m, v in zip(frame.model, frame.variant)])
    others = sorted(set(frame.model) - set(PAPER_MODELS) - {reference})
    models = [m for m in PAPER_MODELS if m != reference] + others + [reference]
    columns = [(m, v) for m in models for v in asked.get(m, ["default"])]
    ref_variant = asked.get(reference, ["default"])[0]
    ref = _column(reference, ref_variant)
    own_code = {reference, f"reference-{reference}"}
    present = set(frame.dataset)
    datasets = list(datasets or ([d for d in PAPER_DATASETS if d in present]
                                 + sorted(present - set(PAPER_DATASETS))) or PAPER_DATASETS)
    lookup = _paper_lookup(paper)
    off = {(d, m, v): gaps for d in datasets for m, v in columns
           if (gaps := _off_paper_settings(frame[(frame.dataset == d) & (frame.model == m)
                                                 & (frame.variant == v)], d, v))}

    def printed(dataset, model, variant, metric):
        """The paper's number, only beside our runs of the same variant and train settings;
        the paper's Improv. only where its RecGRELA value is shown."""
        if ((dataset, reference, ref_variant) if model == "improv"
                else (dataset, model, variant)) in off:
            return None
        return lookup.get(("table2", dataset, model, variant, metric, max_len))

    index, cells, marks, data, tested = [], [], [], [], {}
    for dataset in datasets:
        here = frame[frame.dataset == dataset]
        for metric in metrics:
            row = {(m, v): summarise(here[(here.model == m) & (here.variant == v)], metric)
                   for m, v in columns}
            means = {_column(*k): c.mean for k, c in row.items()}
            rank = _best_second(means)
            # the authors' code of the reference (reference-recgrela) is shown, not a baseline
            baselines = {_column(m, v): c.mean for (m, v), c in row.items()
                         if m not in own_code and not math.isnan(c.mean)}
            best_of = {_column(m, v): (m, v) for m, v in row}
            best = max(baselines, key=baselines.get) if baselines else None
            ok = best is not None and not math.isnan(means[ref])
            improv = means[ref] / baselines[best] - 1 if ok and baselines[best] > 0 \
                else math.nan
            tested_here = here[here.model != f"reference-{reference}"]
            p_holm, direction, why = (_test(tested_here, ref, best, metric, test_ranks) if ok else
                                      (None, None, "no baseline or no reference result"))
            tested[(dataset, metric)] = p_holm, why

            ours = {_title(*k): c.text for k, c in row.items()}
            if p_holm is not None and p_holm < 0.05 and direction in ("better", "worse"):
                # the direction is the signed-rank test's, not the sign of the mean difference
                ours[_title(reference, ref_variant)] += " *" if direction == "better" else " †"
            ours["Improv."] = (NA if math.isnan(improv) else
                               f"{improv:+.2%} vs {_title(*best_of[best])}")
            theirs = {_title(m, v): _fmt(metric, printed(dataset, m, v, metric))
                      for m, v in columns}
            paper_improv = printed(dataset, "improv", "default", metric)
            # the paper's best baseline of the row, from its own printed values
            rivals = {m: lookup.get(("table2", dataset, m, "default", metric, max_len))
                      for m in PAPER_MODELS if m != reference}
            rivals = {m: v for m, v in rivals.items() if v is not None}
            top = [display_name(m) for m, v in rivals.items() if v == max(rivals.values())]
            theirs["Improv."] = NA if paper_improv is None else f"{paper_improv:+.2%}" + (
                f" vs {' / '.join(top)}" if top else "")
            index += [(display_name(dataset), display_name(metric), source)
                      for source in ("ours", "paper")]
            cells += [ours, theirs]
            marks += [{_title(*k): rank.get(_column(*k), "") for k in row}, {}]

            data += [{"dataset": dataset, "max_len": max_len, "metric": metric, "model": m,
                      "variant": v,
                      "ours_mean": c.mean, "ours_std": c.std, "n_seeds": c.n, "ours": c.text,
                      "problems": c.problems, "mark": rank.get(_column(m, v), ""),
                      "paper": printed(dataset, m, v, metric),
                      "p_holm_vs_best": p_holm if _column(m, v) == ref else None}
                     for (m, v), c in row.items()]
            data.append({"dataset": dataset, "max_len": max_len, "metric": metric,
                         "model": "improv",
                         "ours_mean": improv, "paper": paper_improv, "best_baseline": best})
    notes = [
        _seeds_note(frame),
        *([f"Paper value not shown (n/a) where our runs differ from the paper's (variant "
           f"default; full ranking; up to 300 epochs; patience 20 on ML-1M, 10 elsewhere): "
           + "; ".join(f"{display_name(d)} {_title(m, v)}: {', '.join(g)}"
                       for (d, m, v), g in off.items())] if off else []),
        f"Paper: Table 2 of arXiv 2506.13315v2 (max_len 200; one run per cell, seed not "
        f"stated). Shown only beside runs at the same max_len (ours: {max_len}), of the same "
        f"variant and train settings.",
        f"Bold = best, underlined = second best of ours in each row (compared at 4 decimals). "
        f"Improv. = {display_name(reference)} / best baseline of the row - 1, named in the "
        f"cell (ours: over every baseline we ran; the paper's: over its seven, the best named "
        f"from its printed values).",
        _significance_note(tested, reference),
        protocol(frame) + f" max_len {max_len}.",
    ]
    return _build(f"Table 2: test accuracy at max_len {max_len}", index,
                  ["dataset", "metric", "source"], cells, marks, notes, data)


def _column(model: str, variant: str) -> str:
    """A Table 2 column's key: the model, with its variant when not the default."""
    return model if variant == "default" else f"{model} ({variant})"


def _title(model: str, variant: str) -> str:
    """A Table 2 column's heading: 'SASRec', 'SASRec (attention=sdpa)'."""
    return _column(display_name(model), variant)


def _test(here: pd.DataFrame, reference: str, best: str, metric: str,
          test_ranks: Mapping[tuple, pd.DataFrame] | None
          ) -> tuple[float | None, str | None, str]:
    """Holm-adjusted p of reference vs best (Table 2 columns), Holm over every column of `here`
    whose finished seeds all have ranks -> (p_holm, the test's direction "better" / "worse" /
    "none", what was compared), or (None, None, why not)."""
    ranks: dict[str, list[pd.DataFrame]] = {}
    for model, seeds in here[here.status == "ok"].groupby("column"):
        keys = [tuple(r) for r in seeds[IDENTITY].itertuples(index=False, name=None)]
        if test_ranks and all(k in test_ranks for k in keys):
            ranks[str(model)] = [test_ranks[k] for k in keys]
    lacking = [m for m in (reference, best) if m not in ranks]
    if lacking:
        return None, None, f"per-user ranks missing for {lacking}"
    try:
        result = compare_to(per_user_values(ranks, metric), reference, metric)
    except ValueError as err:     # e.g. no common users: say so under the table, do not crash
        return None, None, str(err)
    row = result[result.model == best].iloc[0]
    return (float(row.p_holm), row.direction,
            f"{len(result)} baselines, {int(row.n_users):,} users")


def _significance_note(tested: dict, reference: str) -> str:
    """tested: {(dataset, metric): (p_holm or None, what was compared / why not)}."""
    done = dict.fromkeys(f"{display_name(d)}: {why}" for (d, _), (p, why) in tested.items()
                         if p is not None)
    skipped = dict.fromkeys(f"{display_name(d)} {display_name(m)}: {why}" for (d, m), (p, why)
                            in tested.items() if p is None)
    name = display_name(reference)
    text = (f"Significance (on {name}'s cell: * significantly better, † significantly worse "
            f"than the row's best baseline): p < 0.05 after Holm correction; two-sided "
            f"Wilcoxon signed-rank test (scipy, zero_method='{ZERO_METHOD}': users on whom both "
            f"models score the same are dropped) of {name} against the best baseline of the "
            f"row, on per-user test values averaged over seeds; the direction is the test's "
            f"(signed-rank sum of {name}'s wins against its null mean), so it can differ from "
            f"the sign of Improv.; Holm over all baselines "
            f"compared per dataset and metric ({'; '.join(done) or 'no test run'}).")
    if skipped:
        text += f" Not tested: {'; '.join(skipped)}."
    return text


# --- groups: Table 3, ablations, sensitivity, length sweeps ---------------------------------

def group_table(runs: Sequence[dict], paper: pd.DataFrame, *, dataset: str, model: str,
                by: str = "variant", rows: Sequence | None = None, max_len: int | None = None,
                variant: str = "default", block: str | None = None,
                metrics: Sequence[str] = ACCURACY + EFFICIENCY,
                title: str | None = None) -> Table:
    """One experiment group: rows = variants (by="variant", at `max_len`) or max_len values
    (by="max_len", of `variant`), each ours above the paper's (from paper `block`, labelled
    with the paper's name); columns = metrics."""
    if by not in ("variant", "max_len"):
        raise ValueError(f"group_table: by must be 'variant' or 'max_len', got {by!r}")
    if by == "variant" and max_len is None:
        raise ValueError("group_table: by='variant' needs the max_len the variants ran at")
    frame = runs_frame(runs)
    frame = frame[(frame.dataset == dataset) & (frame.model == model)]
    frame = frame[frame.max_len == max_len] if by == "variant" else frame[frame.variant == variant]
    named = paper[(paper.block == block) & (paper.model == model)]
    theirs = named[named.dataset == dataset]
    # the paper's names of its rows ("w/o RoPE") on any dataset; its numbers on its own only
    labels = dict(zip(named[by].tolist(), named["label"].tolist()))
    if rows is None:
        rows = list(dict.fromkeys(theirs[by].tolist()))
        rows += sorted(set(frame[by]) - set(rows))
    lookup = _paper_lookup(paper)
    index, cells, data, hidden = [], [], [], {}
    for key in rows:
        label = labels.get(key)
        name = (f"L={key}" if by == "max_len" else
                f"{label} ({key})" if isinstance(label, str) and label != key else str(key))
        here = frame[frame[by] == key]
        finished = here[here.status == "ok"]
        off = _off_paper_training(finished, dataset) if len(finished) else []
        if off:
            hidden[name] = off
        ours, printed = {}, {}
        for metric in metrics:
            cell = summarise(here, metric)
            at = (block, dataset, model, key if by == "variant" else variant, metric,
                  max_len if by == "variant" else key)
            value = None if off else lookup.get(at)
            ours[display_name(metric)] = cell.text
            printed[display_name(metric)] = _fmt(metric, value)
            data.append({"dataset": dataset, "model": model, by: key,
                         "label": label if isinstance(label, str) else None,
                         "metric": metric, "ours_mean": cell.mean, "ours_std": cell.std,
                         "n_seeds": cell.n, "ours": cell.text, "problems": cell.problems,
                         "paper": value})
        index += [(name, "ours"), (name, "paper")]
        cells += [ours, printed]
    source = (theirs["source"].iloc[0] if len(theirs) else None)
    notes = [_seeds_note(frame),
             (f"Paper: {source}, at the same dataset, model, variant and max_len, beside runs "
              "trained as the paper's; 'n/a' where it gives no number." if source
              else "The paper prints no numbers for this group."),
             protocol(frame)]
    if source and hidden:
        notes.append("Paper value not shown (ours trained otherwise): " + "; ".join(
            f"{name}: {', '.join(gaps)}" for name, gaps in hidden.items()) + ".")
    if any(m in EFFICIENCY for m in metrics):
        notes.append(_memory_note(frame) + " s/epoch = training seconds per epoch.")
    fixed = f"max_len {max_len}" if by == "variant" else f"variant {variant}"
    title = title or f"{display_name(model)} on {display_name(dataset)}, {fixed}"
    return _build(title, index, [by, "source"], cells, [{} for _ in cells], notes, data)


def layers_table(runs: Sequence[dict], paper: pd.DataFrame, *, dataset: str = "ml-1m",
                 model: str = "recgrela", max_len: int = 200) -> Table:
    """Table 3: RecGRELA with 1-6 GRELA blocks (num_layers=n; 4 = default), and any other
    layer count that was run."""
    rows = list(dict.fromkeys(paper.loc[paper.block == "table3", "variant"]))
    run = {r["variant"] for r in runs if (r.get("dataset"), r.get("model")) == (dataset, model)
           and re.fullmatch(r"num_layers=\d+", r["variant"])}
    rows += sorted(run - set(rows), key=lambda v: int(v.split("=")[1]))
    table = group_table(runs, paper, dataset=dataset, model=model, max_len=max_len, rows=rows,
                        block="table3", title=f"Table 3: {display_name(model)} layers on "
                        f"{display_name(dataset)}, max_len {max_len}")
    table.notes.insert(2, "The paper's 4-layer row repeats Table 2's @10 values but prints "
                          "other @5 values (0.1865 / 0.1152 / 0.0988); the reference log "
                          "agrees with Table 2.")
    return table


# --- every run, one row each ----------------------------------------------------------------

def runs_table(runs: Sequence[dict], paper: pd.DataFrame) -> Table:
    """One row per run: status, test metrics, the paper's NDCG@10 / HR@10 (the first paper
    table or figure with the run's dataset, model, variant and max_len: Table 2 before Table 3
    and the figures) and the reference log's, then epochs, time, memory and device."""
    frame = runs_frame(runs).sort_values(IDENTITY)
    lookup = _paper_lookup(paper)
    blocks = [b for b in dict.fromkeys(paper["block"]) if b.startswith(("table", "fig"))]
    index, cells = [], []
    for run in frame.to_dict("records"):
        setting = (run["dataset"], run["model"], run["variant"])
        row = {"status": _problem(run["status"], run["max_len"], run["reason"])}
        row |= {display_name(m): _fmt(m, run[m]) for m in ACCURACY}
        # the paper's and the log's numbers only beside a run trained as they were
        as_paper = not _off_paper_training(pd.DataFrame([run]), run["dataset"])
        for m in ("ndcg@10", "hit@10"):
            found = [lookup[k] for k in ((b, *setting, m, run["max_len"]) for b in blocks)
                     if k in lookup and as_paper]
            log = lookup.get(("reference_log", *setting, m, run["max_len"])) if as_paper else None
            row[f"paper {display_name(m)}"] = _fmt(m, found[0] if found else None)
            row[f"log {display_name(m)}"] = _fmt(m, log)
        row |= {"best epoch": _int(run["best_epoch"]), "epochs": _int(run["epochs_run"]),
                "s/epoch": _fmt("seconds_per_epoch", run["seconds_per_epoch"]),
                "peak MB": NA if pd.isna(run["gpu_memory_gb"])
                else f"{run['gpu_memory_gb'] * 1024:,.0f}",
                "device": run["device"] or NA}
        index.append(tuple(run[k] for k in IDENTITY))
        cells.append(row)
    notes = [protocol(frame), "paper = the paper's table or figure for this setting (Table 2 first); "
             "log = the RecGRELA reference training log (ML-1M, max_len 200, seed 2020), not a "
             "paper table; n/a = not given, or the run was not trained as the paper's (full "
             "ranking, 300 epochs, patience 20 on ML-1M and 10 elsewhere).", _memory_note(frame)]
    return _build("Every run (test split)", index, IDENTITY, cells, [{} for _ in cells], notes,
                  frame.to_dict("records"))


def _int(value) -> str:
    return NA if value is None or pd.isna(value) else str(int(value))


# --- rendering ------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    """# title, the table (repeated leading row labels left blank), then the notes."""
    names = list(table.cells.index.names)
    head = names + list(table.cells.columns)
    lines = [f"# {table.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    previous: tuple = ()
    for key, texts, marks in zip(table.cells.index, table.cells.to_numpy(),
                                 table.marks.to_numpy()):
        key = key if isinstance(key, tuple) else (key,)
        shown = ["" if key[:i + 1] == previous[:i + 1] else _md(str(k))
                 for i, k in enumerate(key)]
        previous = key
        body = [_md_mark(_md(str(t)), m) for t, m in zip(texts, marks)]
        lines.append("| " + " | ".join(shown + body) + " |")
    return "\n".join(lines + [""] + [f"{n}\n" for n in table.notes])


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")


def _md_mark(text: str, mark: str) -> str:
    return {"best": f"**{text}**", "second": f"<u>{text}</u>"}.get(mark, text)


def to_latex(table: Table) -> str:
    """A table environment: caption, the tabular (pandas Styler; booktabs rules), the notes."""
    css = table.marks.replace({"best": "textbf: --rwrap;", "second": "underline: --rwrap;"})
    styler = (table.cells.style.format(_latex_escape).format_index(_latex_escape, axis=0)
              .format_index(_latex_escape, axis=1).apply(lambda _: css, axis=None))
    tabular = styler.to_latex(hrules=True, multirow_align="naive")
    notes = "\n\n".join(_latex_escape(n) for n in table.notes)
    return ("% needs \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n"
            f"\\caption{{{_latex_escape(table.title)}}}\n\\small\n{tabular}"
            f"\\par\\smallskip\n{{\\footnotesize {notes}\\par}}\n\\end{{table}}\n")


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
          "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
          "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
          "±": r"$\pm$"}


def _latex_escape(text) -> str:
    """Text as LaTeX prints it literally (one pass, so no escape is escaped again)."""
    return re.sub("|".join(map(re.escape, _LATEX)), lambda m: _LATEX[m.group()], str(text))


def write_table(table: Table | Sequence[Table], md_path, csv_path, tex_path,
                head: str = "") -> None:
    """One table, or a list of them one after another (the CSV then gains a `table` column
    naming each), as Markdown (after `head`), CSV (the numbers) and LaTeX, each atomically."""
    tables = [table] if isinstance(table, Table) else list(table)
    data = (table.data if isinstance(table, Table) else
            pd.concat([t.data.assign(table=t.title) for t in tables]))
    write_text_atomic(md_path, head + "\n\n".join(to_markdown(t) for t in tables))
    write_text_atomic(csv_path, data.to_csv(index=False))
    write_text_atomic(tex_path, "\n\n".join(to_latex(t) for t in tables))
