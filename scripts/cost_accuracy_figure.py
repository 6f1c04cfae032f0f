"""Rule cost_accuracy_figure: a Table 2 group's CSV and the profile cells ->
reports/figures/fig3_{group}.{png,svg} (Fig. 3: NDCG@10 against training memory, bubble =
FLOPs)."""
import pandas as pd

from recbench.cost.cells import read_cells
from recbench.names import declare
from recbench.reporting.figures import cost_accuracy_figure
from recbench.reporting.paper_numbers import paper_numbers
from recbench.rule_script import run_rule


def main(table: str, cells: list[str], paper: str, max_len: int, out) -> None:
    main_rows = pd.read_csv(table)
    main_rows = main_rows[main_rows["model"] != "improv"]
    cost_accuracy_figure(main_rows, read_cells(cells), paper_numbers(paper), out.png, out.svg,
                         max_len=max_len)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.table, snakemake.input.cells,
                                 snakemake.input.paper, snakemake.params.max_len,
                                 snakemake.output))
