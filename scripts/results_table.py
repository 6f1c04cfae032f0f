"""Rule results_table: every run's metrics.json -> reports/results.md + .csv.

Test HR/NDCG/MRR@5,10 per (dataset, model, max_len, seed), beside the paper's values and the
reference training log's (reports/paper_numbers.yaml); unknown values read "n/a (not available)".
"""
import argparse
import sys
from pathlib import Path

import yaml

from recbench.report import results_table, write_table

NOTE = ("Full ranking over all items, test split (RecBole leave-one-out). 'paper' = the paper's "
        "table (not available to us: fill reports/paper_numbers.yaml); 'reference log' = the "
        "RecGRELA reference training log (ML-1M, max_len 200, seed 2020), not a paper table.")


def main(metrics_files: list[str], paper_yaml: str, out_md: str, out_csv: str) -> None:
    paper = yaml.safe_load(Path(paper_yaml).read_text()) or {}
    write_table(results_table(metrics_files, paper), out_md, out_csv,
                "Accuracy (test split)", note=NOTE, formats={"s/epoch": "{:.1f}", "peak MB": "{:,.0f}"})


if __name__ == "__main__" and "snakemake" not in globals():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", nargs="+", help="results/.../metrics.json files")
    p.add_argument("--paper", default="reports/paper_numbers.yaml")
    p.add_argument("--out", default="reports/results.md")
    a = p.parse_args()
    main(a.metrics, a.paper, a.out, str(Path(a.out).with_suffix(".csv")))
elif "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")
    main(snakemake.input.metrics, snakemake.input.paper, snakemake.output.md, snakemake.output.csv)
