"""The paper's tables, each a `Table` (recbench/reporting/tables.py) built from results files:
Table 1 (datasets: stats_table), Table 2 (main_table), a group's table (group_table), the
layers table (layers_table) and every run (runs_table)."""
from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence

import pandas as pd

from recbench.evaluation.significance import ZERO_METHOD, compare_to, per_user_values
from recbench.names import display_name
from recbench.reporting.tables import (
    ACCURACY,
    EFFICIENCY,
    IDENTITY,
    NA,
    PAPER_DATASETS,
    PAPER_MODELS,
    PAPER_STOPPING_STEP,
    PAPER_TRAINING,
    Table,
    best_and_second,
    build_table,
    format_value,
    memory_note,
    paper_lookup,
    problem_text,
    protocol,
    runs_frame,
    seeds_note,
    summarise,
)

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
    lookup = paper_lookup(paper)
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
    return build_table("Table 1: dataset statistics (after filtering)", index, ["dataset", "source"],
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
               variants: Mapping[str, str | Sequence[str]] | None = None,
               deterministic: Collection[str] = ()) -> Table:
    """Table 2 in the paper's layout: rows (dataset, metric, ours / paper), columns the paper's
    models (then any other model run, then the reference) and "Improv.".

    `variants` {model: variant or [variants]} says which of our variants of a model are shown,
    one column each, "SASRec (attention=sdpa)" for a variant other than `default` (the
    reference configuration, what the paper's numbers are for; the default when a model is not
    named). The reference's first variant is the one compared with the baselines.
    `deterministic`: models whose runs do not depend on the seed (one number, no spread)."""
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
    lookup = paper_lookup(paper)
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
            row = {(m, v): summarise(here[(here.model == m) & (here.variant == v)], metric,
                                     deterministic=m in deterministic)
                   for m, v in columns}
            means = {_column(*k): c.mean for k, c in row.items()}
            rank = best_and_second(means)
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
            theirs = {_title(m, v): format_value(metric, printed(dataset, m, v, metric))
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
        seeds_note(frame, deterministic),
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
    return build_table(f"Table 2: test accuracy at max_len {max_len}", index,
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
                title: str | None = None, deterministic: Collection[str] = ()) -> Table:
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
    lookup = paper_lookup(paper)
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
            cell = summarise(here, metric, deterministic=model in deterministic)
            at = (block, dataset, model, key if by == "variant" else variant, metric,
                  max_len if by == "variant" else key)
            value = None if off else lookup.get(at)
            ours[display_name(metric)] = cell.text
            printed[display_name(metric)] = format_value(metric, value)
            data.append({"dataset": dataset, "model": model, by: key,
                         "label": label if isinstance(label, str) else None,
                         "metric": metric, "ours_mean": cell.mean, "ours_std": cell.std,
                         "n_seeds": cell.n, "ours": cell.text, "problems": cell.problems,
                         "paper": value})
        index += [(name, "ours"), (name, "paper")]
        cells += [ours, printed]
    source = (theirs["source"].iloc[0] if len(theirs) else None)
    notes = [seeds_note(frame, deterministic),
             (f"Paper: {source}, at the same dataset, model, variant and max_len, beside runs "
              "trained as the paper's; 'n/a' where it gives no number." if source
              else "The paper prints no numbers for this group."),
             protocol(frame)]
    if source and hidden:
        notes.append("Paper value not shown (ours trained otherwise): " + "; ".join(
            f"{name}: {', '.join(gaps)}" for name, gaps in hidden.items()) + ".")
    if any(m in EFFICIENCY for m in metrics):
        notes.append(memory_note(frame) + " s/epoch = training seconds per epoch.")
    fixed = f"max_len {max_len}" if by == "variant" else f"variant {variant}"
    title = title or f"{display_name(model)} on {display_name(dataset)}, {fixed}"
    return build_table(title, index, [by, "source"], cells, [{} for _ in cells], notes, data)


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
    lookup = paper_lookup(paper)
    blocks = [b for b in dict.fromkeys(paper["block"]) if b.startswith(("table", "fig"))]
    index, cells = [], []
    for run in frame.to_dict("records"):
        setting = (run["dataset"], run["model"], run["variant"])
        row = {"status": problem_text(run["status"], run["max_len"], run["reason"])}
        row |= {display_name(m): format_value(m, run[m]) for m in ACCURACY}
        # the paper's and the log's numbers only beside a run trained as they were
        as_paper = not _off_paper_training(pd.DataFrame([run]), run["dataset"])
        for m in ("ndcg@10", "hit@10"):
            found = [lookup[k] for k in ((b, *setting, m, run["max_len"]) for b in blocks)
                     if k in lookup and as_paper]
            log = lookup.get(("reference_log", *setting, m, run["max_len"])) if as_paper else None
            row[f"paper {display_name(m)}"] = format_value(m, found[0] if found else None)
            row[f"log {display_name(m)}"] = format_value(m, log)
        row |= {"best epoch": _int(run["best_epoch"]), "epochs": _int(run["epochs_run"]),
                "s/epoch": format_value("seconds_per_epoch", run["seconds_per_epoch"]),
                "peak MB": NA if pd.isna(run["gpu_memory_gb"])
                else f"{run['gpu_memory_gb'] * 1024:,.0f}",
                "device": run["device"] or NA}
        index.append(tuple(run[k] for k in IDENTITY))
        cells.append(row)
    notes = [protocol(frame), "paper = the paper's table or figure for this setting (Table 2 first); "
             "log = the RecGRELA reference training log (ML-1M, max_len 200, seed 2020), not a "
             "paper table; n/a = not given, or the run was not trained as the paper's (full "
             "ranking, 300 epochs, patience 20 on ML-1M and 10 elsewhere).", memory_note(frame)]
    return build_table("Every run (test split)", index, IDENTITY, cells, [{} for _ in cells], notes,
                  frame.to_dict("records"))


def _int(value) -> str:
    return NA if value is None or pd.isna(value) else str(int(value))
