"""Rule training_curves: a group's runs (metrics.json + history.csv) ->
reports/figures/curves_{group}.{png,svg} (validation NDCG@10 per epoch, every seed)."""
import pandas as pd

from recbench.reporting.figures import training_curves_figure
from recbench.results import read_run
from recbench.rule_script import run_rule


def main(metrics: list[str], histories: list[str], out) -> None:
    runs = [(read_run(m), pd.read_csv(h)) for m, h in zip(metrics, histories)]
    training_curves_figure(runs, out.png, out.svg)


run_rule(snakemake, lambda: main(snakemake.input.metrics, snakemake.input.history,
                                 snakemake.output))
