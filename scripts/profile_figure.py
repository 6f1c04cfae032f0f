"""Rule profile_figure: a study's profile cells -> reports/figures/profile_{study}.{png,svg}:
memory and time per training step against max_len (log-log, fitted slopes in the legend) or
against the option the study varies (layers, heads), the paper's memory claim checked below."""
from recbench.cost.cells import read_cells
from recbench.names import declare
from recbench.reporting.figures import scaling_figure
from recbench.rule_script import run_rule


def main(cells: list[str], axis: str, description: str, out) -> None:
    frame = read_cells(cells)
    span = frame["max_len"].max() / frame["max_len"].min()
    claim = scaling_figure(frame, out.png, out.svg, x=axis, title=description,
                           loglog=axis == "max_len" and span >= 8)
    print(claim)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.cells, snakemake.params.axis,
                                 snakemake.params.description, snakemake.output))
