"""Rule group_figure: a group's table CSV -> reports/figures/group_{group}.{png,svg}.

`bars` (Fig. 4, Fig. 5, Table 3): ours beside the paper's per variant; `sensitivity` (Fig. 8):
one panel per sweep; `accuracy_length` (beyond the paper): NDCG@10 against max_len per model.
"""
import pandas as pd

from recbench.names import declare
from recbench.reporting.figures import accuracy_length_figure, bars_figure, sensitivity_figure
from recbench.rule_script import run_rule


def main(table: str, kind: str, description: str, defaults: dict, out) -> None:
    frame = pd.read_csv(table)
    if kind == "bars":     # the default variant named with the model's own value
        bars_figure(frame, out.png, out.svg, title=description,
                    defaults=defaults.get(frame["model"].iat[0], {}))
    elif kind == "sensitivity":
        sensitivity_figure(frame, defaults.get(frame["model"].iat[0], {}), out.png, out.svg,
                           title=description)
    elif kind == "accuracy_length":
        accuracy_length_figure(frame, out.png, out.svg, title=description)
    else:
        raise ValueError(f"group_figure: unknown kind {kind!r}")


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.table, snakemake.params.kind,
                                 snakemake.params.description, snakemake.params.defaults,
                                 snakemake.output))
