"""Rule fidelity_table: ours beside the authors' code (reference-<model>) -> reports/tables/
fidelity.*: the cost of the profile studies that measure both, the test accuracy of the groups
that train both, each with its paired comparison (recbench/reporting/fidelity.py)."""
from recbench.cost.cells import read_cells
from recbench.names import declare
from recbench.reporting.fidelity import accuracy_table, cost_table
from recbench.reporting.render import write_table
from recbench.reporting.tables import run_key
from recbench.results import read_run, read_test_ranks
from recbench.rule_script import run_rule


def main(studies: dict, metrics_files: list[str], out) -> None:
    tables = [cost_table(read_cells(cells), study) for study, cells in studies.items()]
    runs = [read_run(f) for f in metrics_files]
    if runs:
        ranks = {run_key(run): read_test_ranks(f, run)
                 for run, f in zip(runs, metrics_files) if run["status"] == "ok"}
        tables.append(accuracy_table(runs, ranks))
    write_table(tables, out.md, out.csv, out.tex, html_path=out.html)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.params.studies, snakemake.input.metrics,
                                 snakemake.output))
