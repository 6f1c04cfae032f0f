"""Rule dataset_table: each dataset's stats.json -> Table 1 (reports/tables/table1_datasets.*).

Our statistics after filtering beside the paper's Table 1 (reports/paper_numbers.yaml).
"""
import json
from pathlib import Path

from recbench.reporting.paper_numbers import paper_numbers
from recbench.reporting.paper_tables import stats_table
from recbench.reporting.render import write_table
from recbench.rule_script import run_rule


def main(stats_files: list[str], paper_yaml: str, out) -> None:
    stats = {Path(f).parent.name: json.loads(Path(f).read_text()) for f in stats_files}
    write_table(stats_table(stats, paper_numbers(paper_yaml)), out.md, out.csv, out.tex,
                html_path=out.html)


run_rule(snakemake, lambda: main(snakemake.input.stats, snakemake.input.paper, snakemake.output))
