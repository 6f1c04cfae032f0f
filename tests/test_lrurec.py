"""LRURec: the chunked parallel scan against a Python loop of the LRU recurrence, the layer
against the recurrence written out, the reference's padding semantics and init."""
import math

import pytest
import torch

from models import build_model
from models.lrurec import LRULayer, lru_scan

torch.set_num_threads(1)


def loop_scan(b, log_lambda):
    """h_t = lambda h_{t-1} + b_t, one position at a time (complex128)."""
    lam = torch.exp(log_lambda)
    h = torch.zeros(b.size(0), b.size(2), dtype=b.dtype)
    out = []
    for t in range(b.size(1)):
        h = lam * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("chunk", [1, 4, 5, 23, 64])
def test_scan_matches_loop(chunk):
    torch.manual_seed(0)
    b = torch.randn(2, 23, 6, dtype=torch.complex128)
    # Includes a fast decay (|lambda| = e^-3) and a slow one (e^-0.01).
    nu = torch.tensor([3.0, 0.01, 0.2, 0.5, 1.0, 0.05], dtype=torch.float64)
    log_lambda = torch.complex(-nu, torch.rand(6, dtype=torch.float64) * 2 * math.pi)
    torch.testing.assert_close(lru_scan(b, log_lambda, chunk), loop_scan(b, log_lambda))


def test_scan_gradients_match_loop():
    torch.manual_seed(1)
    b = torch.randn(1, 9, 3, dtype=torch.complex128, requires_grad=True)
    log_lambda = torch.complex(-torch.rand(3, dtype=torch.float64),
                               torch.rand(3, dtype=torch.float64)).requires_grad_()
    g_fast = torch.autograd.grad(lru_scan(b, log_lambda, 4).abs().sum(), (b, log_lambda))
    g_loop = torch.autograd.grad(loop_scan(b, log_lambda).abs().sum(), (b, log_lambda))
    for a, c in zip(g_fast, g_loop):
        torch.testing.assert_close(a, c)


def test_layer_is_the_written_out_recurrence():
    """LN(x + Re(W_out h)) with h_t = lambda h_{t-1} + gamma (W_in x_t + c), complex maths by hand."""
    torch.manual_seed(2)
    cfg = build_model("lrurec", 5, hidden_size=4, dropout=0.0).config
    layer = LRULayer(cfg).double().eval()
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    nu, theta, gamma = torch.exp(layer.params_log)
    lam = torch.polar(torch.exp(-nu), theta)                          # |lambda| e^{i theta}
    W, c = layer.in_proj.weight, layer.in_proj.bias
    H = nu.numel()
    W_c = torch.complex(W[:H], W[H:])                                 # complex (H, D)
    c_c = torch.complex(c[:H], c[H:])
    Wo = layer.out_proj.weight
    h = torch.zeros(2, H, dtype=torch.complex128)
    outs = []
    for t in range(6):
        h = lam * h + gamma * (x[:, t].to(torch.complex128) @ W_c.T + c_c)
        y = h.real @ Wo[:, :H].T + h.imag @ Wo[:, H:].T + layer.out_proj.bias
        outs.append(torch.nn.functional.layer_norm(x[:, t] + y, (4,), layer.layer_norm.weight,
                                                   layer.layer_norm.bias))
    torch.testing.assert_close(layer(x), torch.stack(outs, dim=1))


def test_right_padding_equals_the_reference_left_padding():
    """The reference left-pads and cuts the carry out of padding; that equals our right-padded
    run started at position 0: the real positions' states are the same numbers."""
    torch.manual_seed(3)
    model = build_model("lrurec", 20, hidden_size=4, dropout=0.0).double().eval()
    right = torch.tensor([[4, 9, 2, 0, 0, 0]])
    alone = torch.tensor([[4, 9, 2]])
    torch.testing.assert_close(model(right, torch.tensor([3]))[:, :3],
                               model(alone, torch.tensor([3])))


def test_score_adds_the_item_bias():
    torch.manual_seed(4)
    model = build_model("lrurec", 7, hidden_size=4).double()
    hidden = torch.randn(3, 4, dtype=torch.float64)
    manual = hidden @ model.item_embedding.weight.T + model.bias
    torch.testing.assert_close(model.score(hidden), manual)
    assert model.bias.abs().max() > 0          # truncated-normal init, not zeros


def test_reference_init():
    """Every parameter but the LayerNorms and params_log ~ N(0, 0.02) truncated to +-0.04."""
    torch.manual_seed(5)
    model = build_model("lrurec", 50)
    drawn = [p.detach().flatten() for name, p in model.named_parameters()
             if "layer_norm" not in name and "params_log" not in name]
    values = torch.cat(drawn)
    assert values.abs().max() <= 0.04
    # the std of N(0, s) truncated to +-2s: s sqrt(1 - 2 * 2 phi(2) / (2 Phi(2) - 1))
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    assert values.std().item() == pytest.approx(0.02 * math.sqrt(1 - 4 * phi / mass), rel=0.02)
    assert all(p.std() > 0 for p in drawn)           # each one drawn, none left at zero


def test_lru_init_by_hand():
    """The LRU init (Orvieto et al. 2023, as the reference): |lambda|^2 = U1 (r_max^2 - r_min^2)
    + r_min^2, theta = 2 pi U2, gamma = sqrt(1 - |lambda|^2), U1, U2 ~ U[0, 1) per channel,
    drawn first in the layer."""
    cfg = build_model("lrurec", 5, hidden_size=4, r_min=0.5, r_max=0.9).config
    torch.manual_seed(7)
    layer = LRULayer(cfg)
    torch.manual_seed(7)
    u1, u2 = torch.rand(8), torch.rand(8)                            # H = 2 * hidden_size
    radius_sq = u1 * (0.9 ** 2 - 0.5 ** 2) + 0.5 ** 2
    nu, theta, gamma = torch.exp(layer.params_log)
    torch.testing.assert_close(torch.exp(-2 * nu), radius_sq)
    torch.testing.assert_close(theta, u2 * 2 * math.pi)
    torch.testing.assert_close(gamma, torch.sqrt(1 - radius_sq))
