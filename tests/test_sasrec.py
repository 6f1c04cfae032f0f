"""SASRec's causal attention against an explicit masked loop over query positions (float64)."""
from __future__ import annotations

import math

import pytest
import torch

from models import build_model


def layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def reference_forward(model, item_seq):
    """RecBole's SASRec written out: for query t, keys j <= t with item_seq[j] != 0 get
    softmax weight, every other key exactly 0; post-LN residual sublayers."""
    c = model.config
    B, L = item_seq.shape
    dh = c.hidden_size // c.num_heads
    x = model.item_embedding.weight[item_seq] + model.position_embedding.weight[:L]
    x = layer_norm(x, model.LayerNorm)
    for block in model.blocks:
        att, ffn = block.attention, block.feed_forward
        q, k, v = (x @ lin.weight.T + lin.bias for lin in (att.query, att.key, att.value))
        context = torch.zeros_like(x)
        for b in range(B):
            for t in range(L):
                allowed = [j for j in range(t + 1) if item_seq[b, j] != 0]
                for h in range(c.num_heads):
                    cols = slice(h * dh, (h + 1) * dh)
                    s = torch.stack([q[b, t, cols] @ k[b, j, cols] for j in allowed])
                    s = s / math.sqrt(dh)
                    w = torch.softmax(s, dim=0)
                    context[b, t, cols] = sum(w[i] * v[b, j, cols] for i, j in enumerate(allowed))
        x = layer_norm(x + context @ att.dense.weight.T + att.dense.bias, att.LayerNorm)
        inner = gelu(x @ ffn.w_1.weight.T + ffn.w_1.bias)
        x = layer_norm(x + inner @ ffn.w_2.weight.T + ffn.w_2.bias, ffn.layer_norm)
    return x


def tiny(attention):
    torch.manual_seed(0)
    return build_model("sasrec", 25, hidden_size=8, num_heads=2, inner_size=16, max_len=6,
                       attention=attention).double().eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(3)
    item_seq = torch.randint(1, 25, (3, 6), generator=g)
    seq_len = torch.tensor([6, 4, 1])
    item_seq[torch.arange(6)[None, :] >= seq_len[:, None]] = 0
    return item_seq, seq_len


def test_math_attention_matches_the_masked_loop(batch):
    item_seq, seq_len = batch
    model = tiny("math")
    with torch.no_grad():
        # every position, padding queries too: they see the real keys only, as in RecBole
        torch.testing.assert_close(model(item_seq, seq_len), reference_forward(model, item_seq),
                                   rtol=1e-10, atol=1e-12)


def test_sdpa_agrees_with_math_at_real_positions(batch):
    item_seq, seq_len = batch
    math_model, sdpa_model = tiny("math"), tiny("sdpa")
    sdpa_model.load_state_dict(math_model.state_dict())
    real = item_seq != 0
    with torch.no_grad():
        torch.testing.assert_close(sdpa_model(item_seq, seq_len)[real],
                                   math_model(item_seq, seq_len)[real], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sdpa_model.full_sort_predict(item_seq, seq_len),
                                   math_model.full_sort_predict(item_seq, seq_len),
                                   rtol=1e-10, atol=1e-12)


def test_window_longer_than_position_table_is_refused():
    model = build_model("sasrec", 25, hidden_size=8, max_len=4)
    with pytest.raises(ValueError, match="max_len 4"):
        model(torch.ones(2, 5, dtype=torch.long), torch.tensor([5, 5]))


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="attention"):
        build_model("sasrec", 25, attention="flash")
    with pytest.raises(ValueError, match="num_heads"):
        build_model("sasrec", 25, hidden_size=10, num_heads=3)
    with pytest.raises(ValueError, match=r"hidden_act: 'gelu_new'.*'gelu_recbole'"):
        build_model("sasrec", 25, hidden_act="gelu_new")
