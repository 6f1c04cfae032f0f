"""LFM-1B: RecSysDatasets' atomic lfm1b-artists.inter ("LFM1B-Artists (merged)") through the
mirror, parsed by the header it declares and filtered as the registry entry says.

The file is written here in the converter's exact format (RecSysDatasets'
conversion_tools, `--interaction_type artists --duplicate_removal`): a tab-separated header
`user_id:token  artists_id:token  timestamp:float  num_repeat:float`, one line per (user, artist)
pair. The real file (65M lines) is not needed.
"""
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from recbole_reference import recbole_filter

from recbench.data.download import fetch
from recbench.data.parsers import DataError, read_interactions
from recbench.data.preprocess import preprocess
from recbench.data.registry import entry_filter, registry_entry

ROOT = Path(__file__).parents[1]
HEADER = "user_id:token\tartists_id:token\ttimestamp:float\tnum_repeat:float\n"


def lfm_entry() -> dict:
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    return registry_entry(registry, "lfm-1b")


def rows(df):
    return list(zip(df["user"].astype(str), df["item"].astype(str), df["timestamp"].tolist()))


def test_entry_reads_the_artist_column_and_ignores_the_listening_count(tmp_path):
    f = tmp_path / "lfm1b-artists.inter"
    f.write_text(HEADER + "31435741\t21\t1385212958\t3\n"
                          "31435741\t1006\t1385213283.0\t1\n"
                          "6044\t021\t1360791054\t12\n")
    df = read_interactions(f, "atomic", lfm_entry()["atomic_fields"])
    assert rows(df) == [("31435741", "21", 1385212958.0), ("31435741", "1006", 1385213283.0),
                        ("6044", "021", 1360791054.0)]          # tokens stay strings


def test_default_columns_name_the_missing_one_and_the_header(tmp_path):
    """Without the entry's atomic_fields (RecBole's default ITEM_ID_FIELD item_id) the parser
    says which column it wanted and what the header declares."""
    f = tmp_path / "lfm1b-artists.inter"
    f.write_text(HEADER + "1\t2\t3\t1\n")
    with pytest.raises(DataError, match=r"lfm1b-artists\.inter:1: missing column 'item_id'; "
                       r"the header has \['user_id', 'artists_id', 'timestamp', 'num_repeat'\]"):
        read_interactions(f, "atomic")


def test_entry_is_the_papers_filter():
    entry = lfm_entry()
    assert (entry["format"], entry["url"], entry["file"]) == ("atomic", None,
                                                              "lfm1b-artists.inter")
    assert entry["atomic_fields"] == {"user": "user_id", "item": "artists_id",
                                      "time": "timestamp"}
    flt = entry_filter(entry)
    assert (flt.user_min, flt.user_max, flt.item_min, flt.item_max) == (50, 500, 5, None)
    assert entry["time_key"] == "float32"


def _listening_file(path: Path) -> list[tuple]:
    """Users with 49, 50, 500 and 501 distinct artists and three with 100 (artists 0..n-1).
    Round 1 bans u49, u501 and artists 100..500 (< 5 listeners); round 2 then bans artists
    50..99 (4 listeners left); u500 keeps 50 artists and stays."""
    counts = {"u49": 49, "u50": 50, "u500": 500, "u501": 501, "f1": 100, "f2": 100, "f3": 100}
    lines, out = [], []
    for u, (user, n) in enumerate(counts.items()):
        for k in range(n):
            t = 1_100_000_000 + 1000 * k + u
            lines.append(f"{user}\t{k}\t{t}\t{1 + k % 7}\n")
            out.append((user, str(k), float(t)))
    path.write_text(HEADER + "".join(lines))
    return out


def test_through_the_mirror_with_the_registry_filter(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "lfm-1b").mkdir(parents=True)
    raw_rows = _listening_file(mirror / "lfm-1b" / "lfm1b-artists.inter")
    entry = lfm_entry()
    manifest = fetch("lfm-1b", entry, tmp_path / "raw", mirror=str(mirror))
    assert (manifest["file"], manifest["format"]) == ("lfm1b-artists.inter", "atomic")
    stats = preprocess(tmp_path / "raw" / manifest["file"], manifest["format"],
                       tmp_path / "processed", entry_filter(entry), entry["time_key"],
                       fields=entry["atomic_fields"])
    kept, rounds = recbole_filter(raw_rows, user_min=50, user_max=500, item_min=5)
    assert rounds == 2
    assert sorted({r[0] for r in kept}) == ["f1", "f2", "f3", "u50", "u500"]
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (5, 50, 250)
    table = pq.read_table(tmp_path / "processed" / "sequences.parquet").to_pandas()
    seqs = dict(zip(table.user_id, table.item_ids.map(list)))
    assert seqs["u500"] == [str(k) for k in range(50)]          # chronological
