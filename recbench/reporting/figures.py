"""The paper's figures, and the ones beyond it, from the tables' CSVs and the profile cells.

Figures read only what the report rules already wrote (reports/tables/*.csv: ours as mean and
std over seeds beside the paper's value) and the profile cells (recbench/cost/cells.py), so a figure
never disagrees with its table. Every model keeps one colour and one marker in every figure
(recbench/reporting/style.py); the paper's numbers, where it prints any, are drawn beside ours (hatched bars,
hollow markers). Each figure is saved as PNG and SVG.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from recbench.cost.cells import TAIL, loglog_slope, memory_claim  # noqa: E402
from recbench.io import atomic_path  # noqa: E402
from recbench.names import display_name  # noqa: E402
from recbench.reporting.style import (  # noqa: E402
    BATCH_LINESTYLES,
    MODEL_ORDER,
    PAPER_COLOUR,
    VARIANT_LINESTYLES,
    model_style,
)

NOT_TRAINED = {"popularity"}    # not learned (training counts items): no training curve


def save(fig, png: str | Path, svg: str | Path) -> None:
    for path, fmt in ((png, "png"), (svg, "svg")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)


def _single_seed(part: pd.DataFrame) -> np.ndarray:
    """Which rows of a table CSV are one seed (n_seeds 1, else no std beside a mean)."""
    if "n_seeds" in part:
        return (part["n_seeds"] == 1).to_numpy()
    return (part["ours_std"].isna() & part["ours_mean"].notna()).to_numpy()


def _say_single_seeds(ax, xs, ys, single) -> None:
    """'n=1' above each point or bar drawn from one seed: it has no error bar (no std), which
    must not read as a spread of 0."""
    for x, y in zip(np.asarray(xs)[single], np.asarray(ys, dtype=float)[single]):
        if y == y:
            ax.annotate("n=1", (x, y), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6)


def _plain(value: float) -> str:
    """A tick as a plain number: 50, 3200, 0.25 (not 2^6 or 10^2)."""
    return str(int(value)) if value >= 1 and value == int(value) else f"{value:g}"


class _PlainLogFormatter(ticker.LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers."""

    def __call__(self, x, pos=None):
        return _plain(x) if super().__call__(x, pos) else ""


def _plain_log_ticks(ax, xs=None) -> None:
    """Readable log axes: x ticks at the measured values `xs` (max_len 50, 200, 800, 3200), a
    log y axis in plain numbers (100, 1000; 0.1, 1)."""
    if xs is not None:
        ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(np.asarray(xs, float)))))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _plain(v)))
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False,
                                                        minor_thresholds=(2, 0.5)))


def _footer(fig, text: str) -> None:
    """A sentence under the figure (wrapped), e.g. the paper's claim checked on the numbers."""
    import textwrap

    fig.text(0.01, -0.02, "\n".join(textwrap.wrap(text, 130)), ha="left", va="top",
             fontsize=8)


# --- efficiency: memory and time against max_len / layers / heads ---------------------------

def scaling_figure(cells: pd.DataFrame, png, svg, *, x: str = "max_len",
                   title: str = "", loglog: bool = True) -> str:
    """Training memory and seconds per step against `x` (max_len, or an option such as
    num_layers parsed from the variant), one line per model; [recompute] series dashed; cells
    that ran out of memory or time marked 'x' at the top with the limit. Returns the sentence
    printed under the figure (the paper's memory claim checked on these cells; "" and none
    printed where it does not apply: x is not max_len, or no other model than RecGRELA)."""
    data = cells.copy()
    if x != "max_len":
        data[x] = data["variant"].map(lambda v: _option_value(v, x))
        data["series"] = data["model"].map(display_name) + np.where(
            data["policy"] == "recompute", " [recompute]", "")
    else:
        data["series"] = data["label"]
    batches = sorted(data["batch_size"].dropna().unique())
    if len(batches) > 1:                   # one line per batch size, told apart by its dashes
        data["series"] += ", batch " + data["batch_size"].map("{:.0f}".format)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    for ax, value, unit in ((axes[0], "memory_mb", "training memory (MB)"),
                            (axes[1], "seconds_per_step", "seconds per training step")):
        variant_index: dict[tuple, int] = {}
        stacked: dict = {}                 # x -> [(status and limit, colour), ...] of failed cells
        for series, part in data.groupby("series", sort=False):
            part = part.dropna(subset=[x]).sort_values(x)
            model, variant = part["model"].iat[0], part["variant"].iat[0]
            style = model_style(model, among=set(data["model"]))
            # a model's other option sets: same colour, hollow marker, dotted line
            k = 0
            if x == "max_len" and variant != "default":
                k = variant_index.setdefault(
                    (model, variant), 1 + sum(m == model for m, _ in variant_index))
            linestyle = ("--" if part["policy"].iat[0] == "recompute"
                         else VARIANT_LINESTYLES[k % len(VARIANT_LINESTYLES)])
            j = batches.index(part["batch_size"].iat[0]) if len(batches) > 1 else 0
            if j:
                linestyle = BATCH_LINESTYLES[(j - 1) % len(BATCH_LINESTYLES)]
            ok = part[part["status"] == "ok"]
            label = series
            if loglog and len(ok) >= 2:
                tail = ok.tail(TAIL)
                label += f" (slope {loglog_slope(tail[x], tail[value]):.2f})"
            ax.plot(ok[x], ok[value], marker=style["marker"], color=style["color"],
                    linestyle=linestyle, fillstyle="full" if k == 0 else "none", label=label)
            for row in part[part["status"] != "ok"].itertuples():
                stacked.setdefault(getattr(row, x), []).append(
                    (f"{row.status.upper()}\n{_limit(row.reason)}", style["color"]))
        for at, marks in stacked.items():
            # failed cells at one x: their crosses stacked above the axes, one label on top
            for j, (_, colour) in enumerate(marks):
                ax.plot([at], [1], marker="x", color=colour, ms=8, mew=2, clip_on=False,
                        transform=ax.get_xaxis_transform() + _points_up(fig, 9 * j))
            ax.annotate("\n".join(dict.fromkeys(text for text, _ in marks)), (at, 1),
                        xycoords=ax.get_xaxis_transform(), textcoords="offset points",
                        xytext=(0, 9 * len(marks) + 2), ha="center", fontsize=7)
        if loglog:
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _plain_log_ticks(ax, data[x].dropna())
        ax.set_xlabel({"max_len": "max_len (items per sequence)", "num_layers": "blocks",
                       "num_heads": "attention heads"}.get(x, x))
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    device = ", ".join(sorted(data["device"].dropna().unique()))
    batch = ", ".join(str(b) for b in sorted(data["batch_size"].dropna().unique()))
    fig.suptitle(f"{title} ({device}, batch {batch}; legend: log-log slope over the last "
                 f"{TAIL} finished points)" if loglog else f"{title} ({device}, batch {batch})",
                 fontsize=10)
    # the claim compares models along max_len: none under a layers / heads figure
    claim = memory_claim(cells) if x == "max_len" else ""
    if claim:
        _footer(fig, claim)
    save(fig, png, svg)
    return claim


def _points_up(fig, points: float):
    """A transform that moves a point `points` typographic points up."""
    return ScaledTranslation(0, points / 72, fig.dpi_scale_trans)


def _option_value(variant: str, option: str):
    """The value of `option` in a variant name ('num_layers=2+...' -> 2); None when absent."""
    for part in str(variant).split("+"):
        key, _, value = part.partition("=")
        if key == option:
            try:
                return float(value) if "." in value else int(value)
            except ValueError:
                return value
    return None


def _limit(reason) -> str:
    text = str(reason) if reason == reason else ""
    return text[text.find("(") + 1:text.rfind(")")] if "(" in text else text[:30]


def cost_accuracy_figure(main: pd.DataFrame, cells: pd.DataFrame, paper: pd.DataFrame,
                         png, svg, *, max_len: int, metric: str = "ndcg@10") -> None:
    """Fig. 3: test NDCG@10 (ours, mean over seeds) against training memory, bubble area =
    forward FLOPs per sequence, one panel per dataset and batch size (a row of panels per batch
    size of the profile cells); memory and FLOPs from the profile cells of the same model and
    variant at the same max_len (stored activations), accuracy from the table's rows at that
    max_len. The paper's RecGRELA point (12.7 GB, printed in its text) is drawn hollow on its
    own axis, since its memory is GPU-reserved at batch 2048."""
    cost = cells[(cells["status"] == "ok") & (cells["policy"] == "stored")
                 & (cells["max_len"] == max_len)]
    # one cell per (model, variant, batch): a cell listed by two studies is the same cell
    cost = cost.drop_duplicates(["model", "variant", "batch_size"])
    ours = main[main["metric"] == metric]
    if "max_len" in ours:                       # a main table at several max_len: this one
        ours = ours[ours["max_len"] == max_len]
    if "variant" not in ours:
        ours = ours.assign(variant="default")
    pairs = ours.merge(cost[["model", "variant", "batch_size", "memory_mb",
                             "flops_per_sequence", "device"]], on=["model", "variant"])
    datasets = list(dict.fromkeys(pairs["dataset"]))
    batches = sorted(pairs["batch_size"].unique())
    if not datasets:
        raise ValueError(f"Fig. 3: no model has both a {metric} result and a profile cell at "
                         f"max_len {max_len}; add {max_len} to a profile study's max_lens")
    fig, axes = plt.subplots(len(batches), len(datasets), squeeze=False, layout="constrained",
                             figsize=(5.5 * len(datasets), 4.4 * len(batches)))
    scale = 900 / max(pairs["flops_per_sequence"].max(), 1)
    for row_axes, batch in zip(axes, batches):
        for ax, dataset in zip(row_axes, datasets):
            here = pairs[(pairs["dataset"] == dataset) & (pairs["batch_size"] == batch)]
            single = _single_seed(here)
            for row, one in zip(here.itertuples(), single):
                style = model_style(row.model, among=set(pairs["model"]))
                ax.scatter(row.memory_mb, row.ours_mean, s=max(20, row.flops_per_sequence * scale),
                           color=style["color"], alpha=0.6, edgecolor="k", marker="o")
                ax.errorbar(row.memory_mb, row.ours_mean, yerr=float(row.ours_std),
                            color=style["color"], capsize=3)
                # one seed: no error bar, and the label says n=1
                ax.annotate(display_name(row.model) + ("" if row.variant == "default"
                                                       else f" ({row.variant})")
                            + (" (n=1)" if one else ""),
                            (row.memory_mb, row.ours_mean), fontsize=8, xytext=(6, 4),
                            textcoords="offset points")
            device = ", ".join(dict.fromkeys(here["device"].dropna()))
            ax.set_xlabel(f"training memory at max_len {max_len} (MB, {device})")
            ax.set_ylabel(f"test {display_name(metric)} (ours)")
            ax.set_title(f"{display_name(dataset)}, batch {batch}")
            ax.grid(alpha=0.3)
            printed = paper[(paper["block"] == "fig3_text") & (paper["dataset"] == dataset)]
            if len(printed):
                values = printed.set_index("metric")["value"]
                twin = ax.twiny()
                twin.scatter(values["gpu_memory_gb"], values[metric], s=120,
                             facecolor="none", edgecolor=model_style("recgrela")["color"], lw=2)
                twin.annotate("RecGRELA (paper)", (values["gpu_memory_gb"], values[metric]),
                              fontsize=8, xytext=(6, -10), textcoords="offset points")
                twin.set_xlabel("paper: GPU memory reserved, batch 2048 (GB)", fontsize=8)
    fig.suptitle(f"Fig. 3: {display_name(metric)} against training memory; bubble area = "
                 f"forward FLOPs per sequence", fontsize=10)
    _footer(fig, "The paper prints absolute numbers for RecGRELA only (12.7 GB, NDCG@10 "
            "0.1959 on ML-1M); its baselines' memories are given as ratios and are not drawn.")
    save(fig, png, svg)


# --- accuracy: ablation bars, sensitivity lines, accuracy against max_len, training curves --

def _variant_names(labels, variants, defaults: dict | None) -> list[str]:
    """A bar's name: the paper's label where it is a name ("w/o RoPE"; Table 3's "#Layers"
    numbers are not), else the variant; `default` spelled out with the model's value of the
    one option the others vary ("num_layers=4 (default)", from `defaults`, the model's
    Config)."""
    varied = {part.partition("=")[0] for v in variants if v != "default"
              for part in str(v).split("+")}
    option = next(iter(varied)) if len(varied) == 1 else None

    def is_name(label) -> bool:
        if not isinstance(label, str) or not label:
            return False
        try:
            float(label)
        except ValueError:
            return True
        return False

    def name(label, variant) -> str:
        if is_name(label):
            return label
        if variant == "default" and option in (defaults or {}):
            return f"{option}={defaults[option]} (default)"
        return str(variant)
    return [name(lab, var) for lab, var in zip(labels, variants)]


def bars_figure(group: pd.DataFrame, png, svg, *, title: str,
                metrics: tuple = ("ndcg@10", "mrr@10"), defaults: dict | None = None) -> None:
    """Fig. 4 / Fig. 5 / Table 3: one bar group per variant (the paper's name where it has one;
    `defaults`, the model's Config defaults, spell out the default variant), ours (mean ± std
    over seeds) beside the paper's (hatched, grey), one panel per metric."""
    data = group[group["metric"].isin(metrics)].copy()
    data["name"] = _variant_names(data["label"], data["variant"], defaults)
    names = list(dict.fromkeys(data["name"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6, 1.3 * len(names)) * len(metrics)
                                                       / 1.6, 4.2), squeeze=False,
                             layout="constrained")
    colour = model_style(data["model"].iat[0])["color"] if "model" in data else "C0"
    for ax, metric in zip(axes[0], metrics):
        part = data[data["metric"] == metric].set_index("name").reindex(names)
        xs = np.arange(len(names))
        ax.bar(xs - 0.2, part["ours_mean"], 0.4, yerr=part["ours_std"].astype(float), color=colour,
               capsize=3, label="ours (mean ± std over seeds; n=1: one seed, no bar)")
        _say_single_seeds(ax, xs - 0.2, part["ours_mean"] + part["ours_std"].fillna(0),
                          _single_seed(part))
        ax.bar(xs + 0.2, part["paper"].astype(float), 0.4, color=PAPER_COLOUR, hatch="//",
               label="paper (arXiv 2506.13315v2)")
        for x, (ours, theirs) in enumerate(zip(part["ours_mean"], part["paper"])):
            if not (ours == ours):
                ax.annotate("not run", (x - 0.2, 0), ha="center", fontsize=7, rotation=90)
            if not (theirs == theirs):
                ax.annotate("n/a", (x + 0.2, 0), ha="center", fontsize=7, va="bottom")
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"test {display_name(metric)}")
        ax.grid(axis="y", alpha=0.3)
    # below the panels: at the top it would sit over the title
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=2,
               fontsize=8)
    fig.suptitle(title, fontsize=10)
    save(fig, png, svg)


def sensitivity_figure(group: pd.DataFrame, defaults: dict, png, svg, *, title: str,
                       metrics: tuple = ("ndcg@10", "mrr@10")) -> None:
    """Fig. 8: one panel per swept factor (the group's sections), NDCG@10 and MRR@10 (mean ±
    std over seeds) against the factor's value; the paper prints no values for Fig. 8."""
    sections = [s for s in dict.fromkeys(group["section"]) if isinstance(s, str) and s]
    fig, axes = plt.subplots(1, len(sections), figsize=(4 * len(sections), 3.6), squeeze=False,
                             layout="constrained")
    for ax, section in zip(axes[0], sections):
        part = group[group["section"] == section].copy()
        if "max_len" in part and part["max_len"].notna().any() and section == "max_len":
            part["x"] = part["max_len"]
        else:
            part["x"] = [_option_value(v, section) if v != "default" else defaults.get(section)
                         for v in part["variant"]]
        for i, metric in enumerate(metrics):
            line = part[part["metric"] == metric].sort_values("x")
            ax.errorbar(line["x"], line["ours_mean"], yerr=line["ours_std"].astype(float),
                        marker="os"[i % 2], capsize=3, label=display_name(metric))
            _say_single_seeds(ax, line["x"], line["ours_mean"], _single_seed(line))
        ax.set_xlabel(section)
        ax.set_ylabel("test value (ours)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title + " (the paper's Fig. 8 prints no values to draw beside)", fontsize=10)
    save(fig, png, svg)


def accuracy_length_figure(group: pd.DataFrame, png, svg, *, metric: str = "ndcg@10",
                           title: str = "") -> None:
    """Beyond the paper: test accuracy against max_len for every model, one panel per
    dataset (the length_sweep group)."""
    data = group[group["metric"] == metric]
    datasets = list(dict.fromkeys(data["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False,
                             layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        for model, part in data[data["dataset"] == dataset].groupby("model", sort=False):
            part = part.sort_values("max_len")
            style = model_style(model, among=set(data["model"]))
            ax.errorbar(part["max_len"], part["ours_mean"], yerr=part["ours_std"].astype(float),
                        marker=style["marker"], color=style["color"], capsize=3,
                        label=display_name(model))
            _say_single_seeds(ax, part["max_len"], part["ours_mean"], _single_seed(part))
        ax.set_xscale("log", base=2)
        _plain_log_ticks(ax, data.loc[data["dataset"] == dataset, "max_len"])
        ax.set_xlabel("max_len (items per sequence)")
        ax.set_ylabel(f"test {display_name(metric)} (ours)")
        ax.set_title(display_name(dataset))
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(title, fontsize=10)
    save(fig, png, svg)


def training_curves_figure(histories: list[tuple[dict, pd.DataFrame]], png, svg, *,
                           metric: str = "valid_ndcg@10",
                           without_history: Sequence[dict] = ()) -> str:
    """Validation NDCG@10 per epoch of each run (one panel per dataset, one colour per model,
    one line per seed). Models that are not trained (NOT_TRAINED: the popularity baseline,
    counted once) have no curve and are left out. `without_history`: runs with no
    history.csv (optional in the results contract, e.g. a baseline's rule that writes none),
    named in a note under the figure; the note is returned ("" when none)."""
    histories = [(run, h) for run, h in histories if run["model"] not in NOT_TRAINED]
    datasets = list(dict.fromkeys(run["dataset"] for run, _ in histories))
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5.5 * max(1, len(datasets)), 4),
                             squeeze=False,
                             layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        seen = set()
        for run, history in histories:
            if run["dataset"] != dataset or metric not in history:
                continue
            style = model_style(run["model"], among={r["model"] for r, _ in histories})
            label = None if run["model"] in seen else display_name(run["model"])
            seen.add(run["model"])
            ax.plot(history["epoch"] + 1, history[metric], color=style["color"],
                    marker=style["marker"], ms=3, alpha=0.8, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))    # epochs are whole
        ax.set_ylabel(metric.replace("valid_", "validation ").replace("ndcg", "NDCG"))
        ax.set_title(display_name(dataset))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Training curves: validation metric per epoch (each line one seed)",
                 fontsize=10)
    missing: dict[str, list] = {}
    for run in without_history:
        if run["model"] not in NOT_TRAINED:
            missing.setdefault(display_name(run["model"]), []).append(run)
    note = ("Not drawn, no history.csv beside metrics.json: " + "; ".join(
        f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''})"
        for name, runs in missing.items()) + ".") if missing else ""
    if note:
        _footer(fig, note)
    save(fig, png, svg)
    return note


# --- fidelity: ours beside the authors' code ----------------------------------------------

def fidelity_figure(table: pd.DataFrame, png, svg, *, tolerance: float = 0.10) -> list[str]:
    """reports/tables/fidelity.csv drawn: per model, our memory and step time as a ratio to the
    authors' code at each max_len (the band = within `tolerance`), and test NDCG@10 of both
    (mean ± std over seeds) where both were trained. Returns the panels drawn."""
    # cost rows: both sides measured at a max_len (a ratio, or a side that did not finish)
    cost = table.iloc[:0]
    if "status_ours" in table:
        cost = table[table["status_ours"].notna() & table["status_authors"].notna()]
        cost = cost.astype({"max_len": int})
    accuracy = table[table["metric"] == "ndcg@10"] if "metric" in table else table.iloc[:0]
    panels = [p for p, part in [("memory", cost), ("time", cost), ("accuracy", accuracy)]
              if len(part)]
    if not panels:
        raise ValueError("fidelity_figure: the table has neither cost nor accuracy rows")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False,
                             layout="constrained")
    for ax, panel in zip(axes[0], panels):
        if panel == "accuracy":
            _fidelity_accuracy(ax, accuracy)
            continue
        ratio = (cost["memory_ratio"] + 1 if panel == "memory"
                 else cost["seconds_per_step_ours"] / cost["seconds_per_step_authors"])
        models = [m for m in MODEL_ORDER if m in set(cost["model"])]
        lengths = sorted(cost["max_len"].unique())
        width = 0.8 / len(lengths)
        for i, L in enumerate(lengths):
            part = cost.assign(ratio=ratio)[cost["max_len"] == L].set_index("model")
            part = part.reindex(models)
            xs = np.arange(len(models)) + (i - (len(lengths) - 1) / 2) * width
            ax.bar(xs, part["ratio"], width, label=f"max_len {L}",
                   color=sns.color_palette("Blues", len(lengths) + 1)[i + 1])
            for x, ours, theirs in zip(xs, part["status_ours"], part["status_authors"]):
                measured = isinstance(ours, str) and isinstance(theirs, str)
                if measured and (ours, theirs) != ("ok", "ok"):   # say which side stopped
                    ax.annotate(f"ours {ours.upper()}, authors' {theirs.upper()}", (x, 0.02),
                                rotation=90, ha="center", va="bottom", fontsize=6)
        ax.axhline(1, color="0.2", lw=0.8)
        if panel == "memory":
            ax.axhspan(1 - tolerance, 1 + tolerance, color="0.85", zorder=0,
                       label=f"within {tolerance:.0%}")
        ax.set_xticks(np.arange(len(models)), [display_name(m) for m in models], rotation=30,
                      ha="right", fontsize=8)
        ax.set_title(f"{'training memory' if panel == 'memory' else 'seconds per step'}: "
                     "ours / authors'", fontsize=9)
        ax.set_ylabel("ratio (1 = the same)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4)
    fig.suptitle("Ours beside the authors' code (TBI805/RecGRELA)", fontsize=10)
    save(fig, png, svg)
    return panels


def _fidelity_accuracy(ax, accuracy: pd.DataFrame) -> None:
    models = [m for m in MODEL_ORDER if m in set(accuracy["model"])]
    part = accuracy.groupby("model").first().reindex(models)
    xs = np.arange(len(models))
    for offset, side, label, hatch in [(-0.2, "ours", "ours", None),
                                       (0.2, "authors", "authors' code", "//")]:
        colours = [model_style(m, among=models)["color"] for m in models]
        ax.bar(xs + offset, part[f"{side}_mean"], 0.4, yerr=part[f"{side}_std"].astype(float),
               color=colours, hatch=hatch, alpha=1 if hatch is None else 0.55, capsize=3,
               label=label)
        _say_single_seeds(ax, xs + offset, part[f"{side}_mean"] + part[f"{side}_std"].fillna(0),
                          (part[f"{side}_n"] == 1).to_numpy())
    top = (part[["ours_mean", "authors_mean"]].to_numpy(float)
           + part[["ours_std", "authors_std"]].fillna(0).to_numpy(float)).max(axis=1)
    for x, y, verdict, p in zip(xs, top, part.get("verdict", []), part.get("p_value", [])):
        if isinstance(verdict, str):       # the paired test over users, above the pair
            ax.annotate(f"{verdict} (p={p:.2g})", (x, y), xytext=(0, 10),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.margins(y=0.2)
    dataset = ", ".join(display_name(d) for d in accuracy["dataset"].unique())
    ax.set_xticks(xs, [display_name(m) for m in models], rotation=30, ha="right", fontsize=8)
    ax.set_title(f"test NDCG@10, {dataset} (mean ± std over seeds)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
