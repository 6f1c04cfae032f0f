"""The preprocess step: raw file -> data/processed/{dataset}/sequences.parquet + stats.json.

Parse (recbench/data/parsers.py), then filter, remap and order (recbench/data/protocol.py); both
outputs are computed before either is written, and each is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recbench.data.parsers import read_interactions
from recbench.data.protocol import InterFilter, build_sequences
from recbench.io import sha256_of, write_json_atomic, write_parquet_atomic


def preprocess(raw_path, fmt: str, out_dir, flt: InterFilter, time_key: str = "float32",
               source_sha256: str | None = None, fields: dict | None = None) -> dict:
    """Parse, filter, order and write `{out_dir}/sequences.parquet` and `stats.json`.

    A failure leaves earlier outputs untouched. `source_sha256` (the fetch manifest's) saves
    hashing the raw file again; a raw folder (Netflix Prize's training_set) gets None.
    `fields`: an atomic file's column names (the registry's `atomic_fields`).
    Returns the stats written.
    """
    raw_path, out_dir = Path(raw_path), Path(out_dir)
    df = read_interactions(raw_path, fmt, fields)
    table, stats = build_sequences(df, flt, time_key)
    stats["source_file"] = raw_path.name
    stats["source_format"] = fmt
    stats["source_sha256"] = source_sha256 or (sha256_of(raw_path) if raw_path.is_file()
                                               else None)
    write_parquet_atomic(table, out_dir / "sequences.parquet")
    write_json_atomic(stats, out_dir / "stats.json")
    return stats


def load_sequences(path) -> pd.DataFrame:
    """Read sequences.parquet back (user_id, item_ids, item_index per user)."""
    return pq.read_table(path).to_pandas()
