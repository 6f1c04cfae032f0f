"""Rule preprocess: data/raw/{dataset}/fetched.json -> data/processed/{dataset}/.

Writes sequences.parquet (one row per user: user_id, item_ids, item_index) and stats.json,
with RecBole 1.2.1's filter, id remapping and time ordering (recbench/data.py). Bad input
prints one message naming the file (and line) and exits 1; earlier outputs stay untouched.
"""
import argparse
import json
import sys
from pathlib import Path

import yaml

from recbench.data import DataError, entry_filter, preprocess, registry_entry
from recbench.download import read_manifest


def main(manifest: str, entry: dict, out_dir: str) -> int:
    try:
        raw = read_manifest(manifest)
        stats = preprocess(raw["path"], raw["format"], out_dir, entry_filter(entry),
                           entry.get("time_key", "float32"), raw.get("sha256"))
    except DataError as err:
        print(f"preprocess: {err}", file=sys.stderr)
        if sys.stderr is not sys.__stderr__:  # under Snakemake: on the console too
            print(f"preprocess: {err}", file=sys.__stderr__)
        return 1
    print(json.dumps(stats, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__" and "snakemake" not in globals():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--registry", default="config/datasets.yaml")
    a = p.parse_args()
    try:
        entry = registry_entry(yaml.safe_load(open(a.registry)), a.dataset, a.registry)
    except DataError as err:
        sys.exit(f"preprocess: {err}")
    sys.exit(main(f"data/raw/{a.dataset}/fetched.json", entry, f"data/processed/{a.dataset}"))
elif "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")
    sys.exit(main(snakemake.input[0], snakemake.params.entry,
                  str(Path(snakemake.output.stats).parent)))
