"""Rule preprocess: data/raw/{dataset}/fetched.json -> sequences.parquet + stats.json + checksums.json.

RecBole 1.2.1's filter, id remapping and time ordering (recbench/data/protocol.py). Bad input
stops with one line naming the file (and line), and the data mirror's file it was copied from;
earlier outputs stay untouched. checksums.json records the outputs, the raw file's sha256 and
the registry entry they were built from (recbench/data/integrity.py).
"""
import json
import sys
from pathlib import Path

from recbench.data.download import read_manifest
from recbench.data.integrity import PROCESSED_FILES, without_rebuild, write_checksums
from recbench.data.parsers import DataError
from recbench.data.preprocess import preprocess
from recbench.data.registry import entry_filter
from recbench.rule_script import run_rule


def main(manifest: str, entry: dict, out_dir: str) -> None:
    entry, rebuilds = without_rebuild(entry)
    raw = read_manifest(manifest)
    try:
        stats = preprocess(raw["path"], raw["format"], out_dir, entry_filter(entry),
                           entry["time_key"], raw.get("sha256"), entry.get("atomic_fields"))
    except DataError as err:
        origin = raw.get("origin", "")
        if Path(origin).is_file():       # a copy of the data mirror's file: fix it there
            raise DataError(f"{err} [{raw['path']} is a copy of {Path(origin).resolve()}: "
                            "correct or replace that file; the next snakemake copies it "
                            "again]") from None
        raise
    write_checksums(out_dir, PROCESSED_FILES, rebuilds=rebuilds,
                    source_sha256=raw.get("sha256"), entry=entry)
    print(json.dumps(stats, indent=2), file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.input[0], snakemake.params.entry,
                                 str(Path(snakemake.output.stats).parent)))
