"""Rule fidelity_figure: reports/tables/fidelity.csv -> reports/figures/fidelity.{png,svg}:
memory and step time of ours as a ratio to the authors' code, and test NDCG@10 of both."""
import pandas as pd

from recbench.names import declare
from recbench.reporting.figures import fidelity_figure
from recbench.rule_script import run_rule

declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: fidelity_figure(pd.read_csv(snakemake.input.table),
                                            snakemake.output.png, snakemake.output.svg))
