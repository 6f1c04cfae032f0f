"""recbench.evaluation.metrics against hand-computed cases and an independent plain-Python ranking."""
import math

import numpy as np
import pytest
import torch

from recbench.evaluation.metrics import (
    full_ranking_metrics,
    metrics_from_ranks,
    per_user_metric,
    target_ranks,
)


def test_hand_computed_ranks_and_metrics():
    # 7 ids: column 0 is padding with the highest score, which must not count.
    scores = torch.tensor([
        [9.0, 0.1, 0.9, 0.3, 0.2, 0.8, 0.7],   # target 2 is the best candidate -> rank 1
        [9.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # target 6 is the worst -> rank 6
        [9.0, 0.1, 0.2, 0.9, 0.8, 0.7, 0.6],   # target 6 beaten by 3, 4, 5 -> rank 4
    ])
    targets = torch.tensor([2, 6, 6])
    assert target_ranks(scores, targets).tolist() == [1, 6, 4]

    m = full_ranking_metrics(scores, targets, ks=(1, 5))
    # ranks 1, 6, 4: at k=1 only user 0 hits; at k=5 users 0 and 2 hit.
    assert m["hit@1"] == pytest.approx(1 / 3)
    assert m["hit@5"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(5)) / 3)
    assert m["mrr@1"] == pytest.approx(1 / 3)
    assert m["mrr@5"] == pytest.approx((1.0 + 1 / 4) / 3)
    assert set(m) == {"hit@1", "ndcg@1", "mrr@1", "hit@5", "ndcg@5", "mrr@5"}


def test_default_keys_and_cutoff_boundaries():
    # Rank exactly 5 hits @5 and @10; rank 6 misses @5 but hits @10; rank 11 misses both.
    ranks = torch.tensor([5, 6, 11])
    m = metrics_from_ranks(ranks)
    assert list(m) == ["hit@5", "ndcg@5", "mrr@5", "hit@10", "ndcg@10", "mrr@10"]
    assert m["hit@5"] == pytest.approx(1 / 3)
    assert m["hit@10"] == pytest.approx(2 / 3)
    assert m["ndcg@5"] == pytest.approx((1 / math.log2(6)) / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(6) + 1 / math.log2(7)) / 3)
    assert m["mrr@10"] == pytest.approx((1 / 5 + 1 / 6) / 3)


def test_ties_are_pessimistic():
    # Target 3 ties with items 1 and 4; item 2 is above: rank = 1 + 1 (above) + 2 (ties) = 4.
    scores = torch.tensor([[5.0, 0.5, 0.9, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, torch.tensor([3])).tolist() == [4]
    # A constant scorer puts the target last among the n_items - 1 real items.
    const = torch.zeros(4, 11)
    assert target_ranks(const, torch.tensor([1, 5, 9, 10])).tolist() == [10] * 4
    assert full_ranking_metrics(const, torch.tensor([1, 5, 9, 10]))["hit@5"] == 0.0


def test_padding_column_is_never_ranked():
    scores = torch.tensor([[100.0, 1.0, 2.0, 3.0]])
    assert target_ranks(scores, torch.tensor([3])).tolist() == [1]
    # Even when padding ties with the target it is not counted.
    scores = torch.tensor([[3.0, 1.0, 2.0, 3.0]])
    assert target_ranks(scores, torch.tensor([3])).tolist() == [1]
    with pytest.raises(ValueError, match="padding"):
        target_ranks(scores, torch.tensor([0]))


def test_exclusion_mask_removes_items():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6],
                           [0.0, 0.9, 0.8, 0.7, 0.6]])
    targets = torch.tensor([4, 4])
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[0, [1, 3]] = True          # user 0's history: items 1 and 3 are removed
    assert target_ranks(scores, targets).tolist() == [4, 4]
    assert target_ranks(scores, targets, exclude).tolist() == [2, 4]
    m = full_ranking_metrics(scores, targets, ks=(2,), exclude=exclude)
    assert m["hit@2"] == pytest.approx(0.5)
    assert m["mrr@2"] == pytest.approx(0.25)

    exclude[1, 4] = True               # excluding the target itself is an error
    with pytest.raises(ValueError, match="user row 1: target item 4 is excluded"):
        target_ranks(scores, targets, exclude)


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="rankable"):
        target_ranks(torch.zeros(1, 3), torch.tensor([3]))
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([2]))
    with pytest.raises(ValueError, match="shape"):
        target_ranks(torch.zeros(2, 3), torch.tensor([1]))
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(torch.tensor([], dtype=torch.long))


def _reference_metrics(scores: np.ndarray, targets: np.ndarray, exclude, ks):
    """Independent implementation: sort candidates per user with Python's sort, target placed
    after every item of equal score (pessimistic), then the textbook formulas."""
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hit", "ndcg", "mrr")}
    ranks = []
    for u in range(scores.shape[0]):
        t = int(targets[u])
        cands = [j for j in range(1, scores.shape[1])
                 if exclude is None or not exclude[u, j]]
        # sort by score descending; among equal scores the target goes last
        order = sorted(cands, key=lambda j: (-scores[u, j], j == t))
        rank = order.index(t) + 1
        ranks.append(rank)
        for k in ks:
            if rank <= k:
                sums[f"hit@{k}"] += 1
                sums[f"ndcg@{k}"] += 1 / math.log2(rank + 1)
                sums[f"mrr@{k}"] += 1 / rank
    return ranks, {key: v / scores.shape[0] for key, v in sums.items()}


@pytest.mark.parametrize("with_ties", [False, True])
def test_matches_independent_loop_on_random_scores(with_ties):
    rng = np.random.default_rng(7)
    n_users, n_items = 60, 40
    scores = rng.normal(size=(n_users, n_items))
    if with_ties:
        scores = np.round(scores, 0)            # many equal scores
    targets = rng.integers(1, n_items, size=n_users)
    exclude = rng.random((n_users, n_items)) < 0.2
    exclude[np.arange(n_users), targets] = False
    ks = (1, 5, 10, 20)
    for mask in (None, exclude):
        want_ranks, want = _reference_metrics(scores, targets, mask, ks)
        got_ranks = target_ranks(torch.tensor(scores), torch.tensor(targets),
                                 None if mask is None else torch.tensor(mask))
        assert got_ranks.tolist() == want_ranks
        got = full_ranking_metrics(torch.tensor(scores), torch.tensor(targets), ks,
                                   None if mask is None else torch.tensor(mask))
        assert got == pytest.approx(want, abs=1e-12)


def test_chunked_ranking_matches_unchunked(monkeypatch):
    import recbench.evaluation.metrics as metrics

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(50, 30, generator=g)
    targets = torch.randint(1, 30, (50,), generator=g)
    whole = target_ranks(scores, targets)
    monkeypatch.setattr(metrics, "_CELLS_PER_CHUNK", 7 * 30)   # 7 users per chunk
    assert torch.equal(metrics.target_ranks(scores, targets), whole)


def test_per_user_metric_by_hand():
    ranks = torch.tensor([1, 3, 10, 11])
    assert per_user_metric(ranks, "hit@10").tolist() == [1.0, 1.0, 1.0, 0.0]
    assert per_user_metric(ranks, "mrr@5").tolist() == [1.0, 1 / 3, 0.0, 0.0]
    ndcg = per_user_metric(ranks, "ndcg@10").tolist()
    assert ndcg[:2] == [1.0, 0.5] and abs(ndcg[2] - 1 / math.log2(11)) < 1e-15 and ndcg[3] == 0.0
    with pytest.raises(ValueError, match="hit\\|ndcg\\|mrr@k"):
        per_user_metric(ranks, "recall@10")
