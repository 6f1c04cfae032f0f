"""Rule front_page: every run's metrics.json, each dataset's stats.json and the cost cells ->
reports/front_page.rst, the HTML report's front page (Snakefile `report:`): what ran, on what
data and hardware, with a link to each of the paper's tables and figures in the report."""
import json
from pathlib import Path

from recbench.io import write_text_atomic
from recbench.names import declare
from recbench.reporting.front_page import front_page, machine
from recbench.results import read_run
from recbench.rule_script import run_rule


def main(metrics: list[str], stats: list[str], cells: list[str], layout: dict, out: str) -> None:
    runs = [read_run(f) for f in metrics]
    data = {Path(f).parent.name: json.loads(Path(f).read_text()) for f in stats}
    measured = [json.loads(Path(f).read_text()) for f in cells]
    write_text_atomic(out, front_page(runs, data, measured, layout, host=machine()))


declare(snakemake.params.models)   # display names, the figures' models (recbench/names.py)
run_rule(snakemake, lambda: main(snakemake.input.metrics, snakemake.input.stats,
                                 snakemake.input.cells, snakemake.params.layout,
                                 snakemake.output[0]))
