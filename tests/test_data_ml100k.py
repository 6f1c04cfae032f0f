"""ML-100K through the mirror: RecBole 1.2.x's counts and its time ordering.

Needs ../shared/data/ml-100k/ml-100k.inter (RecBole's atomic file), or $RECBENCH_DATA_MIRROR;
skips cleanly without it.
"""
import csv
import os
from pathlib import Path

import pytest
import yaml
from recbole_reference import recbole_filter, recbole_sequences

from recbench.data.download import fetch
from recbench.data.parsers import read_interactions
from recbench.data.preprocess import preprocess
from recbench.data.protocol import InterFilter, build_sequences
from recbench.data.registry import entry_filter, registry_entry

ROOT = Path(__file__).parents[1]
MIRROR = Path(os.environ.get("RECBENCH_DATA_MIRROR") or ROOT.parent / "shared" / "data")
INTER = MIRROR / "ml-100k" / "ml-100k.inter"
pytestmark = [pytest.mark.real_data,
              pytest.mark.skipif(not INTER.exists(), reason=f"no {INTER}")]

# RecBole 1.2.x, ml-100k, user/item_inter_num_interval "[5,inf)": derived by the plain-Python
# loop of recbole_reference.py (RecBole's algorithm, one row at a time) and recorded here.
# No user drops (each has >= 20 ratings); 333 items with < 5 ratings go, in 1 round.
N_USERS, N_ITEMS, N_INTERACTIONS = 943, 1349, 99287


@pytest.fixture(scope="module")
def rows():
    with open(INTER) as f:
        reader = csv.reader(f, delimiter="\t")
        header = [h.split(":")[0] for h in next(reader)]
        u, i, t = header.index("user_id"), header.index("item_id"), header.index("timestamp")
        return [(r[u], r[i], float(r[t])) for r in reader]


def test_reference_loop_gives_the_recorded_counts(rows):
    kept, rounds = recbole_filter(rows, user_min=5, item_min=5)
    assert len({r[0] for r in kept}) == N_USERS
    assert len({r[1] for r in kept}) == N_ITEMS
    assert len(kept) == N_INTERACTIONS and rounds == 1


def test_pipeline_through_the_mirror_setting(tmp_path):
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    entry = registry_entry(registry, "ml-100k")
    manifest = fetch("ml-100k", entry, tmp_path / "raw", mirror=str(MIRROR))
    assert manifest["format"] == "atomic" and manifest["file"] == "ml-100k.inter"
    stats = preprocess(tmp_path / "raw" / manifest["file"], manifest["format"],
                       tmp_path / "processed", entry_filter(entry), entry["time_key"])
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (
        N_USERS, N_ITEMS, N_INTERACTIONS)
    assert stats["avg_seq_len"] == pytest.approx(N_INTERACTIONS / N_USERS)
    assert stats["sparsity"] == pytest.approx(1 - N_INTERACTIONS / (N_USERS * N_ITEMS))
    assert stats["raw"] == {"n_users": 943, "n_items": 1682, "n_interactions": 100000}


def test_time_order_matches_reference_and_differs_from_exact(rows):
    """RecBole's float32 keys reorder near-simultaneous ratings (docs/fidelity.md, time order).

    Recorded here: with min-max (RecBole's ml-100k.yaml sets normalize_all) 83 of 943 users get
    another order than the exact timestamps and 5 of them other valid/test targets; with raw
    float32 keys (normalize_all unset, as in the RecGRELA configs) 907 and 255.
    """
    kept, _ = recbole_filter(rows, user_min=5, item_min=5)
    df = read_interactions(INTER, "atomic")
    flt = InterFilter(user_min=5, item_min=5)
    seqs = {}
    for key in ("exact", "float32_minmax", "float32"):
        table, _ = build_sequences(df, flt, key)
        seqs[key] = dict(zip(table.column("user_id").to_pylist(),
                             table.column("item_index").to_pylist()))
        assert seqs[key] == recbole_sequences(kept, key), key
    exact = seqs["exact"]
    for key, n_order, n_targets in (("float32_minmax", 83, 5), ("float32", 907, 255)):
        order = sum(seqs[key][u] != exact[u] for u in exact)
        targets = sum(seqs[key][u][-2:] != exact[u][-2:] for u in exact)
        assert (order, targets) == (n_order, n_targets), key
