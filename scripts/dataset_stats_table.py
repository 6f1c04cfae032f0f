"""Rule dataset_stats_table: stats.json of each dataset -> reports/dataset_stats.md + .csv.

Each statistic sits beside the paper's value from reports/paper_numbers.yaml (`datasets:`);
unknown paper values read "n/a (not available)".
"""
import argparse
import json
import sys
from pathlib import Path

import yaml

from recbench.report import dataset_stats_table, stats_formats, write_table


def main(stats_files: list[str], paper_yaml: str, out_md: str, out_csv: str) -> None:
    stats = {Path(f).parent.name: json.loads(Path(f).read_text()) for f in stats_files}
    paper = (yaml.safe_load(Path(paper_yaml).read_text()) or {}).get("datasets") or {}
    write_table(dataset_stats_table(stats, paper), out_md, out_csv,
                "Dataset statistics (after filtering; padding not counted)", formats=stats_formats())


if __name__ == "__main__" and "snakemake" not in globals():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stats", nargs="+", help="data/processed/{dataset}/stats.json files")
    p.add_argument("--paper", default="reports/paper_numbers.yaml")
    p.add_argument("--out", default="reports/dataset_stats.md")
    a = p.parse_args()
    main(a.stats, a.paper, a.out, str(Path(a.out).with_suffix(".csv")))
elif "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")
    main(snakemake.input.stats, snakemake.input.paper, snakemake.output.md,
         snakemake.output.csv)
