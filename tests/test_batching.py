"""recbench.data.batching: RecBole's leave-one-out split and batch gathers vs explicit Python loops."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from recbench.data.batching import (
    SequenceData,
    history_batch,
    load_sequence_data,
    make_split,
    split_counts,
    user_start_of,
    window_batch,
)


def _recbole_split(sequences, max_len):
    """Plain-loop transcription of RecBole 1.2.1: data_augmentation makes one example per
    target position (history = up to max_len previous items), then leave-one-out puts
    min(2, count-1) of each user's examples into valid/test. Returns
    {split: [(user, history list, target)]}."""
    out = {"train": [], "valid": [], "test": []}
    for u, seq in enumerate(sequences):
        examples = [(u, seq[max(0, t - max_len):t], seq[t]) for t in range(1, len(seq))]
        legal = min(2, len(examples) - 1) if examples else 0
        pr = len(examples) - legal
        out["train"] += examples[:pr]
        held = examples[pr:]
        if legal == 2:
            out["valid"].append(held[0])
            out["test"].append(held[1])
        elif legal == 1:
            out["test"].append(held[0])
    return out


SEQS = [[1, 2, 3, 4, 5, 6, 7], [3, 1], [2, 5, 4], [7], [4, 4, 2, 6], [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]]


def test_split_counts_small_users():
    n_train, has_valid, has_test = split_counts(np.array([1, 2, 3, 4, 10]))
    assert n_train.tolist() == [0, 1, 1, 1, 7]
    assert has_valid.tolist() == [False, False, False, True, True]   # n=3: no valid target
    assert has_test.tolist() == [False, False, True, True, True]


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_prefix_and_eval_batches_match_recbole_loop(max_len):
    data = SequenceData.from_lists(SEQS)
    split = make_split(data, max_len)
    want = _recbole_split(SEQS, max_len)
    items, offsets = torch.from_numpy(data.items), torch.from_numpy(data.offsets)

    pos = torch.from_numpy(split.train_pos)
    seq, seq_len = history_batch(items, user_start_of(offsets, pos), pos, max_len)
    got = [(seq[b, :seq_len[b]].tolist(), int(items[pos[b]])) for b in range(len(pos))]
    assert got == [(h, t) for _, h, t in want["train"]]
    assert seq.shape == (len(pos), max_len)
    assert all((seq[b, seq_len[b]:] == 0).all() for b in range(len(pos)))   # right padding

    for name, pos_np, user_np in (("valid", split.valid_pos, split.valid_user),
                                  ("test", split.test_pos, split.test_user)):
        pos = torch.from_numpy(pos_np)
        seq, seq_len = history_batch(items, offsets[torch.from_numpy(user_np)], pos, max_len)
        got = [(int(u), seq[b, :seq_len[b]].tolist(), int(items[pos[b]]))
               for b, u in enumerate(user_np)]
        assert got == [(u, h, t) for u, h, t in want[name]]


@pytest.mark.parametrize("max_len", [1, 2, 3, 4, 100])
def test_windows_cover_each_training_target_once(max_len):
    data = SequenceData.from_lists(SEQS)
    split = make_split(data, max_len)
    items = torch.from_numpy(data.items)
    seq, seq_len, targets = window_batch(items, torch.from_numpy(split.window_start),
                                         torch.from_numpy(split.window_len), max_len)
    assert (seq_len >= 1).all() and (seq_len <= max_len).all()
    # (global target position) of every CE term == the training targets, each once.
    idx = torch.from_numpy(split.window_start)[:, None] + torch.arange(max_len) + 1
    term_pos = idx[targets > 0]
    assert sorted(term_pos.tolist()) == sorted(split.train_pos.tolist())
    # inputs are the item before each target; padding beyond the window length
    assert torch.equal(seq[targets > 0], items[term_pos - 1])
    assert (seq[targets == 0] == 0).all()
    # aligned at the end: each user's most recent window ends at its last training target
    offsets = data.offsets
    n_train = split_counts(data.lengths)[0]
    ends = split.window_start + split.window_len           # global position of the last target
    for u in range(data.n_users):
        if n_train[u]:
            assert offsets[u] + n_train[u] in set(ends.tolist())


def test_long_user_windows_are_full_except_the_earliest():
    data = SequenceData.from_lists([list(range(1, 13))])      # n=12: 9 training targets
    split = make_split(data, 4)
    windows = sorted(zip(split.window_start.tolist(), split.window_len.tolist()))
    assert windows == [(0, 1), (1, 4), (5, 4)]


def _write_dataset(tmp_path, sequences, n_items, chunks=2):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = [pa.table({"user_id": [f"u{i}" for i in range(len(part))],
                      "item_index": pa.array(part, type=pa.list_(pa.int32()))})
            for part in np.array_split(np.array(sequences, dtype=object), chunks)]
    pq.write_table(pa.concat_tables(rows), tmp_path / "sequences.parquet", row_group_size=2)
    (tmp_path / "stats.json").write_text(json.dumps({"n_items": n_items}))


def test_load_sequences_from_parquet(tmp_path):
    _write_dataset(tmp_path, SEQS, n_items=7)
    data = load_sequence_data(tmp_path)
    assert data.n_items == 8                                   # padding id added
    assert data.offsets.tolist() == [0] + np.cumsum([len(s) for s in SEQS]).tolist()
    assert data.items.tolist() == [i for s in SEQS for i in s]
    assert data.items.dtype == np.int64 and data.n_users == len(SEQS)


def test_load_sequences_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="sequences.parquet"):
        load_sequence_data(tmp_path)
    _write_dataset(tmp_path / "bad", SEQS, n_items=6)           # item 7 > n_items
    with pytest.raises(ValueError, match=r"user row 0 \('u0'\) has item id 7, outside 1..6"):
        load_sequence_data(tmp_path / "bad")
    _write_dataset(tmp_path / "nostats", SEQS, n_items=7)
    (tmp_path / "nostats" / "stats.json").write_text("{}")
    with pytest.raises(ValueError, match="stats.json: cannot read integer key 'n_items'"):
        load_sequence_data(tmp_path / "nostats")
