"""Rule runs_table: every run's metrics.json -> reports/tables/runs.* (one row per run).

Status, test HR/NDCG/MRR@5,10, the paper's and the reference log's value for the same
setting, epochs, time, memory and device; each run's identity is read from its metrics.json,
checked against the results contract (recbench/results.py) whatever rule wrote it.
"""
from recbench.names import declare
from recbench.reporting.paper_numbers import paper_numbers
from recbench.reporting.paper_tables import runs_table
from recbench.reporting.render import write_table
from recbench.results import read_run
from recbench.rule_script import run_rule


def main(metrics_files: list[str], paper_yaml: str, out) -> None:
    runs = [read_run(f) for f in metrics_files]
    write_table(runs_table(runs, paper_numbers(paper_yaml)), out.md, out.csv, out.tex,
                html_path=out.html)


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.metrics, snakemake.input.paper,
                                 snakemake.output))
