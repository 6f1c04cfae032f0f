"""Full-ranking top-k metrics: Hit, NDCG and MRR at k, one relevant item per user.

Protocol (RecBole's full sort, the reference log's eval_args; docs/fidelity.md): every item id 1..n_items-1 is a candidate;
column 0 of `scores` is the padding item and is never ranked; items already in the user's
history are NOT removed unless an `exclude` mask is given (RecBole's sequential full sort
does not mask history).

With exactly one relevant item (the leave-one-out target) at 1-based rank r:

    hit@k  = 1            if r <= k else 0
    ndcg@k = 1 / log2(r + 1)  if r <= k else 0   (ideal DCG is 1)
    mrr@k  = 1 / r        if r <= k else 0

Tie policy: pessimistic. Every other candidate whose score EQUALS the target's is counted as
ranked above it, so rank = 1 + #{candidates j != target : score_j >= score_target}. A model
cannot gain from ties: a constant scorer gets rank n_items - 1 (the last place). RecBole
instead ranks with `torch.topk`, whose order among equal scores is unspecified; the two agree
whenever scores have no ties with the target (the usual case with float scores).

`target_ranks` returns the per-user ranks (saved with each run so that significance tests can
pair users); `metrics_from_ranks` turns ranks into the mean metrics; `full_ranking_metrics` does
both. `sampled_target_ranks` ranks the target among itself and its sampled negatives instead
(train.eval_mode uni100 / pop100, recbench/data/sampling.py), with the same tie rule.
"""
from __future__ import annotations

import torch

# Bound the size of the boolean comparison matrix: users are processed in chunks so that
# a chunk holds at most this many (user, item) cells.
_CELLS_PER_CHUNK = 1 << 25


def target_ranks(scores: torch.Tensor, targets: torch.Tensor,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each user's target among the candidate items, [U] long.

    scores  [U, n_items] float; column 0 (padding) is never a candidate.
    targets [U] long in 1..n_items-1.
    exclude optional bool [U, n_items]: True = remove this item from the user's ranking.
    Ties with the target's score count against the target (see module docstring).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [U, n_items], got shape {tuple(scores.shape)}")
    n_users, n_items = scores.shape
    if targets.shape != (n_users,):
        raise ValueError(f"targets must be [U]={n_users}, got shape {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be an integer tensor, got {targets.dtype}")
    targets = targets.to(device=scores.device, dtype=torch.long)
    if n_users and (targets.min() < 1 or targets.max() >= n_items):
        bad = targets[(targets < 1) | (targets >= n_items)][0].item()
        raise ValueError(f"target item {bad} is not a rankable item id (1..{n_items - 1}); "
                         "0 is the padding id")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: the model diverged or a score is undefined")
    if exclude is not None:
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(f"exclude must be a bool tensor of shape {tuple(scores.shape)}, "
                             f"got {exclude.dtype} {tuple(exclude.shape)}")
        exclude = exclude.to(scores.device)
        hit_excluded = exclude.gather(1, targets[:, None]).squeeze(1)
        if hit_excluded.any():
            user = int(hit_excluded.nonzero()[0, 0])
            raise ValueError(f"user row {user}: target item {int(targets[user])} is excluded "
                             "from ranking by the exclude mask")

    ranks = torch.empty(n_users, dtype=torch.long, device=scores.device)
    chunk = max(1, _CELLS_PER_CHUNK // max(n_items, 1))
    for lo in range(0, n_users, chunk):
        s = scores[lo:lo + chunk]                                   # (C, n_items)
        t = targets[lo:lo + chunk]                                  # (C,)
        target_score = s.gather(1, t[:, None])                      # (C, 1)
        above = s >= target_score                                   # (C, n_items); ties count
        above[:, 0] = False                                         # padding is never ranked
        if exclude is not None:
            above &= ~exclude[lo:lo + chunk]
        # `above` includes the target itself (score == own score), so the count is the rank.
        ranks[lo:lo + chunk] = above.sum(dim=1)
    return ranks


def sampled_target_ranks(scores: torch.Tensor, targets: torch.Tensor,
                         negatives: torch.Tensor) -> torch.Tensor:
    """1-based rank of each user's target among itself and its sampled negatives, [U] long.

    scores    [U, n_items] float (only the target's and the negatives' columns are read).
    targets   [U] long; negatives [U, n] long item ids, distinct per row, never the target
              (recbench/data/sampling.py draws them).
    The tie rule of `target_ranks`: rank = 1 + #{negatives j : score_j >= score_target}, so
    this equals `target_ranks` with every item but the 1 + n candidates excluded.
    """
    n_users, n_items = scores.shape
    if targets.shape != (n_users,) or negatives.dim() != 2 or negatives.size(0) != n_users:
        raise ValueError(f"need targets [U] and negatives [U, n] for scores [U={n_users}, "
                         f"n_items], got {tuple(targets.shape)} and {tuple(negatives.shape)}")
    targets = targets.to(device=scores.device, dtype=torch.long)
    negatives = negatives.to(device=scores.device, dtype=torch.long)
    if negatives.numel() and (negatives.min() < 1 or negatives.max() >= n_items):
        raise ValueError(f"negative item ids must be in 1..{n_items - 1}; 0 is the padding id")
    clash = (negatives == targets[:, None]).any(dim=1)
    if clash.any():
        user = int(clash.nonzero()[0, 0])
        raise ValueError(f"user row {user}: its target item {int(targets[user])} is among its "
                         "negatives")
    target_score = scores.gather(1, targets[:, None])                 # (U, 1)
    negative_score = scores.gather(1, negatives)                      # (U, n)
    if torch.isnan(target_score).any() or torch.isnan(negative_score).any():
        raise ValueError("scores contain NaN: the model diverged or a score is undefined")
    return 1 + (negative_score >= target_score).sum(dim=1)           # ties count against


def per_user_metric(ranks: torch.Tensor, name: str) -> torch.Tensor:
    """Each user's value of `name` ('hit@10', 'ndcg@5', 'mrr@10', ...) from 1-based ranks [U]:
    float64 [U]. Their mean is the reported metric; the values themselves are what bootstrap
    intervals and paired tests need."""
    metric, _, k = name.partition("@")
    if metric not in ("hit", "ndcg", "mrr") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric must be hit|ndcg|mrr@k with a positive integer k, got {name!r}")
    ranks = ranks.to(torch.float64)
    within = ranks <= int(k)
    if metric == "hit":
        return within.double()
    gain = 1.0 / torch.log2(ranks + 1) if metric == "ndcg" else 1.0 / ranks
    return torch.where(within, gain, 0.0)


def metrics_from_ranks(ranks: torch.Tensor, ks=(5, 10)) -> dict[str, float]:
    """Mean hit@k, ndcg@k, mrr@k over users from 1-based ranks [U]."""
    if ranks.numel() == 0:
        raise ValueError("no users to evaluate (empty rank tensor)")
    for k in ks:
        if int(k) != k or k < 1:
            raise ValueError(f"cut-off k must be a positive integer, got {k!r}")
    return {f"{m}@{k}": per_user_metric(ranks, f"{m}@{int(k)}").mean().item()
            for k in ks for m in ("hit", "ndcg", "mrr")}


def full_ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, ks=(5, 10),
                         exclude: torch.Tensor | None = None) -> dict[str, float]:
    """Mean over users of hit@k, ndcg@k, mrr@k for each k (keys like 'ndcg@10').

    See `target_ranks` for the inputs and the tie policy; use it directly for per-user ranks.
    """
    return metrics_from_ranks(target_ranks(scores, targets, exclude), ks)

