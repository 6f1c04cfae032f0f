"""Rule profile_table: a study's profile cells -> reports/tables/profile_{study}.* (memory,
time per step, FLOPs and the fitted log-log slopes; OOM and timeout cells with their limits)."""
from recbench.cost.cells import cost_tables, read_cells
from recbench.rule_script import run_rule
from recbench.reporting.tables import write_table


def main(cells: list[str], study: str, description: str, out) -> None:
    write_table(cost_tables(read_cells(cells), study, description), out.md, out.csv, out.tex)


run_rule(snakemake, lambda: main(snakemake.input.cells, snakemake.wildcards.study,
                                 snakemake.params.description, snakemake.output))
