"""Rule preprocess: data/raw/{dataset}/fetched.json -> sequences.parquet + stats.json.

RecBole 1.2.1's filter, id remapping and time ordering (recbench/data/protocol.py). Bad input
stops with one line naming the file (and line); earlier outputs stay untouched.
"""
import json
import sys
from pathlib import Path

from recbench.data.download import read_manifest
from recbench.data.preprocess import preprocess
from recbench.data.registry import entry_filter
from recbench.rule_script import run_rule


def main(manifest: str, entry: dict, out_dir: str) -> None:
    raw = read_manifest(manifest)
    stats = preprocess(raw["path"], raw["format"], out_dir, entry_filter(entry),
                       entry["time_key"], raw.get("sha256"), entry.get("atomic_fields"))
    print(json.dumps(stats, indent=2), file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.input[0], snakemake.params.entry,
                                 str(Path(snakemake.output.stats).parent)))
