"""Rule fetch_raw: a dataset's raw file -> data/raw/{dataset}/{file} + fetched.json + checksums.json.

From the data mirror, the network (pooch, checksum verified) or the synthetic generator
(recbench/data/download.py); a failure names the dataset, the URL and the mirror setting.
checksums.json records the raw file and the mirror's file it was copied from, so a damaged
copy or a changed mirror file is fetched again (recbench/data/integrity.py).
"""
import sys
from pathlib import Path

from recbench.data.download import fetch, mirror_setting
from recbench.data.integrity import file_record, without_rebuild, write_checksums
from recbench.rule_script import run_rule


def main(dataset: str, entry: dict, manifest: str, mirror: str | None) -> None:
    entry, rebuilds = without_rebuild(entry)
    dest = Path(manifest).parent
    info = fetch(dataset, entry, dest, mirror=mirror_setting(mirror))
    origin = Path(info["origin"])
    write_checksums(dest, [info["file"]], rebuilds=rebuilds,
                    origin={"path": str(origin), **file_record(origin)}
                    if origin.is_file() else None)
    print(f"{dataset}: {info['file']} ({info['format']}) from {info['origin']}, "
          f"sha256 {info['sha256']}", file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.wildcards.dataset, snakemake.params.entry,
                                 snakemake.output[0], snakemake.params.mirror))
