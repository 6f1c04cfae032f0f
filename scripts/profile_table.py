"""Rule profile_table: a study's profile cells -> reports/tables/profile_{study}.* (memory,
time per step, FLOPs and the fitted log-log slopes; OOM and timeout cells with their limits)."""
from recbench.cost.cells import read_cells
from recbench.names import declare
from recbench.reporting.cost_tables import cost_tables
from recbench.reporting.render import write_table
from recbench.rule_script import run_rule


def main(cells: list[str], study: str, description: str, out, category: str = "") -> None:
    write_table(cost_tables(read_cells(cells), study, description), out.md, out.csv, out.tex,
                html_path=out.html, title=f"{category}: cost study {study}")


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.cells, snakemake.wildcards.study,
                                 snakemake.params.description, snakemake.output,
                                 snakemake.params.category))
