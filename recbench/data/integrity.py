"""The data folders carry their own checksums, so a damaged file is rebuilt by its own rule and
never read as new data that re-queues training.

Each data rule writes, after its outputs, a `checksums.json` beside them:

    data/raw/{dataset}/checksums.json        rule fetch_raw: the raw file; and `origin`, the data
                                             mirror's file it was copied from, when it was
    data/processed/{dataset}/checksums.json  rule preprocess: sequences.parquet and stats.json;
                                             `source_sha256` (the raw file's) and `entry` (the
                                             registry entry) they were built from

    {"files": {name: {"sha256", "size", "mtime_ns"}}, "rebuilds": n, ...}

When Snakemake parses the workflow, `check_dataset` compares the files with their record (size
and mtime first; the sha256 only when those differ, so a `touch` or a restored copy passes) and
the mirror's file with the one the raw copy was made from, and says what each rule must do:

  - a raw or processed file that no longer matches its record (truncated, overwritten, half
    copied) is rebuilt by its rule: the rule's `entry` parameter then carries `rebuild: n + 1`,
    a changed parameter, so Snakemake reruns that rule and no other; the rule stores n + 1, so
    the next parse asks nothing;
  - a mirror file that changed since it was copied is copied again (a changed source);
  - `settled`: the processed data, rebuilt or not, are the content the record describes (the
    record exists, and the raw source and the registry entry are those it was built from).
    A job whose output (a run's metrics.json, a study's best.json, stored negatives) is newer
    than that content was made from it, so the workflow gives the job the data as `ancient()`
    inputs (rules/common.smk): a rebuild, or a newer file time, does not rerun it. Otherwise
    Snakemake's own rule holds (an input newer than the outputs, or rebuilt in this
    invocation, reruns the job): a changed registry entry, a changed mirror file, a run older
    than its data, data made before records were kept.

The records are not rule outputs: Snakemake never deletes them, so one outlives a failed
rebuild, and no job reads them through Snakemake, so their own file times matter to no one.

`verify_processed` is the full check (every byte) the train script makes before it reads the
data; a mismatch stops the job with the file named, before any output is touched, and gives
the file a new time, so that the next parse checks it in full and has it rebuilt (a change
that kept the size and the time is found only so).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from recbench.data.parsers import DataError
from recbench.io import sha256_of, write_json_atomic

CHECKSUMS = "checksums.json"
PROCESSED_FILES = ("sequences.parquet", "stats.json")


def file_record(path: str | Path) -> dict:
    path = Path(path)
    st = path.stat()
    return {"sha256": sha256_of(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _differs(path: Path, record: dict, full: bool = False) -> str | None:
    """What is wrong with `path` against its record, or None: size and mtime equal means
    unchanged (unless `full`); otherwise the sha256 decides."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is missing"
    if st.st_size != record.get("size"):
        return f"has {st.st_size} bytes, {record.get('size')} when written"
    if not full and st.st_mtime_ns == record.get("mtime_ns"):
        return None
    got = sha256_of(path)
    if got != record.get("sha256"):
        return f"has sha256 {got[:12]}…, {str(record.get('sha256'))[:12]}… when written"
    return None


def write_checksums(folder: str | Path, names, **extra) -> dict:
    """Record `names` (files in `folder`) in `folder`/checksums.json, with `extra` keys."""
    folder = Path(folder)
    record = {"files": {name: file_record(folder / name) for name in names
                        if (folder / name).is_file()}, **extra}
    write_json_atomic(record, folder / CHECKSUMS)
    return record


def read_checksums(folder: str | Path) -> dict | None:
    """A folder's checksums.json, or None when it has none (data made before records were
    kept) or an unreadable one (then it is rewritten by the next run of its rule)."""
    path = Path(folder) / CHECKSUMS
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def verify_processed(folder: str | Path) -> dict | None:
    """Check every byte of a processed folder's files against its checksums.json; DataError
    naming the file on a mismatch. None when the folder has no record (made before records
    were kept: nothing to check against)."""
    folder = Path(folder)
    record = read_checksums(folder)
    if record is None:
        return None
    for name, rec in record["files"].items():
        wrong = _differs(folder / name, rec, full=True)
        if wrong:
            try:   # a new file time makes the next parse check it in full, and rebuild it
                os.utime(folder / name)
            except OSError:
                pass
            raise DataError(f"{folder / name} {wrong} (recorded in {folder / CHECKSUMS}): "
                            "truncated or corrupt; run snakemake again: rule preprocess "
                            "rebuilds it, and finished runs are not retrained")
    return record


def canonical(entry: dict) -> str:
    """A registry entry as the records compare it."""
    return json.dumps(entry, sort_keys=True, default=str)


def without_rebuild(entry: dict) -> tuple[dict, int]:
    """A rule's `entry` parameter -> (the registry entry, the rebuild count it carries)."""
    entry = dict(entry)
    return entry, int(entry.pop("rebuild", 0) or 0)


@dataclass
class DatasetCheck:
    """What the data rules of one dataset must do in this invocation (see the module doc)."""
    raw_rebuilds: int = 0            # the rebuild count fetch_raw's entry carries
    processed_rebuilds: int = 0      # the rebuild count preprocess's entry carries
    settled: bool = False
    data_mtime_ns: int | None = None  # when the recorded processed data were written
    notes: list[str] = field(default_factory=list)


def _mirror_changed(origin: Path, manifest: dict, raw_record: dict | None,
                    manifest_path: Path, raw_file: Path) -> bool:
    """Whether the mirror's file differs from the one the raw copy was made from."""
    known = (raw_record or {}).get("origin")
    if known and known.get("path") == str(origin):
        return _differs(origin, known) is not None
    if origin.name != manifest.get("file") or not manifest.get("sha256"):
        return False                 # an archive, copied before records were kept
    # a copy made before records were kept: the copy's size, then the mirror file's content
    # if it was modified after the copy was made
    if raw_file.is_file() and origin.stat().st_size != raw_file.stat().st_size:
        return True
    if origin.stat().st_mtime_ns <= manifest_path.stat().st_mtime_ns:
        return False
    return sha256_of(origin) != manifest["sha256"]


def check_dataset(name: str, entry: dict, mirror_origin: Path | None,
                  data_dir: str | Path = "data") -> DatasetCheck:
    """The dataset's raw and processed folders against their records, and the mirror's file
    (`mirror_origin`, the file fetch_raw would copy now, or None) against the one copied."""
    raw_dir, processed_dir = Path(data_dir) / "raw" / name, Path(data_dir) / "processed" / name
    check = DatasetCheck()
    manifest_path = raw_dir / "fetched.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = None
    raw_record = read_checksums(raw_dir)
    check.raw_rebuilds = int((raw_record or {}).get("rebuilds", 0))
    source_changed = raw_repair = False
    if manifest is not None and isinstance(manifest.get("file"), str):
        raw_file = raw_dir / manifest["file"]
        known = (raw_record or {}).get("files", {}).get(manifest["file"])
        wrong = _differs(raw_file, known) if known else None
        if wrong:
            raw_repair = True
            check.notes.append(f"{raw_file} {wrong} (recorded in {raw_dir / CHECKSUMS}): "
                               "rule fetch_raw makes it again")
        origin = mirror_origin
        if (origin is not None and origin.is_file() and manifest.get("origin") == str(origin)
                and _mirror_changed(origin, manifest, raw_record, manifest_path, raw_file)):
            source_changed = True
            check.notes.append(f"{origin} (the data mirror's file) changed since {raw_file} "
                               "was copied from it: rule fetch_raw copies it again, and the "
                               "runs on this dataset are retrained")
    if raw_repair or source_changed:
        check.raw_rebuilds += 1

    record = read_checksums(processed_dir)
    check.processed_rebuilds = int((record or {}).get("rebuilds", 0))
    processed_repair = False
    if record is not None:
        for file, rec in record["files"].items():
            path = processed_dir / file
            wrong = _differs(path, rec) if path.exists() else None
            if wrong:
                processed_repair = True
                check.notes.append(f"{path} {wrong} (recorded in {processed_dir / CHECKSUMS}): "
                                   "truncated or corrupt; rule preprocess rebuilds it")
        if processed_repair:
            check.processed_rebuilds += 1
        check.settled = (not source_changed
                         and record.get("entry") is not None
                         and canonical(record["entry"]) == canonical(entry)
                         and manifest is not None
                         and record.get("source_sha256") == manifest.get("sha256"))
        mtimes = [rec.get("mtime_ns") for rec in record["files"].values()]
        if check.settled and mtimes and all(isinstance(t, int) for t in mtimes):
            check.data_mtime_ns = max(mtimes)
        else:
            check.settled = False
    return check


def trained_on_settled_data(check: DatasetCheck, output: str | Path) -> bool:
    """Whether a job's output (a run's metrics.json) was made from the recorded processed
    data: they are settled and the output was written after them."""
    if not check.settled or check.data_mtime_ns is None:
        return False
    try:
        return os.stat(output).st_mtime_ns >= check.data_mtime_ns
    except FileNotFoundError:
        return False
