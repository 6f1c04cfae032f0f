"""Tiny models and data for engine tests only (not part of the suite); `write_processed` puts
toy data where the engine reads a processed dataset.

ToyCausal:    h_t = W · mean(e_1 .. e_t), then dropout: hidden[:, t] sees items <= t only.
ToyNonCausal: every position gets the mean over the WHOLE real sequence (sees the future; more
              right padding changes nothing).
Options: `sleep` slows each training step (resume test), `nan_after_calls` makes the output NaN
after that many training forward calls (divergence test).
"""
import json
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

import models
from models.base import SequentialRecommender
from recbench.data.batching import SequenceData


@dataclass
class Config:
    hidden_size: int = 8
    dropout: float = 0.1
    max_len: int = 50            # unused; checks that the engine passes the run's max_len
    sleep: float = 0.0
    nan_after_calls: int = -1


class ToyCausal(SequentialRecommender):
    Config = Config
    causal = True

    def __init__(self, n_items, config):
        super().__init__(n_items, config)
        self.item_embedding = nn.Embedding(n_items, config.hidden_size, padding_idx=0)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.calls = 0

    def mix(self, emb, seq_len):
        steps = torch.arange(1, emb.size(1) + 1, device=emb.device, dtype=emb.dtype)
        return emb.cumsum(1) / steps[None, :, None]                     # (B, L, D) causal mean

    def forward(self, item_seq, seq_len):
        if self.training:
            self.calls += 1
            time.sleep(self.config.sleep)
        hidden = self.dropout(self.proj(self.mix(self.item_embedding(item_seq), seq_len)))
        if self.training and 0 <= self.config.nan_after_calls < self.calls:
            hidden = hidden * float("nan")
        return hidden


class ToyNonCausal(ToyCausal):
    causal = False
    padding_invariant = True   # padding rows are zero (padding_idx) and seq_len counts real items

    def mix(self, emb, seq_len):
        mean = emb.sum(1) / seq_len[:, None].to(emb.dtype)              # (B, D) all real items
        return mean[:, None, :].expand_as(emb)                          # (B, L, D)


def register() -> None:
    models.register("toy_causal", "toy_models:ToyCausal")
    models.register("toy_noncausal", "toy_models:ToyNonCausal")


def toy_data(n_users=40, n_items=30, seed=0, min_len=4, max_len=16) -> SequenceData:
    """Sequences that mostly walk item -> item + 1, so that order-aware models can learn."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        n = int(rng.integers(min_len, max_len + 1))
        s = [int(rng.integers(1, n_items))]
        for _ in range(n - 1):
            walk = rng.random() < 0.7
            s.append(s[-1] % (n_items - 1) + 1 if walk else int(rng.integers(1, n_items)))
        seqs.append(s)
    users = [f"user{u}" for u in range(n_users)]
    return SequenceData.from_lists(seqs, n_items=n_items, user_ids=users)


def write_processed(folder, data: SequenceData):
    """The two files of a processed dataset the engine reads (sequences.parquet, stats.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    lists = [data.items[a:b].tolist() for a, b in zip(data.offsets[:-1], data.offsets[1:])]
    pq.write_table(pa.table({"user_id": pa.array(data.user_ids.astype(str), pa.string()),
                             "item_index": pa.array(lists, pa.list_(pa.int64()))}),
                   folder / "sequences.parquet")
    (folder / "stats.json").write_text(json.dumps({"n_items": data.n_items - 1}))
