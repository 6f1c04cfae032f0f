"""Sampled evaluation: 100 negatives per held-out target, drawn once per dataset.

Papers that did not rank all items ranked the target among 100 sampled ones (RecBole's
`uni100` / `pop100` eval modes). To line up with them, `train.eval_mode: uni100 | pop100`
ranks each valid / test target among itself and the negatives stored here
(recbench/evaluation/metrics.py `sampled_target_ranks`, same pessimistic tie rule as full ranking).

The draw, for every user with a valid (resp. test) target:
  - n = 100 DISTINCT item ids, never the target and never any item of the user's whole
    sequence (history, valid and test items alike);
  - uni100: every allowed item equally likely; pop100: in proportion to the item's training
    popularity, its count in the training part of the sequences (everything but the held-out
    valid and test targets); an item never seen in training is never drawn;
  - successive draws: a forbidden or repeated item is drawn again (for pop100 this is the
    usual weighted sampling without replacement);
  - from a generator seeded by (seed, mode, split) only, written once to
    `data/processed/{dataset}/negatives_{mode}.parquet`: the same negatives for every model,
    epoch and run.

Differences from RecBole 1.2, measured against its code (recbole/sampler/sampler.py,
recbole/data/utils.py): RecBole's general-model `Sampler` does exclude a user's interacted
items; but sequential models must run with `repeatable = True` (recbole/config), which selects
`RepeatableSampler`, whose excluded set is the target item alone, drawn with replacement
(repeats possible), its popularity counted over all interactions. Here a negative is never an
item the user has seen, never repeated, and its popularity comes from the training part only:
the reported number then does not depend on the sampler's luck with history items.

File columns: user_id (original token, str), split ("valid" | "test"), negatives
(list<int32>, the remapped ids of sequences.parquet's item_index).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recbench.data.batching import SequenceData, load_sequence_data, split_counts
from recbench.io import atomic_path

MODES = {"uni100": "uniform", "pop100": "popularity"}
SPLITS = ("valid", "test")
N_NEGATIVES = 100
_ROWS_PER_CHUNK = 1 << 16          # users drawn at once: bounds the (rows, 2n) work arrays
_ROUNDS = 64                       # rejection rounds before the exact per-user fallback


def negatives_path(dataset_dir: str | Path, mode: str) -> Path:
    return Path(dataset_dir) / f"negatives_{mode}.parquet"


def eval_targets(data: SequenceData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(user rows, target items) of the users with a `split` target, in the engine's order:
    make_split's valid_user / test_user (targets: second-to-last / last item), without its
    max_len-dependent training windows."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _, has_valid, has_test = split_counts(data.lengths)
    users = np.flatnonzero(has_valid if split == "valid" else has_test)
    pos = data.offsets[users + 1] - (2 if split == "valid" else 1)
    return users, data.items[pos]


def training_popularity(data: SequenceData) -> np.ndarray:
    """int64 [n_items]: how often each item occurs in the training part of the sequences
    (each user's items but the held-out valid and test targets)."""
    _, has_valid, has_test = split_counts(data.lengths)
    keep = data.lengths - has_valid - has_test                             # (U,)
    local = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths)
    in_train = local < np.repeat(keep, data.lengths)                       # (N,)
    return np.bincount(data.items[in_train], minlength=data.n_items).astype(np.int64)


def draw_negatives(data: SequenceData, split: str, mode: str, n: int = N_NEGATIVES,
                   seed: int = 0) -> np.ndarray:
    """int64 [n_eval_users, n]: each `split` user's negatives (module docstring), rows in
    the order of `eval_targets(data, split)`."""
    if mode not in MODES:
        raise ValueError(f"sampled eval mode must be one of {sorted(MODES)}, got {mode!r}")
    users, _ = eval_targets(data, split)
    weights = training_popularity(data).astype(np.float64) if MODES[mode] == "popularity" \
        else np.ones(data.n_items)
    weights[0] = 0.0                                                       # padding
    seen = _SeenItems(data)
    _check_enough_items(data, users, weights, seen, n, mode)
    rng = np.random.default_rng([seed, list(MODES).index(mode), SPLITS.index(split)])
    cdf = np.cumsum(weights)

    def draw(shape):                  # with replacement, item i with probability w_i / sum(w)
        items = np.searchsorted(cdf, rng.random(shape) * cdf[-1], side="right")
        items = np.minimum(items, data.n_items - 1)        # u * total rounded up to total
        return np.where(weights[items] > 0, items, -1)     # -1 = drawn again

    out = np.empty((len(users), n), dtype=np.int64)
    for lo in range(0, len(users), _ROWS_PER_CHUNK):
        rows = users[lo:lo + _ROWS_PER_CHUNK]
        chosen, pending = _successive_draws(draw, seen, rows, n)
        for i in pending:             # rejection gave up (allowed mass tiny): draw exactly
            chosen[i] = _exact_draw(rng, weights, seen.items_of(rows[i]), chosen[i], n)
        out[lo:lo + len(rows)] = chosen
    return out


class _SeenItems:
    """Membership of (user row, item) in the user's sequence, by a sorted key array."""

    def __init__(self, data: SequenceData):
        self.n_items = data.n_items
        rows = np.repeat(np.arange(data.n_users, dtype=np.int64), data.lengths)
        keys = np.sort(rows * data.n_items + data.items)
        self.keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else keys  # distinct
        self.data = data

    def contains(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool, shape of `items`: is items[r, j] in the sequence of user rows[r]?"""
        q = rows[:, None] * self.n_items + items
        at = np.minimum(np.searchsorted(self.keys, q), len(self.keys) - 1)
        return self.keys[at] == q if len(self.keys) else np.zeros(q.shape, bool)

    def distinct_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(user row, item) of every distinct pair."""
        return self.keys // self.n_items, self.keys % self.n_items

    def items_of(self, row: int) -> np.ndarray:
        d = self.data
        return np.unique(d.items[d.offsets[row]:d.offsets[row + 1]])


def _check_enough_items(data, users, weights, seen: _SeenItems, n: int, mode: str) -> None:
    """Every user needs n drawable items (positive weight) outside its sequence."""
    drawable = weights > 0
    user_of, item_of = seen.distinct_items()
    seen_drawable = np.bincount(user_of[drawable[item_of]], minlength=data.n_users)
    free = int(drawable.sum()) - seen_drawable[users]
    short = np.flatnonzero(free < n)
    if short.size:
        u = int(users[short[0]])
        raise ValueError(f"{mode}: user {data.user_ids[u]!r} has only {int(free[short[0]])} "
                         f"drawable items outside its sequence, {n} negatives needed "
                         f"({short.size} such users); this dataset is too small for {mode}")


def _first_occurrence(a: np.ndarray) -> np.ndarray:
    """bool like a [R, m]: True where a[r, j] does not occur in a[r, :j]."""
    order = np.argsort(a, axis=1, kind="stable")          # equal values keep column order
    s = np.take_along_axis(a, order, axis=1)
    first_sorted = np.ones(a.shape, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first


def _successive_draws(draw, seen: _SeenItems, rows: np.ndarray, n: int):
    """Fill each row with n distinct unseen items, in draw order, by rounds of rejection.

    Returns chosen [R, n] (-1 = not filled) and the row indices still short after _ROUNDS."""
    chosen = np.full((len(rows), n), -1, dtype=np.int64)
    pending = np.arange(len(rows))
    for _ in range(_ROUNDS):
        if not pending.size:
            break
        new = draw((len(pending), n))                                      # (P, n)
        new[(new > 0) & seen.contains(rows[pending], new)] = -1
        pool = np.concatenate([chosen[pending], new], axis=1)              # (P, 2n) kept first
        keep = _first_occurrence(pool) & (pool > 0)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :n]            # kept, in pool order
        filled = np.take_along_axis(pool, order, axis=1)
        n_kept = keep.sum(axis=1)
        filled[np.arange(n)[None, :] >= n_kept[:, None]] = -1
        chosen[pending] = filled
        pending = pending[n_kept < n]
    return chosen, pending


def _exact_draw(rng, weights, seen_items, chosen_row, n):
    """The rest of one row by numpy's weighted choice without replacement."""
    have = chosen_row[chosen_row > 0]
    allowed = np.setdiff1d(np.flatnonzero(weights > 0), np.concatenate([seen_items, have]))
    p = weights[allowed] / weights[allowed].sum()
    rest = rng.choice(allowed, size=n - len(have), replace=False, p=p)
    return np.concatenate([have, rest])


# --- the file beside the processed data ---------------------------------------------------

def write_negatives(dataset_dir: str | Path, mode: str, seed: int) -> Path:
    """Draw the valid and test negatives of a processed dataset and write
    `{dataset_dir}/negatives_{mode}.parquet` (atomically); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = load_sequence_data(dataset_dir)
    user_ids, splits, lists = [], [], []
    for split in SPLITS:
        users, _ = eval_targets(data, split)
        negatives = draw_negatives(data, split, mode, N_NEGATIVES, seed)
        user_ids.append(data.user_ids[users].astype(str))
        splits.append(np.full(len(users), split))
        lists.append(negatives.astype(np.int32))
    flat = np.concatenate([x.reshape(-1) for x in lists])
    n_rows = sum(len(x) for x in lists)
    offsets = (np.arange(n_rows + 1) * N_NEGATIVES).astype(np.int32)
    table = pa.table({
        "user_id": pa.array(np.concatenate(user_ids), pa.string()),
        "split": pa.array(np.concatenate(splits), pa.string()),
        "negatives": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int32())),
    }).replace_schema_metadata({"recbench": json.dumps({"mode": mode, "seed": int(seed),
                                                        "n": N_NEGATIVES})})
    path = negatives_path(dataset_dir, mode)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_negatives(dataset_dir: str | Path, mode: str, data: SequenceData) -> dict:
    """{"valid": int64 [n_valid_users, n], "test": [n_test_users, n]} from
    `negatives_{mode}.parquet`, rows aligned with `eval_targets(data, split)` and checked
    against `data` (every user once, item ids in range, never the target nor a seen item)."""
    import pyarrow.parquet as pq

    path = negatives_path(dataset_dir, mode)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; train.eval_mode {mode!r} ranks targets "
                                "among these stored negatives (the negatives rule writes it "
                                "with recbench.data.sampling.write_negatives)")
    table = pq.read_table(path)
    missing = sorted({"user_id", "split", "negatives"} - set(table.column_names))
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    frame = table.select(["user_id", "split", "negatives"]).to_pandas()
    seen = _SeenItems(data)
    out = {}
    for split in SPLITS:
        users, _ = eval_targets(data, split)
        rows = frame[frame["split"] == split].set_index("user_id")["negatives"]
        expected = data.user_ids[users].astype(str)
        if not rows.index.is_unique:
            dup = rows.index[rows.index.duplicated()][0]
            raise ValueError(f"{path}: user {str(dup)!r} has two {split} rows")
        absent = np.setdiff1d(expected, rows.index.to_numpy(dtype=str))
        extra = np.setdiff1d(rows.index.to_numpy(dtype=str), expected)
        if absent.size or extra.size:
            raise ValueError(f"{path}: {split} users do not match the processed data "
                             f"({absent.size} missing, e.g. {absent[:3].tolist()}; "
                             f"{extra.size} unknown, e.g. {extra[:3].tolist()}); "
                             "rewrite the file from this dataset")
        lists = rows.loc[expected].to_numpy()
        lengths = {len(x) for x in lists}
        if len(lengths) > 1:
            raise ValueError(f"{path}: {split} rows have different lengths {sorted(lengths)}")
        negatives = np.stack(lists).astype(np.int64) if len(lists) else np.zeros((0, 0), int)
        bad = (negatives < 1) | (negatives >= data.n_items)
        if negatives.size:
            bad |= seen.contains(users, negatives)
        if bad.any():
            r, j = np.argwhere(bad)[0]
            raise ValueError(f"{path}: {split} negatives of user {str(expected[r])!r} include item "
                             f"{int(negatives[r, j])}, outside 1..{data.n_items - 1} or in the "
                             "user's own sequence; rewrite the file from this dataset")
        out[split] = negatives
    return out
