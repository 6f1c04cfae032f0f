"""GRU4Rec against the GRU equations written out as a Python loop over time, in float64."""
from __future__ import annotations

import math

import pytest
import torch

from models import build_model


def reference_forward(model, item_seq):
    """Embedding -> stacked GRU (no biases, h_0 = 0) -> dense, one time step at a time."""
    x = model.item_embedding.weight[item_seq]                         # (B, L, d_emb)
    B, L, _ = x.shape
    for layer in range(model.config.num_layers):
        W_ir, W_iz, W_in = getattr(model.gru, f"weight_ih_l{layer}").chunk(3)
        W_hr, W_hz, W_hn = getattr(model.gru, f"weight_hh_l{layer}").chunk(3)
        h = torch.zeros(B, W_hr.shape[1], dtype=x.dtype)
        outputs = []
        for t in range(L):
            e = x[:, t]
            r = torch.sigmoid(e @ W_ir.T + h @ W_hr.T)
            z = torch.sigmoid(e @ W_iz.T + h @ W_hz.T)
            n = torch.tanh(e @ W_in.T + r * (h @ W_hn.T))
            h = (1 - z) * n + z * h
            outputs.append(h)
        x = torch.stack(outputs, dim=1)                               # (B, L, d_h)
    return x @ model.dense.weight.T + model.dense.bias                # (B, L, d_emb)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_matches_the_gru_equations(num_layers):
    torch.manual_seed(0)
    model = build_model("gru4rec", 30, embedding_size=8, hidden_size=12,
                        num_layers=num_layers).double().eval()
    item_seq = torch.randint(1, 30, (4, 7))
    item_seq[1, 3:] = 0                                               # a padded row
    seq_len = torch.tensor([7, 3, 7, 7])
    with torch.no_grad():
        torch.testing.assert_close(model(item_seq, seq_len), reference_forward(model, item_seq),
                                   rtol=1e-10, atol=1e-12)


def test_reference_layout():
    """RecBole's layer choices: a bias-free GRU, xavier-initialised (not zero) padding row."""
    model = build_model("gru4rec", 30)
    assert not any("bias" in name for name, _ in model.gru.named_parameters())
    emb = model.item_embedding.weight                                 # (30, 64)
    assert emb[0].abs().sum() > 0
    # xavier_normal_: std = sqrt(2 / (fan_in + fan_out)) over the whole table
    assert emb.std().item() == pytest.approx(math.sqrt(2 / (64 + 30)), rel=0.08)
    assert (model.config.embedding_size, model.config.hidden_size,
            model.config.num_layers, model.config.dropout) == (64, 128, 1, 0.3)


def test_dropout_acts_on_embeddings_in_training_only():
    torch.manual_seed(0)
    model = build_model("gru4rec", 30, embedding_size=8, hidden_size=8)
    item_seq, seq_len = torch.randint(1, 30, (2, 5)), torch.tensor([5, 5])
    model.train()
    assert not torch.equal(model(item_seq, seq_len), model(item_seq, seq_len))
    model.eval()
    assert torch.equal(model(item_seq, seq_len), model(item_seq, seq_len))
