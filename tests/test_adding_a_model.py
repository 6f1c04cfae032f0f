"""docs/adding_a_model.md, followed once: a new model written in this file, registered,
put through the same contract checks as every shipped model, and trained for one epoch by
the engine. If this test breaks, the guide is out of date."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from torch import nn

import models
from models.base import SequentialRecommender
from test_model_contract import (builder, check_causality, check_declarations, check_gradients,
                                 check_padding_invariance, check_save_load, check_shapes)


# Step 1: one file (here: this test module) with a Config dataclass and the model class.
@dataclass
class Config:
    hidden_size: int = 32      # d
    kernel_size: int = 3       # k: how many recent items each position mixes
    dropout_prob: float = 0.1


class RecentConv(SequentialRecommender):
    """h_t = W . (sum_{j<k} c_j * e_{t-j}) + b: a causal depthwise convolution over the last k
    item embeddings (e = self.item_embedding), scored against the tied embedding."""
    Config = Config
    causal = True   # step 2: declare what the model promises

    def __init__(self, n_items, config):
        super().__init__(n_items, config)
        d, k = config.hidden_size, config.kernel_size
        self.item_embedding = nn.Embedding(n_items, d, padding_idx=0)
        # left padding of k - 1 and keeping the first L outputs makes the convolution causal
        self.conv = nn.Conv1d(d, d, k, padding=k - 1, groups=d)
        self.proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout_prob)

    def forward(self, item_seq, seq_len):
        L = item_seq.size(1)
        emb = self.dropout(self.item_embedding(item_seq))                    # (B, L, d)
        mixed = self.conv(emb.transpose(1, 2))[..., :L].transpose(1, 2)      # (B, L, d)
        return self.proj(mixed)


@pytest.fixture
def registered(monkeypatch):
    # Step 3: one registry line. In the project this is an entry in models/__init__.py's
    # REGISTRY; monkeypatch keeps the example out of the other tests' registry.
    monkeypatch.setitem(models.REGISTRY, "recent_conv", f"{__name__}:RecentConv")
    return "recent_conv"


def test_build_by_name_with_overrides(registered):
    model = models.build_model(registered, 20, hidden_size=8, kernel_size=2)
    assert isinstance(model, RecentConv) and model.config.kernel_size == 2
    with pytest.raises(ValueError, match="no option"):
        models.build_model(registered, 20, kernel=2)


def test_contract_checks(registered):
    # Step 4: the contract test's checks (tests/test_model_contract.py runs them on every
    # name in REGISTRY; here they run on the example).
    build = builder(registered)
    for check in (check_declarations, check_shapes, check_gradients, check_save_load,
                  check_padding_invariance, check_causality):
        check(build)


def test_one_epoch_through_the_engine(registered, tmp_path):
    # Step 5: a short run through the engine, as `snakemake` would start it.
    engine = pytest.importorskip("recbench.engine")
    from recbench.batching import SequenceData

    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(1, 30, size=rng.integers(5, 15))) for _ in range(40)]
    data = SequenceData.from_lists(sequences, n_items=30)
    result = engine.run_training(data, tmp_path / "toy" / registered / "L10" / "seed1", registered,
                                 model_overrides={"hidden_size": 8},
                                 train_cfg={"max_len": 10, "epochs": 1, "batch_size": 64,
                                            "eval_batch_size": 64, "device": "cpu",
                                            "progress": False, "seed": 1})
    assert result["epochs_run"] == 1 and result["n_test_users"] == 40
    assert 0.0 <= result["test"]["hit@10"] <= 1.0
    assert result["config"]["model_config"]["hidden_size"] == 8
    assert (tmp_path / "toy" / registered / "L10" / "seed1" / "metrics.json").exists()
