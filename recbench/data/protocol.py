"""RecBole 1.2.1's sequential protocol on parsed interactions: filter, remap, order, split.

interactions (file order) --filter--> --remap--> --sort--> one chronological sequence per user

Where each step comes from in RecBole 1.2.1 (recbole/data/dataset/dataset.py unless named):
  filter      `_filter_by_inter_num`: each round bans every user and every item whose *current*
              count is outside its inclusive interval, drops the interactions touching either,
              and repeats until nothing is banned (simultaneous rounds, not user-then-item)
  remap       `_remap`: pd.factorize over the filtered file order, +1, '[PAD]' = 0
  normalise   `_normalize`: only with `normalize_all: True` (RecBole's built-in ml-100k.yaml);
              min-max over the filtered rows, in float64
  sort        `_dataframe_to_interaction` stores float fields as float32; `data_augmentation`
              (sequential_dataset.py) then sorts by [user, timestamp] with a stable sort, so
              timestamps that round to the same float32 keep their file order
  split       `_split_index_by_leave_one_out` on the augmented examples (see `split_counts`)

A user's sequence is kept whole; truncation to the most recent `max_len` items happens when
batches are built, never here, so ML-32M (32M rows) needs only per-user arrays, not prefixes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from recbench.data.parsers import DataError

TIME_KEYS = ("float32", "float32_minmax", "exact")


# ----------------------------------------------------------------------------------------
# Filter, remap, order
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InterFilter:
    """RecBole's `user_inter_num_interval` / `item_inter_num_interval`, inclusive; None = open.

    ML-1M/20M/32M: user_min = item_min = 5 ("[5,inf)"). Netflix: user_min 50, item_min 50,
    item_max 15000 ("[50,15000]": very popular items go too).
    """
    user_min: int | None = None
    user_max: int | None = None
    item_min: int | None = None
    item_max: int | None = None

    def active(self) -> bool:
        return any(v is not None for v in asdict(self).values())


def _out_of_bounds(counts: np.ndarray, lo, hi) -> np.ndarray:
    present = counts > 0  # RecBole's Counter holds only ids that still have interactions
    bad = np.zeros_like(present)
    if lo is not None:
        bad |= counts < lo
    if hi is not None:
        bad |= counts > hi
    return present & bad


def filter_by_inter_num(user: np.ndarray, item: np.ndarray, flt: InterFilter):
    """Row positions kept by RecBole 1.2.1's `_filter_by_inter_num`, in file order.

    user, item: integer codes (any dense 0..n-1 coding) in file order. Each round bans, from
    the current counts, every user and every item outside its interval at once, then drops
    the rows touching a banned user or item; it stops when a round bans nothing.
    Returns (kept row positions, number of rounds that dropped something).
    """
    keep = np.arange(len(user), dtype=np.int64)
    u, i = user, item
    n_users, n_items = int(user.max(initial=-1)) + 1, int(item.max(initial=-1)) + 1
    user_on = flt.user_min is not None or flt.user_max is not None
    item_on = flt.item_min is not None or flt.item_max is not None
    rounds = 0
    while len(keep):
        ban_u = (_out_of_bounds(np.bincount(u, minlength=n_users), flt.user_min, flt.user_max)
                 if user_on else np.zeros(n_users, bool))
        ban_i = (_out_of_bounds(np.bincount(i, minlength=n_items), flt.item_min, flt.item_max)
                 if item_on else np.zeros(n_items, bool))
        if not (ban_u.any() or ban_i.any()):
            break
        drop = ban_u[u] | ban_i[i]
        rounds += 1
        stay = ~drop
        keep, u, i = keep[stay], u[stay], i[stay]  # later rounds work on fewer rows
    return keep, rounds


def factorize_first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RecBole's remap: ids 1..n in order of first appearance (0 stays padding).

    Returns (ids int32 per row, original code of each id - 1).
    """
    ids, uniques = pd.factorize(codes, sort=False)
    return (ids + 1).astype(np.int32), np.asarray(uniques)


def time_sort_key(timestamp: np.ndarray, time_key: str) -> np.ndarray:
    """The per-row key RecBole sorts on (see module docstring); rows are already filtered.

    float32         float32(timestamp): RecBole 1.2.1 without normalize_all (the reference
                    configs; ties within 64 s at 1e9 s, i.e. a minute of ML-32M's clock)
    float32_minmax  float32((t - min) / (max - min)) over the filtered rows: RecBole with
                    normalize_all: True (its built-in ml-100k.yaml); all equal -> 1.0
    exact           the timestamp itself (int64 or float64); ties only for equal timestamps
    """
    if time_key == "exact":
        return timestamp
    t = np.asarray(timestamp, dtype=np.float64)  # RecBole parses float fields as float64
    if time_key == "float32":
        return t.astype(np.float32)
    if time_key == "float32_minmax":
        lo, hi = (t.min(), t.max()) if len(t) else (0.0, 0.0)
        if hi == lo:
            return np.ones(len(t), dtype=np.float32)
        return ((t - lo) / (hi - lo)).astype(np.float32)
    raise DataError(f"unknown time_key {time_key!r}; choose one of {TIME_KEYS}")


def _packed_sort_key(user_id: np.ndarray, key: np.ndarray) -> np.ndarray | None:
    """(user, key) packed into one uint64 whose order is the pair's lexicographic order.

    The high 32 bits are the user id; the low 32 bits are the key's float32 bits made
    order-preserving (negatives have all bits flipped, positives the sign bit set), or an
    integral key minus its minimum when that fits in 32 bits. None if the key fits neither.
    """
    if len(key) == 0 or user_id.max() >= 2**32:
        return None
    if key.dtype == np.float32:
        bits = (key + np.float32(0.0)).view(np.uint32)       # + 0.0 turns -0.0 into +0.0
        low = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(2**31))
    else:
        if key.dtype.kind == "f" and not np.array_equal(key, np.floor(key)):
            return None
        low = key - key.min()
        if low.max() >= 2**32:
            return None
        low = low.astype(np.uint32)
    return (user_id.astype(np.uint64) << np.uint64(32)) | low.astype(np.uint64)


def chronological_order(user_id: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (user, key), ties in current row order.

    Exactly RecBole's Interaction.sort(by=[user, time]): a stable sort on the last key, then
    a stable sort on the first. When (user, key) packs into one uint64, a single stable sort
    of the packed key gives the same permutation at half the cost.
    """
    packed = _packed_sort_key(user_id, key)
    if packed is not None:
        return np.argsort(packed, kind="stable")
    order = np.argsort(key, kind="stable")
    return order[np.argsort(user_id[order], kind="stable")]


# ----------------------------------------------------------------------------------------
# Leave-one-out split (RecBole `_split_index_by_leave_one_out`, leave_one_num = 2)
# ----------------------------------------------------------------------------------------

def split_counts(n):
    """(n_train, n_valid, n_test) next-item examples of a user with n interactions.

    RecBole's prefix augmentation turns n interactions into n - 1 examples (targets at
    positions 1..n-1); leave-one-out then keeps legal = min(2, n - 2) of them for evaluation:
    n >= 4: n-3 train, 1 valid (target n-2), 1 test (target n-1)
    n == 3: 1 train, 0 valid, 1 test   (legal 1: the single held-out example is test)
    n == 2: 1 train, 0 valid, 0 test
    n <= 1: nothing.
    Works on ints and on numpy arrays of lengths.
    """
    n = np.asarray(n, dtype=np.int64)
    examples = np.maximum(n - 1, 0)
    legal = np.clip(n - 2, 0, 2)
    out = (examples - legal, (legal == 2).astype(np.int64), (legal >= 1).astype(np.int64))
    return tuple(int(x) for x in out) if out[0].ndim == 0 else out


def split_targets(n: int):
    """Target positions (0-based, in the chronological sequence) of one user's examples.

    Returns (train positions as a range, valid position or None, test position or None);
    the input of an example with target position t is the sequence before t, truncated to
    the most recent max_len items when the batch is built.
    """
    n_train, n_valid, n_test = split_counts(n)
    return (range(1, 1 + n_train), n - 2 if n_valid else None, n - 1 if n_test else None)


# ----------------------------------------------------------------------------------------
# All steps at once: parsed interactions -> one row per user
# ----------------------------------------------------------------------------------------

def build_sequences(df: pd.DataFrame, flt: InterFilter, time_key: str = "float32"):
    """Filter, remap and order `df` (file order). Returns (pyarrow Table, stats dict).

    Table rows are users in RecBole's user-id order (first appearance in the filtered
    file): user_id (str), item_ids (list<str>, chronological), item_index (list<int32>, 1..n).
    """
    if time_key not in TIME_KEYS:
        raise DataError(f"unknown time_key {time_key!r}; choose one of {TIME_KEYS}")
    user_codes = df["user"].cat.codes.to_numpy()
    item_codes = df["item"].cat.codes.to_numpy()
    raw = {"n_users": int(df["user"].nunique()), "n_items": int(df["item"].nunique()),
           "n_interactions": int(len(df))}
    keep, rounds = filter_by_inter_num(user_codes, item_codes, flt)
    if len(keep) == 0:
        raise DataError(f"the filter {asdict(flt)} removes every interaction")
    uid, user_of_id = factorize_first_appearance(user_codes[keep])    # 1..n_users
    iid, item_of_id = factorize_first_appearance(item_codes[keep])    # 1..n_items
    key = time_sort_key(df["timestamp"].to_numpy()[keep], time_key)
    del keep
    order = chronological_order(uid, key)
    del key
    item_seq = iid[order]                                              # (N,) user-major
    del order
    n_users, n_items = len(user_of_id), len(item_of_id)
    lengths = np.bincount(uid, minlength=n_users + 1)[1:]
    offsets = np.zeros(n_users + 1, dtype=np.int32)  # < 2**31 interactions (Netflix: 1e8)
    np.cumsum(lengths, out=offsets[1:])

    # tokens: the id -> token tables are small; per-row strings are built by pyarrow `take`
    item_tokens = pa.array(df["item"].cat.categories.astype(str).to_numpy()[item_of_id],
                           pa.string())
    user_tokens = pa.array(df["user"].cat.categories.astype(str).to_numpy()[user_of_id],
                           pa.string())
    pad_tokens = pa.concat_arrays([pa.array([""], pa.string()), item_tokens])  # id 0 unused
    values_index = pa.array(item_seq, pa.int32())
    table = pa.table({
        "user_id": user_tokens,
        "item_ids": pa.ListArray.from_arrays(pa.array(offsets),
                                                  pad_tokens.take(values_index)),
        "item_index": pa.ListArray.from_arrays(pa.array(offsets), values_index),
    })
    n_inter = int(offsets[-1])
    stats = {
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": n_inter,
        "avg_seq_len": n_inter / n_users,
        "sparsity": 1.0 - n_inter / (n_users * n_items),
        "min_seq_len": int(lengths.min()),
        "median_seq_len": float(np.median(lengths)),
        "max_seq_len": int(lengths.max()),
        "raw": raw,
        "filter": asdict(flt),
        "filter_rounds": rounds,
        "time_key": time_key,
    }
    return table, stats
