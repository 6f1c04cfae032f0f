"""Rule sample_negatives: a processed dataset -> negatives_{uni100,pop100}.parquet beside it.

100 negatives per evaluated user, drawn once (recbench/data/sampling.py), so that every model,
epoch and run with `train.eval_mode` uni100 / pop100 ranks its target among the same items.
"""
import sys
from pathlib import Path

from recbench.data.sampling import write_negatives
from recbench.rule_script import run_rule

SEED = 2020   # fixed: the negatives are part of the dataset, not of a run


def main(out: str, mode: str) -> None:
    path = write_negatives(Path(out).parent, mode, SEED)
    print(f"{path}: 100 {mode[:3]} negatives per valid and test user, seed {SEED}",
          file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.output[0], snakemake.wildcards.mode))
