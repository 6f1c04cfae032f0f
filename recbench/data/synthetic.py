"""`synthetic`: the embedded default dataset, generated from a seed (no download).

Long user sequences with a known structure, so that an order-aware model has something to
find that a popularity ranking cannot:

  popularity   items have Zipf-like popularity p(i) ~ 1 / rank(i)^zipf_a
  tastes       items fall into `n_clusters` equal clusters; each user has `tastes` stable
               favourite clusters for the whole sequence (long-term interest)
  bursts       inside each cluster the items form a fixed random cycle; with probability
               `p_next` the next item is the cycle successor of the current one, so runs of
               related items follow each other in a learnable order (short-term interest),
               a few minutes apart
  otherwise    with probability `p_taste` an item from one of the user's clusters (by
               popularity within it), else an item from the global popularity

Every step is next-item predictable from the last item with probability about `p_next`,
while the most popular item is right far less often: a sequential model should reach a much
higher HR@10 than Popularity. A fraction `long_frac` of users get between 1,000 and
`max_len` interactions; the rest a log-normal length around `median_len`.

The output is a RecBole atomic file, so it goes through the same parser and preprocessing
as every real dataset.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from recbench.io import atomic_path

DEFAULTS = dict(n_users=600, n_items=500, n_clusters=25, tastes=3, median_len=90,
                sigma_len=0.8, min_len=20, long_frac=0.02, max_len=1500, p_next=0.5,
                p_taste=0.3, zipf_a=1.0, seed=2020)


def generate(n_users=600, n_items=500, n_clusters=25, tastes=3, median_len=90, sigma_len=0.8,
             min_len=20, long_frac=0.02, max_len=1500, p_next=0.5, p_taste=0.3, zipf_a=1.0,
             seed=2020) -> pd.DataFrame:
    """Interactions (user, item, timestamp) as a DataFrame of str tokens, in time order."""
    if n_items % n_clusters:
        raise ValueError(f"synthetic: n_items ({n_items}) must be a multiple of "
                         f"n_clusters ({n_clusters})")
    if not 0 <= p_next + p_taste <= 1:
        raise ValueError(f"synthetic: p_next + p_taste must be in [0, 1], "
                         f"got {p_next} + {p_taste}")
    rng = np.random.default_rng(seed)
    size = n_items // n_clusters

    # Items 0..n_items-1; cluster c holds items c*size .. (c+1)*size-1.
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf_a
    popularity = popularity[rng.permutation(n_items)]
    popularity /= popularity.sum()
    within = popularity.reshape(n_clusters, size)                  # (C, S)
    within_cdf = np.cumsum(within / within.sum(1, keepdims=True), axis=1)
    successor = np.empty(n_items, dtype=np.int64)                  # the burst cycles
    for c in range(n_clusters):
        cycle = c * size + rng.permutation(size)
        successor[cycle] = np.roll(cycle, -1)

    lengths = np.exp(rng.normal(np.log(median_len), sigma_len, n_users)).round()
    lengths = np.clip(lengths, min_len, max_len).astype(np.int64)
    long_users = rng.random(n_users) < long_frac
    lengths[long_users] = rng.integers(1000, max_len + 1, long_users.sum())
    user_tastes = np.stack([rng.choice(n_clusters, tastes, replace=False)
                            for _ in range(n_users)])               # (U, tastes)

    # One vectorised step for all users still active at step t.
    items = np.zeros((n_users, lengths.max()), dtype=np.int64)     # (U, T)
    times = np.zeros((n_users, lengths.max()), dtype=np.int64)
    clock = 10**9 + rng.integers(0, 2 * 365 * 86400, n_users)      # seconds, from ~2001
    current = rng.choice(n_items, n_users, p=popularity)
    for t in range(lengths.max()):
        active = np.flatnonzero(lengths > t)
        if t > 0:
            u = rng.random(len(active))
            nxt = successor[current[active]]                        # burst: cycle successor
            cluster = user_tastes[active, rng.integers(0, tastes, len(active))]
            pick = (within_cdf[cluster] < rng.random(len(active))[:, None]).sum(1)
            taste = cluster * size + np.minimum(pick, size - 1)     # a favourite cluster
            pop = rng.choice(n_items, len(active), p=popularity)   # global popularity
            chosen = np.where(u < p_next, nxt, np.where(u < p_next + p_taste, taste, pop))
            current[active] = chosen
            gap = np.where(u < p_next, rng.exponential(180, len(active)),
                           rng.exponential(86400, len(active)))
            clock[active] += 1 + gap.astype(np.int64)
        items[active, t] = current[active]
        times[active, t] = clock[active]

    mask = np.arange(items.shape[1]) < lengths[:, None]              # (U, T)
    user = np.broadcast_to(np.arange(n_users)[:, None], items.shape)[mask]
    df = pd.DataFrame({"user": user + 1, "item": items[mask] + 1, "timestamp": times[mask]})
    df = df.sort_values("timestamp", kind="stable", ignore_index=True)  # a log, in time order
    df["user"] = df["user"].astype(str)
    df["item"] = df["item"].astype(str)
    return df


def write_synthetic(path, **params) -> dict:
    """Generate with `params` (DEFAULTS for the rest) and write a RecBole atomic file."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"synthetic: unknown parameter(s) {unknown}; known: {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **params}
    df = generate(**params)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        out = df.assign(rating=1)[["user", "item", "rating", "timestamp"]]
        out.to_csv(f, sep="\t", header=False, index=False)
    return params
