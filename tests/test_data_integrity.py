"""recbench/data/integrity.py: a data file against its record, the check the train script makes
before it reads the data, and what a damaged or changed file asks of the data rules (the
workflow's side is in tests/test_integrity.py)."""
import json
import os
from pathlib import Path

import pytest

from recbench.data.integrity import (check_dataset, trained_on_settled_data, verify_processed,
                                     write_checksums)
from recbench.data.parsers import DataError

ENTRY = {"format": "atomic", "file": "x.inter", "user_min": 5}


def _processed(tmp_path: Path, **extra) -> Path:
    folder = tmp_path / "data/processed/x"
    folder.mkdir(parents=True)
    (folder / "sequences.parquet").write_bytes(b"PAR1" + bytes(range(200)) + b"PAR1")
    (folder / "stats.json").write_text('{"n_users": 3}\n')
    write_checksums(folder, ["sequences.parquet", "stats.json"], rebuilds=0, **extra)
    return folder


def _raw(tmp_path: Path, origin: Path | None = None) -> Path:
    folder = tmp_path / "data/raw/x"
    folder.mkdir(parents=True)
    (folder / "x.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    from recbench.io import sha256_of
    manifest = {"dataset": "x", "file": "x.inter", "format": "atomic",
                "origin": str(origin) if origin else "generated",
                "sha256": sha256_of(folder / "x.inter")}
    (folder / "fetched.json").write_text(json.dumps(manifest))
    write_checksums(folder, ["x.inter"], rebuilds=0, origin=None)
    return folder


def test_verify_processed_names_a_truncated_or_rewritten_file(tmp_path):
    folder = _processed(tmp_path)
    assert verify_processed(folder)["files"]["stats.json"]["size"] == 15
    os.utime(folder / "stats.json")                       # newer, same bytes: fine
    verify_processed(folder)
    (folder / "stats.json").write_text('{"n_users": 4}\n')  # same size, other bytes
    with pytest.raises(DataError, match=r"stats\.json has sha256 .*/checksums\.json"):
        verify_processed(folder)
    (folder / "stats.json").write_text('{"n_users": 3}\n')
    data = (folder / "sequences.parquet").read_bytes()
    (folder / "sequences.parquet").write_bytes(data[:100])
    with pytest.raises(DataError, match=r"sequences\.parquet has 100 bytes, 208 when written"):
        verify_processed(folder)


def test_a_folder_without_a_record_is_not_checked(tmp_path):
    assert verify_processed(tmp_path) is None


def test_damaged_processed_file_asks_preprocess_for_one_more_rebuild(tmp_path):
    raw = _raw(tmp_path)
    manifest = json.loads((raw / "fetched.json").read_text())
    folder = _processed(tmp_path, source_sha256=manifest["sha256"], entry=ENTRY)
    intact = check_dataset("x", ENTRY, None, tmp_path / "data")
    assert (intact.processed_rebuilds, intact.raw_rebuilds, intact.settled) == (0, 0, True)
    assert intact.notes == []
    (folder / "sequences.parquet").write_bytes(b"PAR1")
    damaged = check_dataset("x", ENTRY, None, tmp_path / "data")
    assert (damaged.processed_rebuilds, damaged.raw_rebuilds, damaged.settled) == (1, 0, True)
    assert "sequences.parquet has 4 bytes" in damaged.notes[0]


def test_a_changed_entry_or_source_unsettles_the_data(tmp_path):
    raw = _raw(tmp_path)
    manifest = json.loads((raw / "fetched.json").read_text())
    _processed(tmp_path, source_sha256=manifest["sha256"], entry=ENTRY)
    assert not check_dataset("x", {**ENTRY, "user_min": 6}, None, tmp_path / "data").settled
    manifest["sha256"] = "0" * 64
    (raw / "fetched.json").write_text(json.dumps(manifest))
    assert not check_dataset("x", ENTRY, None, tmp_path / "data").settled


def test_a_changed_mirror_file_asks_fetch_raw_again_and_unsettles(tmp_path):
    mirror = tmp_path / "mirror/x/x.inter"
    mirror.parent.mkdir(parents=True)
    mirror.write_text("user_id:token\titem_id:token\n1\t2\n")
    raw = _raw(tmp_path, origin=mirror)
    manifest = json.loads((raw / "fetched.json").read_text())
    _processed(tmp_path, source_sha256=manifest["sha256"], entry=ENTRY)
    assert check_dataset("x", ENTRY, mirror, tmp_path / "data").raw_rebuilds == 0
    mirror.write_text("user_id:token\titem_id:token\n1\t3\n")   # same size, other content
    os.utime(mirror, ns=(2**62, 2**62))                        # modified after the copy
    changed = check_dataset("x", ENTRY, mirror, tmp_path / "data")
    assert (changed.raw_rebuilds, changed.settled) == (1, False)
    assert f"{mirror} (the data mirror's file) changed" in changed.notes[0]


def test_an_output_older_than_the_recorded_data_was_not_made_from_them(tmp_path):
    raw = _raw(tmp_path)
    manifest = json.loads((raw / "fetched.json").read_text())
    folder = _processed(tmp_path, source_sha256=manifest["sha256"], entry=ENTRY)
    check = check_dataset("x", ENTRY, None, tmp_path / "data")
    metrics = tmp_path / "metrics.json"
    metrics.write_text("{}")
    assert trained_on_settled_data(check, metrics)
    data_time = (folder / "sequences.parquet").stat().st_mtime_ns
    os.utime(metrics, ns=(data_time - 10**9, data_time - 10**9))
    assert not trained_on_settled_data(check, metrics)
    assert not trained_on_settled_data(check, tmp_path / "missing.json")


def test_damage_that_keeps_size_and_time_is_found_by_the_full_check_then_rebuilt(tmp_path):
    raw = _raw(tmp_path)
    manifest = json.loads((raw / "fetched.json").read_text())
    folder = _processed(tmp_path, source_sha256=manifest["sha256"], entry=ENTRY)
    parquet = folder / "sequences.parquet"
    st = parquet.stat()
    data = bytearray(parquet.read_bytes())
    data[50] ^= 0xFF                                       # one flipped byte
    parquet.write_bytes(bytes(data))
    os.utime(parquet, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same time
    assert check_dataset("x", ENTRY, None, tmp_path / "data").processed_rebuilds == 0
    with pytest.raises(DataError, match="sequences.parquet has sha256"):
        verify_processed(folder)
    assert check_dataset("x", ENTRY, None, tmp_path / "data").processed_rebuilds == 1
