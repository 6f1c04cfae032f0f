"""recbench.data.sampling (negatives for uni100 / pop100 evaluation) and metrics'
sampled_target_ranks, on hand-checkable data."""
import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from toy_models import toy_data, write_processed

from recbench.data import sampling
from recbench.data.batching import SequenceData, make_split
from recbench.evaluation.metrics import sampled_target_ranks, target_ranks


def sequence_of(data, u):
    return set(data.items[data.offsets[u]:data.offsets[u + 1]].tolist())


# --- the draw -------------------------------------------------------------------------------

def test_training_popularity_by_hand():
    # user0 [1,2,3,4,5]: 4 valid, 5 test -> train part [1,2,3]
    # user1 [2,3,3,4,1]: 4 valid, 1 test -> [2,3,3]
    # user2 [5,3,2]:     n = 3 has a test target only (2) -> [5,3]
    data = SequenceData.from_lists([[1, 2, 3, 4, 5], [2, 3, 3, 4, 1], [5, 3, 2]], n_items=7)
    assert sampling.training_popularity(data).tolist() == [0, 1, 2, 4, 0, 1, 0]


def test_eval_targets_follow_the_leave_one_out_split():
    data = SequenceData.from_lists([[1, 2, 3, 4, 5], [2, 3], [5, 3, 2]], n_items=7)
    users, targets = sampling.eval_targets(data, "valid")
    assert (users.tolist(), targets.tolist()) == ([0], [4])
    users, targets = sampling.eval_targets(data, "test")
    assert (users.tolist(), targets.tolist()) == ([0, 2], [5, 2])
    data = toy_data()                       # the engine's order: make_split's users
    split = make_split(data, max_len=5)
    for users, pos, which in ((split.valid_user, split.valid_pos, "valid"),
                              (split.test_user, split.test_pos, "test")):
        got_users, got_targets = sampling.eval_targets(data, which)
        assert np.array_equal(got_users, users)
        assert np.array_equal(got_targets, data.items[pos])


def test_negatives_are_exactly_the_unseen_items_when_there_are_just_enough():
    # items 1..7; user0 has seen {1,2,3,4} -> only 5, 6, 7 are allowed; user1 seen {4,5,6,7}.
    data = SequenceData.from_lists([[1, 2, 3, 4], [7, 6, 5, 4]], n_items=8)
    for split in ("valid", "test"):
        neg = sampling.draw_negatives(data, split, "uni100", n=3, seed=1)
        assert [sorted(r) for r in neg.tolist()] == [[5, 6, 7], [1, 2, 3]]
    with pytest.raises(ValueError, match=r"user '0' has only 3 drawable items .* 4 negatives"):
        sampling.draw_negatives(data, "test", "uni100", n=4)


@pytest.mark.parametrize("rounds", [sampling._ROUNDS, 1, 0])   # 0: the exact fallback only
def test_negatives_avoid_target_and_history_are_distinct_and_deterministic(rounds, monkeypatch):
    monkeypatch.setattr(sampling, "_ROUNDS", rounds)
    data = toy_data(n_users=40, n_items=60)
    for mode in sampling.MODES:
        for split in sampling.SPLITS:
            neg = sampling.draw_negatives(data, split, mode, n=20, seed=7)
            users, targets = sampling.eval_targets(data, split)
            assert neg.shape == (len(users), 20)
            for u, t, row in zip(users, targets, neg.tolist()):
                assert len(set(row)) == 20 and t not in row
                assert not set(row) & sequence_of(data, u) and min(row) >= 1
            again = sampling.draw_negatives(data, split, mode, n=20, seed=7)
            other = sampling.draw_negatives(data, split, mode, n=20, seed=8)
            assert np.array_equal(neg, again) and not np.array_equal(neg, other)
    # valid and test get their own draws
    assert not np.array_equal(sampling.draw_negatives(data, "valid", "uni100", 20, 7)[:5],
                              sampling.draw_negatives(data, "test", "uni100", 20, 7)[:5])


def _skewed(n_users=4000):
    """Items 1..6 (7 with padding); every user is [x, y, x, y] over one of three pairs, so its
    sequence forbids two items and its training part is [x, y]: training popularity is about
    (5, 6): 60%, (1, 2): 30%, (3, 4): 10% of the users each."""
    rng = np.random.default_rng(0)
    pairs = [(5, 6)] * 6 + [(1, 2)] * 3 + [(3, 4)]
    return SequenceData.from_lists([[x, y, x, y] for x, y in
                                    (pairs[i] for i in rng.integers(len(pairs), size=n_users))],
                                   n_items=7)


def _within(observed, expected, n_trials, sigmas=5):
    sigma = np.sqrt(expected * (1 - expected / n_trials))
    return np.all(np.abs(observed - expected) < sigmas * sigma + 1)


@pytest.mark.parametrize("mode", ["pop100", "uni100"])
def test_one_negative_follows_the_popularity_of_the_allowed_items(mode):
    """With n = 1, user u draws item i with probability w_i / sum of w over u's allowed
    items (w = training popularity for pop100, 1 for uni100); summed over users that gives
    the expected count of each item, which the draw must match within 5 binomial sigmas."""
    data = _skewed()
    w = sampling.training_popularity(data).astype(float) if mode == "pop100" else np.ones(7)
    w[0] = 0
    assert mode == "uni100" or w[1] > 2 * w[3]                     # the set is skewed
    users, _ = sampling.eval_targets(data, "test")
    neg = sampling.draw_negatives(data, "test", mode, n=1, seed=0)[:, 0]
    expected = np.zeros(7)
    for u in users:
        allowed = np.array([i for i in range(1, 7) if i not in sequence_of(data, u)])
        expected[allowed] += w[allowed] / w[allowed].sum()
    observed = np.bincount(neg, minlength=7)
    assert observed[0] == 0 and _within(observed[1:], expected[1:], len(users)), (
        observed, expected)


@pytest.mark.parametrize("rounds", [sampling._ROUNDS, 1, 0])   # 0: the exact fallback only
@pytest.mark.parametrize("mode", ["pop100", "uni100"])
def test_three_distinct_negatives_are_successive_weighted_draws(mode, rounds, monkeypatch):
    """n = 3 distinct of the 4 items a (5, 6)-user may get: the chance that item i is the one
    left out, from a slow enumeration of every ordered draw (each pick proportional to w among
    the items not yet picked), must match the draw; pop100 leaves out item 3 or 4 (weight
    about 1/3 of 1 and 2's) far more often than 1 or 2. With fewer rejection rounds, the
    users left short are completed by the exact fallback, to the same distribution."""
    monkeypatch.setattr(sampling, "_ROUNDS", rounds)
    data = _skewed()
    users, _ = sampling.eval_targets(data, "test")
    big = [k for k, u in enumerate(users) if sequence_of(data, u) == {5, 6}]
    w = sampling.training_popularity(data).astype(float) if mode == "pop100" else np.ones(7)
    p_left_out = np.zeros(7)
    for order in itertools.permutations((1, 2, 3, 4), 3):
        p, rest = 1.0, [1, 2, 3, 4]
        for i in order:
            p *= w[i] / sum(w[j] for j in rest)
            rest.remove(i)
        p_left_out[rest[0]] += p
    neg = sampling.draw_negatives(data, "test", mode, n=3, seed=0)[big]
    observed = np.array([sum(i not in row for row in neg.tolist()) for i in range(7)])
    assert _within(observed[1:5], p_left_out[1:5] * len(big), len(big)), (observed, p_left_out)
    if mode == "pop100":
        assert p_left_out[3] > 2 * p_left_out[1]


# --- the file -------------------------------------------------------------------------------

def test_write_and_read_negatives(tmp_path):
    data = toy_data(n_users=60, n_items=130)
    write_processed(tmp_path / "toy", data)
    path = sampling.write_negatives(tmp_path / "toy", "uni100", seed=3)
    assert path == tmp_path / "toy" / "negatives_uni100.parquet"
    table = pq.read_table(path)
    assert table.schema.field("negatives").type == pa.list_(pa.int32())
    assert table.schema.field("user_id").type == pa.string()
    assert set(table.column("split").to_pylist()) == {"valid", "test"}
    got = sampling.read_negatives(tmp_path / "toy", "uni100", data)
    for split in sampling.SPLITS:
        assert np.array_equal(got[split], sampling.draw_negatives(data, split, "uni100", 100, 3))
    assert json.loads(table.schema.metadata[b"recbench"]) == {"mode": "uni100", "seed": 3,
                                                              "n": 100}


def test_read_negatives_refuses_a_file_that_does_not_fit_the_data(tmp_path):
    data = toy_data(n_users=60, n_items=130)
    with pytest.raises(FileNotFoundError, match=r"negatives_pop100\.parquet: missing"):
        sampling.read_negatives(tmp_path, "pop100", data)
    write_processed(tmp_path, data)
    path = sampling.write_negatives(tmp_path, "pop100", seed=0)
    frame = pq.read_table(path).to_pandas()
    user = frame.loc[0, "user_id"]
    u = list(data.user_ids).index(user)
    frame.at[0, "negatives"] = np.r_[data.items[data.offsets[u]], frame.loc[0, "negatives"][1:]]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    with pytest.raises(ValueError, match=rf"negatives of user '{user}' include item .* own "
                                         "sequence"):
        sampling.read_negatives(tmp_path, "pop100", data)
    pq.write_table(pa.Table.from_pandas(frame.iloc[1:], preserve_index=False), path)
    with pytest.raises(ValueError, match="users do not match the processed data"):
        sampling.read_negatives(tmp_path, "pop100", data)


# --- ranks among candidates -----------------------------------------------------------------

def test_sampled_target_ranks_by_hand():
    #                    pad   1    2    3    4    5
    scores = torch.tensor([[9., 0.5, 0.9, 0.5, 0.1, 0.7],
                           [9., 0.2, 0.1, 0.3, 0.4, 0.0]])
    targets = torch.tensor([1, 4])
    negatives = torch.tensor([[2, 3, 4], [1, 2, 5]])
    # user 0: 0.9 beats 0.5, 0.5 ties (counts against), 0.1 does not -> rank 3 (item 5 is
    # no candidate, the padding column never is); user 1: 0.4 beats all three -> rank 1
    assert sampled_target_ranks(scores, targets, negatives).tolist() == [3, 1]
    with pytest.raises(ValueError, match="target item 4 is among its negatives"):
        sampled_target_ranks(scores, targets, torch.tensor([[2, 3, 4], [4, 2, 5]]))
    with pytest.raises(ValueError, match="negative item ids must be in 1..5"):
        sampled_target_ranks(scores, targets, torch.tensor([[0, 3, 4], [1, 2, 5]]))


def test_sampled_ranks_equal_full_ranks_with_only_the_candidates_left():
    g = torch.Generator().manual_seed(0)
    n_users, n_items, n = 50, 40, 6
    scores = torch.randint(0, 5, (n_users, n_items), generator=g).float()     # many ties
    targets = torch.randint(1, n_items, (n_users,), generator=g)
    negatives = torch.stack([
        torch.tensor([i for i in torch.randperm(n_items - 1, generator=g).add(1).tolist()
                      if i != t][:n]) for t in targets.tolist()])
    keep = torch.zeros(n_users, n_items, dtype=torch.bool)
    keep.scatter_(1, negatives, True)
    keep[torch.arange(n_users), targets] = True
    assert torch.equal(sampled_target_ranks(scores, targets, negatives),
                       target_ranks(scores, targets, exclude=~keep))
