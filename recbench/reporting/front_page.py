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
    """The front page as reStructuredText. `layout`: recbench/workflow.py front_page_layout;
    `host`: the machine that writes the page (machine())."""
    categories = list(layout["categories"])
    lines = [f"recgrela-bench: {PAPER} and its baselines",
             "=" * 72, "",
             "The paper's tables and figures, reproduced by this workflow from its own runs. The "
             "menu has one entry per table or figure of the paper: "
             + ", ".join(_link(c, categories) for c in categories) + ". "
             "Each table is shown as published (bold = best, underlined = second best of ours, "
             "the paper's row in grey, * / † = significantly better / worse, the notes under "
             "it); the CSV beside it holds the same numbers in long form, for download. "
             "Markdown, LaTeX and CSV of every table are under ``reports/tables/``, the figures "
             "under ``reports/figures/``.", ""]
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
    lines = ["What ran", "-" * 8, ""]
    configs = layout.get("configfiles") or []
    if configs:
        lines += [f"Config files: {', '.join(f'``{_text(c)}``' for c in configs)} (a file "
                  "given with ``--configfile`` is merged over ``config/config.yaml``).", ""]
    lines += [f"* **{len(runs)} runs** ({', '.join(f'{n} {s}' for s, n in sorted(status.items()))})"
              f" of {len(models)} models: {_listed(display_name(m) for m in models)}; "
              f"datasets {_listed(dict.fromkeys(display_name(r['dataset']) for r in runs))}; "
              f"max_len {_listed(sorted({r['max_len'] for r in runs}))}; "
              f"seeds {_listed(sorted({r['seed'] for r in runs}))}; "
              f"up to {_listed(epochs)} epochs, early-stopping patience {_listed(patience)}."]
    if cells:
        cell_status = Counter(c.get("status", "?") for c in cells)
        lines.append(f"* **{len(cells)} cost cells** (memory and time of one training step, "
                     f"{', '.join(f'{n} {s}' for s, n in sorted(cell_status.items()))}).")
    if layout.get("tuning"):
        lines.append(f"* **Hyperparameter search** ({_link('Hyperparameter search', categories)}"
                     f"): {_listed(layout['tuning'])}.")
    lines += ["", "Experiment groups and cost studies, each under the paper's table or figure "
              "it reproduces:", "", ".. list-table::", "   :header-rows: 1", "",
              "   * - in the report", "     - group or study", "     - what it reproduces",
              "     - size"]
    for g in layout["groups"]:
        lines += [f"   * - {_link(g['category'], categories)}", f"     - ``{_text(g['name'])}``",
                  f"     - {_text(g['description']) or '-'}", f"     - {g['runs']} runs"]
    for s in layout["studies"]:
        lines += [f"   * - {_link(s['category'], categories)}",
                  f"     - cost study ``{_text(s['name'])}``",
                  f"     - {_text(s['description']) or 'memory and time per training step'}",
                  f"     - {s['cells']} cells"]
    return lines + [""]


def _data(stats, layout) -> list[str]:
    lines = ["Data", "-" * 4, "",
             "Each dataset after RecBole's filtering (leave-one-out by time: the last item of a "
             "user is the test target, the one before the validation target); "
             f"{_link('Table 1', layout['categories'])} sets them beside the paper's.", "",
             ".. list-table::", "   :header-rows: 1", "",
             "   * - dataset", "     - source", "     - users", "     - items",
             "     - interactions", "     - avg. length", "     - sparsity"]
    for dataset, s in stats.items():
        entry = layout["datasets"].get(dataset, {})
        source = ("generated (seeded synthetic data, offline)" if entry.get("format") ==
                  "synthetic" else entry.get("url") or entry.get("file") or "data mirror")
        lines += [f"   * - {_text(display_name(dataset))}", f"     - {_text(source)}",
                  f"     - {s.get('n_users', 0):,}", f"     - {s.get('n_items', 0):,}",
                  f"     - {s.get('n_interactions', 0):,}",
                  f"     - {s.get('avg_seq_len', float('nan')):.1f}",
                  f"     - {s.get('sparsity', float('nan')):.2%}"]
    return lines + [""]


def _hardware(runs, cells, host) -> list[str]:
    devices = Counter(str(run.get("device")) for run in runs if run.get("device"))
    lines = ["Hardware and software", "-" * 21, ""]
    if devices:
        lines.append("* Runs trained on: " + "; ".join(f"``{_text(d)}`` ({n} runs)"
                                                        for d, n in devices.most_common()) + ".")
    threads = sorted({run["threads"] for run in runs if run.get("threads")})
    if threads:
        lines.append(f"* CPU threads per run: {_listed(threads)}.")
    cell_devices = sorted({str(c.get("device")) for c in cells if c.get("device")})
    if cell_devices:
        lines.append(f"* Cost cells measured on: {_listed(cell_devices)}.")
    versions = {k: sorted({str(run[k]) for run in runs if run.get(k)})
                for k in ("torch", "python", "git_commit")}
    if any(versions.values()):
        lines.append(f"* PyTorch {_listed(versions['torch'])}, Python "
                     f"{_listed(versions['python'])}; code commit "
                     f"{_listed(c[:10] for c in versions['git_commit'])} (from each run's "
                     "metrics.json).")
    if host:
        lines.append(f"* This page was written on: {_text(host)}.")
    return lines + [""]
