"""Tables for reports/: what we measured, beside the paper's numbers where they are known.

Paper numbers come from one file, reports/paper_numbers.yaml, which a user holding the PDF can
fill in; a value that is unknown (null) renders as "n/a (not available)". Numbers are never
invented: the only RecGRELA numbers known are the reference training log's (ML-1M, L=200), shown
in their own column, labelled as such.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

NOT_AVAILABLE = "n/a (not available)"

STAT_COLUMNS = [  # (stats.json key, column title, markdown format)
    ("n_users", "users", "{:,.0f}"),
    ("n_items", "items", "{:,.0f}"),
    ("n_interactions", "interactions", "{:,.0f}"),
    ("avg_seq_len", "avg. seq. len", "{:.2f}"),
    ("sparsity", "sparsity", "{:.2%}"),
]
RESULT_METRICS = ["hit@5", "hit@10", "ndcg@5", "ndcg@10", "mrr@5", "mrr@10"]


def dataset_stats_table(stats: dict[str, dict], paper: dict[str, dict]) -> pd.DataFrame:
    """One row per dataset: each statistic measured here, then the paper's (None if unknown).

    stats: {dataset: stats.json}; paper: reports/paper_numbers.yaml `datasets:` section.
    """
    rows = []
    for name, ours in stats.items():
        theirs = paper.get(name) or {}
        row = {"dataset": name}
        for key, title, _ in STAT_COLUMNS:
            row[title] = ours[key]
            row[f"paper {title}"] = theirs.get(key)
        row["paper source"] = theirs.get("source")
        rows.append(row)
    return pd.DataFrame(rows)


def results_table(metrics_files: list[str | Path], paper: dict) -> pd.DataFrame:
    """One row per run (results/{dataset}/{model}/L{max_len}/seed{seed}/metrics.json): test
    metrics, then the paper's test NDCG@10 / HR@10 and the reference log's, where known."""
    rows = []
    for path in metrics_files:
        run = json.loads(Path(path).read_text())
        dataset, model, max_len, seed = Path(path).parts[-5:-1]
        row = {"dataset": dataset, "model": model, "max_len": int(max_len[1:]),
               "seed": int(seed[4:])}
        row |= {m: run["test"][m] for m in RESULT_METRICS if m in run["test"]}
        theirs = ((paper.get("results") or {}).get(dataset) or {}).get(model) or {}
        logged = ((paper.get("reference_log") or {}).get(dataset) or {}).get(model) or {}
        same_setting = logged.get("max_len") == row["max_len"]
        for m in ("ndcg@10", "hit@10"):
            row[f"paper {m}"] = theirs.get(m)
            row[f"reference log {m}"] = (logged.get("test") or {}).get(m) if same_setting else None
        row |= {"mode": run["config"]["train"]["mode"], "best epoch": run["best_epoch"],
                "epochs": run["epochs_run"],
                "s/epoch": run["seconds_per_epoch"], "peak MB": run["peak_memory_mb"],
                "device": run["device"]}
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["dataset", "max_len", "model", "seed"])
    return table.astype({"best epoch": "Int64"})   # None (Popularity: no epochs) stays missing


def render_markdown(table: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """The table as Markdown; a missing paper or reference-log value reads 'n/a (not
    available)', any other missing value '-'; floats 4 decimals unless `formats` says."""
    formats = formats or {}
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = []
        for col in cols:
            v = row[col]
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                cells.append(NOT_AVAILABLE if col.startswith(("paper", "reference log")) else "-")
            elif col in formats:
                cells.append(formats[col].format(v))
            elif isinstance(v, float):
                cells.append(f"{v:.4f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stats_formats() -> dict[str, str]:
    formats = {}
    for _, title, spec in STAT_COLUMNS:
        formats[title] = formats[f"paper {title}"] = spec
    return formats


def write_table(table: pd.DataFrame, md_path: str | Path, csv_path: str | Path, title: str,
                note: str = "", formats: dict[str, str] | None = None) -> None:
    """Markdown (title, note, table) and CSV, each written to a temporary name, then renamed."""
    from recbench.io import write_text_atomic

    markdown = f"# {title}\n\n" + (f"{note}\n\n" if note else "") + render_markdown(table, formats)
    write_text_atomic(md_path, markdown)
    write_text_atomic(csv_path, table.to_csv(index=False))
