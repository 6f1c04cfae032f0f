"""Slow, plain-Python restatements of RecBole 1.2.1's data steps, for the data tests only.

Written from recbole/data/dataset/dataset.py and sequential_dataset.py, one row at a time
with Counters, dicts and Python's (stable) `sorted`, to check the vectorised pipeline in
recbench/data/protocol.py against something that shares none of its code.
"""
from collections import Counter

import numpy as np


def recbole_filter(rows, user_min=None, user_max=None, item_min=None, item_max=None):
    """`_filter_by_inter_num`: rows = [(user, item, ...)] in file order -> kept rows, rounds."""
    def outside(n, lo, hi):
        return (lo is not None and n < lo) or (hi is not None and n > hi)

    rows = list(rows)
    user_on = user_min is not None or user_max is not None
    item_on = item_min is not None or item_max is not None
    rounds = 0
    while True:
        users = Counter(r[0] for r in rows) if user_on else Counter()
        items = Counter(r[1] for r in rows) if item_on else Counter()
        ban_users = {u for u, n in users.items() if outside(n, user_min, user_max)}
        ban_items = {i for i, n in items.items() if outside(n, item_min, item_max)}
        if not ban_users and not ban_items:
            return rows, rounds
        rounds += 1
        rows = [r for r in rows if r[0] not in ban_users and r[1] not in ban_items]


def recbole_sequences(rows, time_key):
    """Remap + per-user stable sort: rows = [(user, item, timestamp)] after filtering.

    Returns {user token: [item ids in RecBole's chronological order]}, ids from 1 in order of
    first appearance.
    """
    item_id, user_order = {}, {}
    for u, i, _ in rows:
        item_id.setdefault(i, len(item_id) + 1)
        user_order.setdefault(u, len(user_order))
    ts = [float(t) for _, _, t in rows]
    lo, hi = min(ts), max(ts)

    def key(t):
        if time_key == "exact":
            return t
        if time_key == "float32":
            return float(np.float32(t))
        return 1.0 if hi == lo else float(np.float32((t - lo) / (hi - lo)))

    ordered = sorted(range(len(rows)), key=lambda r: (user_order[rows[r][0]], key(ts[r])))
    seqs = {u: [] for u in user_order}
    for r in ordered:
        seqs[rows[r][0]].append(item_id[rows[r][1]])
    return seqs


def recbole_leave_one_out(n):
    """Augmentation + `_split_index_by_leave_one_out(leave_one_num=2)` for one user of n rows.

    Returns the target positions of (train, valid, test) examples.
    """
    targets = list(range(1, n))       # example k predicts position k from positions < k
    legal = min(2, len(targets) - 1)
    pr = len(targets) - legal
    parts = [targets[:pr], [], []]
    for j in range(legal):            # next_index[-legal + j]
        parts[3 - legal + j].append(targets[pr + j])
    return parts
