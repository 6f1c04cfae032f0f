"""The HTML report's front page (Snakefile `report:`): what ran, on what data and hardware,
with a link to each of the report's categories (the paper's tables and figures), as
reStructuredText that `snakemake --report` renders beside the rule graph.

Reads the runs' metrics.json, the datasets' stats.json and the cost cells' JSON (as dicts),
and the layout the workflow gives (recbench/workflow.py `front_page_layout`); never a model.
"""
from __future__ import annotations

import os
import platform
import re
from collections import Counter
from collections.abc import Mapping, Sequence

from recbench.names import display_name

PAPER = "RecGRELA (arXiv 2506.13315v2)"


def _text(value) -> str:
    """Plain text safe in reStructuredText and in Snakemake's Jinja pass over the page."""
    text = re.sub(r"([\\`*_|])", r"\\\1", " ".join(str(value).split()))
    return re.sub(r"\{([{%#])", r"{ \1", text)


def _literal(value) -> str:
    """Text as an inline literal (``text``): nothing to escape but backquotes and Jinja."""
    text = " ".join(str(value).split()).replace("`", "'")
    return "``" + re.sub(r"\{([{%#])", r"{ \1", text) + "``"


def _link(category: str, categories: Sequence[str]) -> str:
    """A link to a category of the report (Snakemake defines a target per category)."""
    return f"`{category}`_" if category in categories else _text(category)


def _listed(values) -> str:
    return ", ".join(_text(v) for v in values) or "none"


def machine() -> str:
    """The machine that writes the page: OS, CPU model and cores."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} logical cores"


def front_page(runs: Sequence[dict], stats: Mapping[str, dict], cells: Sequence[dict],
               layout: Mapping, host: str = "") -> str:
    """The front page as reStructuredText, short enough to fit beside the rule graph.
    `layout`: recbench/workflow.py front_page_layout; `host`: the machine that writes the page
    (machine())."""
    categories = list(layout["categories"])
    title = f"{PAPER}, reproduced"
    lines = [title, "=" * len(title), "",
             "The menu has one entry per table or figure of the paper: "
             + ", ".join(_link(c, categories) for c in categories) + ". A table is shown as "
             "published (bold best, underlined second best of ours, the paper's row in grey, "
             "* / † significantly better / worse, notes under it) beside its CSV to download; "
             "all are also under ``reports/tables/`` and ``reports/figures/``.", ""]
    lines += _what_ran(runs, cells, layout, categories)
    lines += _data(stats, layout)
    lines += _hardware(runs, cells, host)
    return "\n".join(lines) + "\n"


def _what_ran(runs, cells, layout, categories) -> list[str]:
    status = Counter(run.get("status", "?") for run in runs)
    models = list(dict.fromkeys(run["model"] for run in runs))
    train = [(run.get("config") or {}).get("train") or {} for run in runs]
    epochs = sorted({t["epochs"] for t in train if "epochs" in t})
    patience = sorted({t["stopping_step"] for t in train if "stopping_step" in t})
    configs = layout.get("configfiles") or []
    lines = ["**What ran.** "
             + (f"Config {' over '.join(_literal(c) for c in configs)}." if configs
                else ""), ""]
    lines += [f"* {len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(status.items()))})"
              f" of {len(models)} models ({_listed(display_name(m) for m in models)}); "
              f"max_len {_listed(sorted({r['max_len'] for r in runs}))}; "
              f"seeds {_listed(sorted({r['seed'] for r in runs}))}; "
              f"up to {_listed(epochs)} epochs, early-stopping patience {_listed(patience)}."]
    where: dict[str, list[str]] = {}
    for g in layout["groups"]:
        where.setdefault(g["category"], []).append(f"{_literal(g['name'])} ({g['runs']} runs)")
    for s in layout["studies"]:
        where.setdefault(s["category"], []).append(
            f"cost study {_literal(s['name'])} ({s['cells']} cells)")
    if where:
        lines.append("* Groups: " + "; ".join(
            f"{_link(c, categories)}: {', '.join(where[c])}"
            for c in sorted(where, key=lambda c: categories.index(c) if c in categories
                            else len(categories))) + ".")
    if cells:
        cell_status = Counter(c.get("status", "?") for c in cells)
        lines.append(f"* {len(cells)} cost cells (memory and time of one training step: "
                     f"{', '.join(f'{n} {s}' for s, n in sorted(cell_status.items()))}).")
    if layout.get("tuning"):
        lines.append(f"* {_link('Hyperparameter search', categories)}: "
                     f"{_listed(layout['tuning'])}.")
    return lines + [""]


def _data(stats, layout) -> list[str]:
    lines = ["**Data** (after RecBole's filtering; leave-one-out by time; "
             f"{_link('Table 1', layout['categories'])} sets them beside the paper's).", ""]
    for dataset, s in stats.items():
        entry = layout["datasets"].get(dataset, {})
        source = ("generated offline (seeded synthetic data)" if entry.get("format") ==
                  "synthetic" else entry.get("url") or entry.get("file") or "data mirror")
        lines.append(f"* {_text(display_name(dataset))}: {_text(source)}; "
                     f"{s.get('n_users', 0):,} users, {s.get('n_items', 0):,} items, "
                     f"{s.get('n_interactions', 0):,} interactions, average length "
                     f"{s.get('avg_seq_len', float('nan')):.1f}, sparsity "
                     f"{s.get('sparsity', float('nan')):.2%}.")
    return lines + [""]


def _hardware(runs, cells, host) -> list[str]:
    devices = Counter(str(run.get("device")) for run in runs if run.get("device"))
    lines = ["**Hardware and software.**", ""]
    threads = sorted({run["threads"] for run in runs if run.get("threads")})
    cell_devices = sorted({str(c.get("device")) for c in cells if c.get("device")})
    if devices:
        lines.append("* Runs trained on " + "; ".join(
            f"{_literal(d)} ({n} runs)" for d, n in devices.most_common())
            + (f", {_listed(threads)} CPU thread{'' if threads == [1] else 's'} each"
               if threads else "")
            + (f"; cost cells measured on {_listed(cell_devices)}" if cell_devices else "")
            + ".")
    elif cell_devices:
        lines.append(f"* Cost cells measured on {_listed(cell_devices)}.")
    versions = {k: sorted({str(run[k]) for run in runs if run.get(k)})
                for k in ("torch", "python", "git_commit")}
    if any(versions.values()):
        lines.append(f"* PyTorch {_listed(versions['torch'])}, Python "
                     f"{_listed(versions['python'])}, code commit "
                     f"{_listed(c[:10] for c in versions['git_commit'])} (each run's "
                     "metrics.json).")
    if host:
        lines.append(f"* This page written on {_text(host)}.")
    return lines + [""]
