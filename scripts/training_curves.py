"""Rule training_curves: a group's runs (metrics.json, and history.csv beside it where the
run's rule wrote one) -> reports/figures/curves_{group}.{png,svg} (validation NDCG@10 per
epoch, every seed). history.csv is optional in the results contract: a run without one (a
baseline's rule that writes none) is left out and named in a note under the figure."""
import sys
from pathlib import Path

import pandas as pd

from recbench.names import declare
from recbench.reporting.figures import training_curves_figure
from recbench.results import read_run
from recbench.rule_script import run_rule


def main(metrics: list[str], out) -> None:
    drawn, without = [], []
    for path in metrics:
        run, history = read_run(path), Path(path).with_name("history.csv")
        if history.exists():
            drawn.append((run, pd.read_csv(history)))
        else:
            without.append(run)
    note = training_curves_figure(drawn, out.png, out.svg, without_history=without)
    if note:
        print(f"training_curves: {note}", file=sys.stderr, flush=True)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.metrics, snakemake.output))
