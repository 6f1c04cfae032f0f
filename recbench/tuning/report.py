"""The tuning table and each study's plots (rule tuning_table, rule tune)."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import optuna

from recbench.io import atomic_path
from recbench.tuning.studies import OBJECTIVE, Study
from recbench.tuning.worker import open_study


def write_tuning_table(bests: list[dict], md: str | Path, csv: str | Path, tex: str | Path,
                       html: str | Path | None = None) -> None:
    """The tuning table: one row per study (pandas: Markdown, CSV, LaTeX, and the HTML page of
    the report)."""
    import pandas as pd

    rows = [{"dataset": b["dataset"], "model": b["model"],
             f"best valid {OBJECTIVE}": round(b["best_value"], 4), "best trial": b["best_trial"],
             "complete": b["complete"], "pruned": b["pruned"], "failed": b["failed"],
             "budget": b["budget"], "wall time (s)": round(b["wall_seconds"], 1),
             "best options": ", ".join(f"{k}={_short(v)}" for k, v in b["params"].items())}
            for b in bests]
    frame = pd.DataFrame(rows)
    note = (f"\nEqual budget: {bests[0]['budget'] if bests else 0} trials (complete + pruned) "
            f"per model; TPE sampler, median pruning per epoch; objective validation "
            f"{OBJECTIVE}. Runs of variant `tuned` train with the best options; `default` is "
            "the reference config.\n")
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(frame.to_markdown(index=False) + "\n" + note)
    with atomic_path(tex) as tmp:
        tmp.write_text(frame.to_latex(index=False, escape=True))
    if html is not None:
        import html as escape

        with atomic_path(html) as tmp:
            tmp.write_text(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><style>body {font-family: "
                "sans-serif; font-size: 13px} table {border-collapse: collapse} th, td {padding: "
                "3px 8px; border-bottom: 1px solid #ccc}</style></head><body>\n"
                "<h1 style=\"font-size: 17px\">Hyperparameter search</h1>\n"
                + frame.to_html(index=False, escape=True, border=0)
                + f"\n<p>{escape.escape(note.strip())}</p>\n</body></html>\n")


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def plot_study(study: Study, history_png: str | Path, importances_png: str | Path) -> None:
    """Optuna's optimization history and parameter importances (matplotlib) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    found = open_study(study)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # PED-ANOVA: Optuna's own evaluator (the default fANOVA needs scikit-learn)
    importances = functools.partial(plot_param_importances,
                                    evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    history = "history of complete trials"
    for plot, path, title in ((plot_optimization_history, history_png, history),
                              (importances, importances_png, "parameter importances")):
        try:
            ax = plot(found)
            fig = ax.figure
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few complete trials
            fig, ax = plt.subplots()
            ax.text(0.5, 0.5, f"no {title}:\n{err}", ha="center", va="center", wrap=True)
            ax.set_axis_off()
        if plot is plot_optimization_history:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        fig.set_size_inches(8, 4.5)
        for loc in ("left", "right"):                    # Optuna's own title, replaced
            ax.set_title("", loc=loc)
        ax.set_title(f"{study.name}: {title} (valid {OBJECTIVE}, budget {study.trials} trials)",
                     fontsize=11)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
