"""The RecBole 1.2.1 protocol on hand-built interaction tables, and against slow references."""
import numpy as np
import pandas as pd
import pytest
from recbole_reference import recbole_filter, recbole_leave_one_out, recbole_sequences

from recbench.data.preprocess import load_sequences
from recbench.data.protocol import (
    InterFilter,
    build_sequences,
    filter_by_inter_num,
    split_counts,
    split_targets,
)
from recbench.io import write_parquet_atomic


def frame(rows):
    """[(user, item, timestamp)] in file order -> the parsers' DataFrame."""
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    df["user"] = df["user"].astype(str).astype("category")
    df["item"] = df["item"].astype(str).astype("category")
    return df


def kept(rows, flt):
    df = frame([(u, i, 0) for u, i in rows])
    keep, rounds = filter_by_inter_num(df["user"].cat.codes.to_numpy(),
                                       df["item"].cat.codes.to_numpy(), flt)
    return [rows[k] for k in keep], rounds


def test_kcore_needs_several_rounds():
    # A chain that unravels one link per round, beside a 2x2 block that survives 2-core.
    chain = [("u1", "i1"), ("u1", "i2"), ("u2", "i2"), ("u2", "i3"), ("u3", "i3")]
    block = [("u4", "i4"), ("u4", "i5"), ("u5", "i4"), ("u5", "i5")]
    # round 1 bans u3 (1) and i1 (1); round 2 then u1 and i3; round 3 u2 and i2
    out, rounds = kept(chain + block, InterFilter(user_min=2, item_min=2))
    assert out == block
    assert rounds == 3


def test_user_falls_below_threshold_after_item_removal():
    # u1 has 3 interactions, but 2 of them are with items seen once: after round 1 u1 has 1
    rows = [("u1", "a"), ("u1", "b"), ("u1", "c"),
            ("u2", "c"), ("u2", "d"), ("u3", "c"), ("u3", "d"), ("u2", "e"), ("u3", "e")]
    out, rounds = kept(rows, InterFilter(user_min=2, item_min=2))
    assert out == [("u2", "c"), ("u2", "d"), ("u3", "c"), ("u3", "d"), ("u2", "e"), ("u3", "e")]
    assert rounds == 2


def test_rounds_ban_users_and_items_simultaneously():
    # Round 1 bans u1 (1 < 2) and item A (3 > 2) from the SAME counts, as RecBole does; a
    # user-then-item filter would have seen A at 2 after u1 left and kept it.
    rows = [("u1", "A"), ("u2", "A"), ("u2", "B"), ("u2", "C"), ("u3", "A"), ("u3", "B"),
            ("u3", "C")]
    out, _ = kept(rows, InterFilter(user_min=2, item_min=1, item_max=2))
    assert out == [("u2", "B"), ("u2", "C"), ("u3", "B"), ("u3", "C")]


def test_netflix_upper_item_bound_is_inclusive():
    # item_max = 3: x (3 users) stays, y (4 users) goes; then d, left with w alone, is below
    # user_min = 2 in round 2 and goes too.
    rows = ([(u, "x") for u in "abc"] + [(u, "y") for u in "abcd"] + [(u, "z") for u in "abc"]
            + [("d", "w")])
    out, rounds = kept(rows, InterFilter(user_min=2, item_min=1, item_max=3))
    assert out == [(u, "x") for u in "abc"] + [(u, "z") for u in "abc"]
    assert rounds == 2


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("flt", [InterFilter(user_min=3, item_min=3),
                                 InterFilter(user_min=2, item_min=3, item_max=9),
                                 InterFilter(user_min=4, user_max=12, item_min=2)])
def test_filter_matches_plain_python_recbole_loop(seed, flt):
    rng = np.random.default_rng(seed)
    n = 400
    rows = list(zip((f"u{x}" for x in rng.zipf(1.6, n) % 60),
                    (f"i{x}" for x in rng.zipf(1.4, n) % 50)))
    want, want_rounds = recbole_filter(rows, **vars(flt))
    got, got_rounds = kept(rows, flt)
    assert got == want and got_rounds == want_rounds


def test_float32_ties_keep_file_order():
    # 1e9 and 1e9 + 10 are the same float32 (spacing 64 s there): the tie keeps file order
    rows = [("u", "late", 1_000_000_010), ("u", "early", 1_000_000_000),
            ("u", "a", 900), ("u", "b", 2_000_000_000), ("v", "a", 5)]
    for time_key, want in [("float32", ["a", "late", "early", "b"]),
                           ("exact", ["a", "early", "late", "b"])]:
        table, _ = build_sequences(frame(rows), InterFilter(), time_key)
        assert table.column("item_ids").to_pylist()[0] == want, time_key


def test_float32_minmax_ties_keep_file_order():
    # min 0, max 1e9: 5e8 + 20 normalises to 0.5 + 2e-8, within half a float32 step of 0.5
    # (2**-25 = 2.98e-8), so the later one (first in the file) stays first; 5e8 + 40 does not.
    rows = [("u", "x", 0), ("u", "late", 500_000_020), ("u", "early", 500_000_000),
            ("u", "later", 500_000_040), ("u", "y", 1_000_000_000)]
    table, _ = build_sequences(frame(rows), InterFilter(), "float32_minmax")
    assert table.column("item_ids").to_pylist()[0] == ["x", "late", "early", "later", "y"]
    table, _ = build_sequences(frame(rows), InterFilter(), "exact")
    assert table.column("item_ids").to_pylist()[0] == ["x", "early", "late", "later", "y"]


def test_remap_in_order_of_first_appearance_after_filtering():
    # "gone" appears first in the file but is filtered out (one interaction), so item "b",
    # the first surviving token, gets id 1; users keep first-appearance order (v before u).
    rows = [("w", "gone", 1), ("v", "b", 3), ("u", "c", 4), ("v", "c", 5), ("u", "b", 6)]
    table, stats = build_sequences(frame(rows), InterFilter(user_min=2, item_min=2), "exact")
    assert table.column("user_id").to_pylist() == ["v", "u"]
    assert table.column("item_ids").to_pylist() == [["b", "c"], ["c", "b"]]
    assert table.column("item_index").to_pylist() == [[1, 2], [2, 1]]
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (2, 2, 4)
    assert stats["raw"] == {"n_users": 3, "n_items": 3, "n_interactions": 5}


def test_stats_by_hand():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "x", 1), ("b", "y", 2)]
    _, s = build_sequences(frame(rows), InterFilter(), "exact")
    assert s["n_users"] == 2 and s["n_items"] == 3 and s["n_interactions"] == 5
    assert s["avg_seq_len"] == 2.5
    assert s["sparsity"] == pytest.approx(1 - 5 / 6)      # no padding row or column
    assert (s["min_seq_len"], s["median_seq_len"], s["max_seq_len"]) == (2, 2.5, 3)


@pytest.mark.parametrize("time_key", ["float32", "float32_minmax", "exact"])
def test_pipeline_matches_plain_python_reference(time_key):
    rng = np.random.default_rng(7)
    n = 600
    # timestamps in a narrow window around 1.2e9 give many float32 (and min-max) ties
    rows = [(f"u{u}", f"i{i}", int(t)) for u, i, t in
            zip(rng.integers(0, 30, n), rng.zipf(1.5, n) % 40,
                1_200_000_000 + rng.integers(0, 5_000, n))]
    flt = InterFilter(user_min=5, item_min=5)
    filtered, _ = recbole_filter(rows, **vars(flt))
    want = recbole_sequences(filtered, time_key)
    table, _ = build_sequences(frame(rows), flt, time_key)
    got = dict(zip(table.column("user_id").to_pylist(), table.column("item_index").to_pylist()))
    assert list(got) == list(want)                        # RecBole's user order
    assert got == want


@pytest.mark.parametrize("n", range(0, 9))
def test_leave_one_out_matches_recbole(n):
    train, valid, test = recbole_leave_one_out(n)
    assert split_counts(n) == (len(train), len(valid), len(test))
    t_pos, v_pos, s_pos = split_targets(n) if n > 0 else (range(0), None, None)
    assert list(t_pos) == train
    assert ([v_pos] if v_pos is not None else []) == valid
    assert ([s_pos] if s_pos is not None else []) == test


def test_user_with_exactly_three_interactions():
    # 2 examples; legal = min(2, 3 - 2) = 1 held out, and it is the TEST one: no valid example
    assert split_counts(3) == (1, 0, 1)
    train, valid, test = split_targets(3)
    assert list(train) == [1] and valid is None and test == 2
    assert split_counts(2) == (1, 0, 0)
    assert split_counts(5) == (2, 1, 1)


def test_split_counts_vectorised():
    n_train, n_valid, n_test = split_counts(np.array([2, 3, 4, 10]))
    assert n_train.tolist() == [1, 1, 1, 7]
    assert n_valid.tolist() == [0, 0, 1, 1]
    assert n_test.tolist() == [0, 1, 1, 1]


def test_sequences_parquet_round_trip(tmp_path):
    rows = [("a", "x", 1), ("a", "y", 2), ("b", "y", 1)]
    table, _ = build_sequences(frame(rows), InterFilter(), "exact")
    write_parquet_atomic(table, tmp_path / "sequences.parquet")
    df = load_sequences(tmp_path / "sequences.parquet")
    assert df["user_id"].tolist() == ["a", "b"]
    assert [list(x) for x in df["item_ids"]] == [["x", "y"], ["y"]]
    assert [list(x) for x in df["item_index"]] == [[1, 2], [2]]
    assert df["item_index"].iloc[0].dtype == np.int32
    assert [p.name for p in tmp_path.iterdir()] == ["sequences.parquet"]  # no temp left


def test_synthetic_is_seeded_long_and_order_predictable():
    from collections import Counter

    from recbench.data.synthetic import generate

    df = generate(n_users=120, n_items=200, n_clusters=10, long_frac=0.05, seed=3)
    again = generate(n_users=120, n_items=200, n_clusters=10, long_frac=0.05, seed=3)
    assert df.equals(again)
    assert not df.equals(generate(n_users=120, n_items=200, n_clusters=10, long_frac=0.05,
                                  seed=4))
    assert (df["timestamp"].diff().dropna() >= 0).all()              # a log in time order
    seqs = df.groupby("user", sort=False)["item"].agg(list)
    assert seqs.map(len).max() >= 1000
    # The next item is predictable from the previous one far more often than from
    # popularity: most-frequent successor vs the 10 most popular items, on the last item.
    counts = Counter(i for s in seqs for i in s[:-1])
    top10 = {i for i, _ in counts.most_common(10)}
    follows = {}
    for s in seqs:
        for a, b in zip(s[:-2], s[1:-1]):
            follows.setdefault(a, Counter())[b] += 1
    hit_pop = np.mean([s[-1] in top10 for s in seqs])
    hit_next = np.mean([s[-1] in {i for i, _ in follows.get(s[-2], Counter()).most_common(10)}
                        for s in seqs])
    assert hit_next > hit_pop + 0.2


@pytest.mark.parametrize("kind", ["float32", "int64", "float64_integral", "float64_fractional"])
def test_chronological_order_is_recboles_two_stable_sorts(kind):
    # RecBole: stable sort by time, then stable sort by user. The fast path packs both keys
    # into one uint64; check it (and the fallback) against the two sorts done the slow way.
    from recbench.data.protocol import chronological_order
    rng = np.random.default_rng(0)
    n = 3000
    user = rng.integers(0, 40, n).astype(np.int32)
    key = {"float32": rng.integers(-5, 5, n).astype(np.float32) * np.float32(1.5),
           "int64": rng.integers(10**9, 10**9 + 50, n),
           "float64_integral": rng.integers(0, 30, n).astype(np.float64),
           "float64_fractional": rng.integers(0, 30, n) / 4.0}[kind]
    if kind == "float32":
        key[:5] = np.float32(-0.0)                           # -0.0 == 0.0 is a tie
        key[5:10] = 0.0
    by_time = sorted(range(n), key=lambda r: key[r])
    want = sorted(by_time, key=lambda r: user[r])             # Python's sort is stable
    assert chronological_order(user, key).tolist() == want

