"""Rule fetch_raw: a dataset's raw file -> data/raw/{dataset}/{file} + fetched.json.

From the data mirror, the network (pooch, checksum verified) or the synthetic generator; see
recbench/download.py. A failure prints one message naming the dataset, the URL and the mirror
setting (no traceback) and exits 1.
"""
import argparse
import sys
from pathlib import Path

import yaml

from recbench.data import DataError, registry_entry
from recbench.download import FetchError, fetch, mirror_setting


def main(dataset: str, entry: dict, manifest: str, mirror: str | None, retries: int = 3) -> int:
    try:
        info = fetch(dataset, entry, Path(manifest).parent, mirror=mirror_setting(mirror),
                     retries=retries)
    except (FetchError, DataError) as err:
        print(f"fetch_raw: {err}", file=sys.stderr)
        if sys.stderr is not sys.__stderr__:  # under Snakemake: on the console too
            print(f"fetch_raw: {err}", file=sys.__stderr__)
        return 1
    print(f"fetch_raw: {dataset}: {info['file']} ({info['format']}) from {info['origin']}, "
          f"sha256 {info['sha256']}", file=sys.stderr)
    return 0


if __name__ == "__main__" and "snakemake" not in globals():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--registry", default="config/datasets.yaml")
    p.add_argument("--out", help="manifest path (default data/raw/{dataset}/fetched.json)")
    p.add_argument("--mirror", default=None, help="data mirror folder ($RECBENCH_DATA_MIRROR wins)")
    p.add_argument("--retries", type=int, default=3, help="download retries")
    a = p.parse_args()
    try:
        entry = registry_entry(yaml.safe_load(open(a.registry)), a.dataset, a.registry)
    except DataError as err:
        sys.exit(f"fetch_raw: {err}")
    sys.exit(main(a.dataset, entry, a.out or f"data/raw/{a.dataset}/fetched.json", a.mirror,
                  a.retries))
elif "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "w")
    sys.exit(main(snakemake.wildcards.dataset, snakemake.params.entry, snakemake.output[0],
                  snakemake.config.get("data_mirror")))
