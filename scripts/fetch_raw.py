"""Rule fetch_raw: a dataset's raw file -> data/raw/{dataset}/{file} + fetched.json.

From the data mirror, the network (pooch, checksum verified) or the synthetic generator
(recbench/data/download.py); a failure names the dataset, the URL and the mirror setting.
"""
import sys
from pathlib import Path

from recbench.data.download import fetch, mirror_setting
from recbench.rule_script import run_rule


def main(dataset: str, entry: dict, manifest: str, mirror: str | None) -> None:
    info = fetch(dataset, entry, Path(manifest).parent, mirror=mirror_setting(mirror))
    print(f"{dataset}: {info['file']} ({info['format']}) from {info['origin']}, "
          f"sha256 {info['sha256']}", file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.wildcards.dataset, snakemake.params.entry,
                                 snakemake.output[0], snakemake.params.mirror))
