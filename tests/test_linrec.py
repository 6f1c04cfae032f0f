"""LinRec: the ELU + L2-normalised linear attention against an explicit float64 double loop,
in the reference's non-causal form and in the chunked causal option."""
import math

import pytest
import torch
import torch.nn.functional as F

from models import build_model
from models.linear_attention import causal_linear_attention
from models.linrec import linear_attention

torch.set_num_threads(1)


def slow_attention(q, k, v, causal):
    """out[b,h,i] = sum_j <q~_i, k~_j> v_j / sqrt(d), one (i, j) pair at a time."""
    B, H, L, d = q.shape
    out = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                qi = F.elu(q[b, h, i])
                qi = qi / math.sqrt(float((qi ** 2).sum()))
                for j in range(i + 1 if causal else L):
                    kj = F.elu(k[b, h, j])
                    kj = kj / math.sqrt(float((kj ** 2).sum()))
                    out[b, h, i] += float(qi @ kj) * v[b, h, j]
    return out / math.sqrt(d)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_attention_matches_explicit_loop(causal, chunk_size):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 4, dtype=torch.float64) for _ in range(3))
    got = linear_attention(q, k, v, causal=causal, chunk_size=chunk_size)
    torch.testing.assert_close(got, slow_attention(q, k, v, causal), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 8])
def test_shared_causal_helper_matches_a_loop(chunk_size):
    """models/linear_attention.py (LinRec's and RecGRELA's causal path) on raw rows, value width
    e != key width d, strided (B, L, H, .) views: out_i = sum_{j <= i} (q_i . k_j) v_j."""
    torch.manual_seed(2)
    q, k = (torch.randn(2, 3, 5, 4, dtype=torch.float64).transpose(1, 2) for _ in range(2))
    v = torch.randn(2, 3, 5, 6, dtype=torch.float64).transpose(1, 2)   # (B, L=5, H=3, e=6)
    want = torch.zeros(2, 5, 3, 6, dtype=torch.float64)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                for j in range(i + 1):
                    want[b, i, h] += float(q[b, i, h] @ k[b, j, h]) * v[b, j, h]
    got = causal_linear_attention(q, k, v, chunk_size)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_causal_chunks_do_not_change_gradients():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    grads = []
    for chunk in (2, 9):
        out = linear_attention(q, k, v, causal=True, chunk_size=chunk)
        grads.append(torch.autograd.grad(out.square().sum(), (q, k, v)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def _model(**overrides):
    torch.manual_seed(0)
    cfg = dict(hidden_size=8, num_heads=2, inner_size=16, max_len=10, dropout=0.0)
    return build_model("linrec", 30, **(cfg | overrides)).double().eval()


def test_reference_default_is_not_causal_and_option_is():
    seq = torch.tensor([[3, 5, 7, 9, 2, 4]])
    later = seq.clone()
    later[0, 4:] = torch.tensor([11, 12])
    lens = torch.tensor([6])
    default, causal = _model(), _model(causal=True, chunk_size=4)
    assert default.causal is False and causal.causal is True
    # The reference sums over the whole window: changing items 4.. moves position 0's output.
    assert not torch.allclose(default(seq, lens)[:, :4], default(later, lens)[:, :4])
    torch.testing.assert_close(causal(seq, lens)[:, :4], causal(later, lens)[:, :4])


def test_longer_than_max_len_is_a_clear_error():
    model = _model()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 11, dtype=torch.long), torch.tensor([11]))


def test_bad_heads_is_a_clear_error():
    with pytest.raises(ValueError, match="num_heads"):
        build_model("linrec", 30, hidden_size=10, num_heads=4)
