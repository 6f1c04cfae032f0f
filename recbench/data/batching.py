"""Training and evaluation batches from per-user item arrays, by index arithmetic.

All users' item ids live in ONE flat int64 array `items` (chronological within a user) with
`offsets` [U + 1]: user u owns items[offsets[u] : offsets[u+1]]. An example is never stored as
a materialised prefix: it is the int64 global position `p` of its target in `items`, and its
history is gathered on the fly as the (at most) `max_len` items before `p` of the same user.

RecBole's leave-one-out split (sequential_dataset.data_augmentation + dataset.
_split_index_by_leave_one_out), for a user with n items:
    n - 1 examples: targets at positions 1 .. n-1 (history = the items before the target);
    legal = min(2, n - 2) of them are held out:
        test  = position n-1   if legal >= 1
        valid = position n-2   if legal == 2
    train = positions 1 .. n-1-legal.
  n = 3: 1 train, no valid, 1 test.   n = 2: 1 train only.   n = 1: nothing.

Training modes:
  prefix    every training target is one example: history right-padded to max_len
            ([B, max_len], seq_len = history length). RecBole's prefix augmentation.
  sequence  each user's training sequence items[0 .. n-1-legal] is cut into windows of
            max_len inputs; window inputs items[w : w+L], targets items[w+1 : w+L+1] (every one
            a training target), 0 = no term. Windows are aligned at the END of the training
            sequence (the most recent window is full; only a user's earliest window is short),
            so each training target is predicted exactly once. With a causal model and
            sequences no longer than max_len this is the same sum of CE terms as `prefix`;
            for longer sequences a target early in a window sees fewer than max_len items.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recbench.data.protocol import split_counts  # noqa: F401  (re-exported: one place for the rule)


@dataclass
class SequenceData:
    """All users' chronological item-id sequences, flattened.

    items    int64 [N] remapped item ids 1..n_items-1 (0 = padding never appears)
    offsets  int64 [U + 1], offsets[0] = 0, non-decreasing
    user_ids [U] str (original user tokens)
    n_items  number of item ids INCLUDING padding 0 (the models' n_items)
    """
    items: np.ndarray
    offsets: np.ndarray
    user_ids: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, sequences, n_items: int | None = None, user_ids=None) -> "SequenceData":
        """Build from Python lists of item ids (tests, small examples)."""
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        items = np.array([i for s in sequences for i in s], dtype=np.int64)
        if n_items is None:
            n_items = int(items.max()) + 1 if items.size else 1
        if user_ids is None:
            user_ids = [str(u) for u in range(len(sequences))]
        data = cls(items, offsets, np.asarray(user_ids, dtype=object), n_items)
        data.validate("in-memory sequences")
        return data

    def validate(self, source: str) -> None:
        """Clear errors for malformed data; `source` names where it came from."""
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            raise ValueError(f"{source}: offsets must be 1-D and start at 0")
        if (np.diff(self.offsets) < 0).any() or self.offsets[-1] != len(self.items):
            raise ValueError(f"{source}: offsets must be non-decreasing and end at len(items)")
        if len(self.user_ids) != self.n_users:
            raise ValueError(f"{source}: {len(self.user_ids)} user ids for "
                             f"{self.n_users} sequences")
        if self.items.size:
            bad = np.flatnonzero((self.items < 1) | (self.items >= self.n_items))
            if bad.size:
                user = int(np.searchsorted(self.offsets, bad[0], side="right") - 1)
                raise ValueError(
                    f"{source}: user row {user} ({self.user_ids[user]!r}) has item id "
                    f"{int(self.items[bad[0]])}, outside 1..{self.n_items - 1} "
                    f"(n_items={self.n_items - 1} without padding)")


def load_sequence_data(dataset_dir: str | Path) -> SequenceData:
    """Read `sequences.parquet` (user_id, item_index) + `stats.json` (n_items) of a processed
    dataset with pyarrow: the flat item array and offsets come straight from the list column."""
    import pyarrow.parquet as pq

    dataset_dir = Path(dataset_dir)
    seq_path, stats_path = dataset_dir / "sequences.parquet", dataset_dir / "stats.json"
    for path in (seq_path, stats_path):
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing (run the preprocess rule for this dataset)")
    try:
        stats = json.loads(stats_path.read_text())
        n_items = int(stats["n_items"]) + 1          # stats.json counts items without padding
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{stats_path}: cannot read integer key 'n_items' ({err})") from err
    table = pq.read_table(seq_path, columns=["user_id", "item_index"])
    column = table.column("item_index").combine_chunks()
    if column.null_count:
        raise ValueError(f"{seq_path}: column 'item_index' has {column.null_count} null rows")
    offsets = column.offsets.to_numpy().astype(np.int64)
    items = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = offsets - offsets[0]                    # a sliced array's offsets need not start at 0
    user_ids = np.asarray(table.column("user_id").to_pylist(), dtype=object)
    data = SequenceData(items, offsets, user_ids, n_items)
    data.validate(str(seq_path))
    return data


# --- the leave-one-out split ------------------------------------------------------------
# The rule itself (legal = min(2, n - 2)) lives in ONE place: recbench.data.protocol.split_counts.

@dataclass
class Split:
    """Global target positions (int64 indices into `items`) of each split + example users.

    train_pos   [T] positions of training targets (prefix-mode examples)
    valid_pos, valid_user, test_pos, test_user: one held-out target per evaluated user
    window_start, window_len: sequence-mode windows (global position of the first input, length)
    """
    train_pos: np.ndarray
    valid_pos: np.ndarray
    valid_user: np.ndarray
    test_pos: np.ndarray
    test_user: np.ndarray
    window_start: np.ndarray
    window_len: np.ndarray


def make_split(data: SequenceData, max_len: int) -> Split:
    """RecBole's leave-one-out split and sequence-mode windows, vectorised over users."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    start = data.offsets[:-1]
    n_train, has_valid, has_test = split_counts(data.lengths)

    # Training targets: positions start + 1 .. start + n_train of each user.
    user_of = np.repeat(np.arange(data.n_users), n_train)
    first = np.cumsum(n_train) - n_train                  # index of each user's first example
    rank_in_user = np.arange(int(n_train.sum())) - np.repeat(first, n_train)
    train_pos = start[user_of] + 1 + rank_in_user

    valid_user = np.flatnonzero(has_valid)
    test_user = np.flatnonzero(has_test)
    valid_pos = data.offsets[valid_user + 1] - 2                   # second-to-last item
    test_pos = data.offsets[test_user + 1] - 1                     # last item

    # Sequence windows over input positions 0 .. n_train-1 of each user, aligned at the end:
    # window j (j = 0 the most recent) has inputs [n_train - (j+1)L, n_train - jL) clipped at 0.
    n_windows = -(-n_train // max_len)                              # ceil
    w_user = np.repeat(np.arange(data.n_users), n_windows)
    w_first = np.cumsum(n_windows) - n_windows
    j = np.arange(int(n_windows.sum())) - np.repeat(w_first, n_windows)
    end = n_train[w_user] - j * max_len                             # exclusive, local position
    begin = np.maximum(end - max_len, 0)
    as64 = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return Split(as64(train_pos), as64(valid_pos), as64(valid_user), as64(test_pos),
                 as64(test_user), as64(start[w_user] + begin), as64(end - begin))


# --- batch assembly -----------------------------------------------------------------------

def history_batch(items: torch.Tensor, user_start: torch.Tensor, target_pos: torch.Tensor,
                  max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The at most `max_len` items before each target of the same user, right-padded.

    items [N] flat ids; user_start [B] global start of each example's user; target_pos [B].
    Returns item_seq [B, max_len] (0 = padding) and seq_len [B] (history length).
    """
    seq_len = torch.clamp(target_pos - user_start, max=max_len)    # (B,)
    begin = target_pos - seq_len                                     # (B,)
    steps = torch.arange(max_len, device=items.device)               # (L,)
    idx = begin[:, None] + steps[None, :]                            # (B, L) global positions
    real = steps[None, :] < seq_len[:, None]                         # (B, L)
    item_seq = torch.where(real, items[torch.where(real, idx, 0)], 0)
    return item_seq, seq_len


def window_batch(items: torch.Tensor, window_start: torch.Tensor, window_len: torch.Tensor,
                 max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequence-mode batch: inputs items[w : w+len], targets items[w+1 : w+len+1].

    Returns item_seq [B, max_len], seq_len [B], targets [B, max_len] (0 = no CE term).
    """
    steps = torch.arange(max_len, device=items.device)               # (L,)
    idx = window_start[:, None] + steps[None, :]                     # (B, L)
    real = steps[None, :] < window_len[:, None]                      # (B, L)
    item_seq = torch.where(real, items[torch.where(real, idx, 0)], 0)
    targets = torch.where(real, items[torch.where(real, idx + 1, 0)], 0)
    return item_seq, window_len, targets


def user_start_of(offsets: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Global start position of the user owning each global position `pos` [B]."""
    user = torch.searchsorted(offsets, pos, right=True) - 1
    return offsets[user]


class Batches:
    """Device-side batch builder for one run: the flat items, offsets and split positions
    live on `device`; every batch is gathered there with `history_batch` / `window_batch`."""

    def __init__(self, data: SequenceData, split: Split, max_len: int, device="cpu"):
        as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
        self.max_len = max_len
        self.device = torch.device(device)
        self.items, self.offsets = as_t(data.items), as_t(data.offsets)
        self.train_pos = as_t(split.train_pos)
        self.window_start, self.window_len = as_t(split.window_start), as_t(split.window_len)
        self.eval_pos = {"valid": as_t(split.valid_pos), "test": as_t(split.test_pos)}
        self.eval_user = {"valid": as_t(split.valid_user), "test": as_t(split.test_user)}

    def n_train(self, mode: str) -> int:
        """Number of training examples: targets (prefix) or windows (sequence)."""
        return len(self.train_pos) if mode == "prefix" else len(self.window_start)

    def train(self, mode: str, batch_size: int, generator: torch.Generator):
        """Shuffled training batches for one epoch. prefix: (item_seq, seq_len, target);
        sequence: (item_seq, seq_len, targets [B, L])."""
        n = self.n_train(mode)
        order = torch.randperm(n, generator=generator).to(self.device)   # CPU generator: portable
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            if mode == "prefix":
                pos = self.train_pos[idx]
                item_seq, seq_len = history_batch(self.items, user_start_of(self.offsets, pos),
                                                  pos, self.max_len)
                yield item_seq, seq_len, self.items[pos]
            else:
                yield window_batch(self.items, self.window_start[idx], self.window_len[idx],
                                   self.max_len)

    def evaluation(self, which: str, batch_size: int):
        """(item_seq, seq_len, target) batches of the `valid` or `test` split, in user order."""
        pos, user = self.eval_pos[which], self.eval_user[which]
        for lo in range(0, len(pos), batch_size):
            p = pos[lo:lo + batch_size]
            item_seq, seq_len = history_batch(self.items, self.offsets[user[lo:lo + batch_size]],
                                              p, self.max_len)
            yield item_seq, seq_len, self.items[p]
