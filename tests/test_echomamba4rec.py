"""EchoMamba4Rec (models/echomamba4rec.py): the model against a slow float64 reference written
here from the equations of the module docstring (an explicit DFT and its inverse, the Mamba
blocks step by step, one user and one position at a time), the window handling, and, when the
checkout is present, the reference file `model/EchoMamba4Rec.py` itself with the same weights
(eval and training mode)."""
import cmath
import math
import re
import types

import pytest
import torch
from reference_code import (
    REFERENCE_DIR,
    import_reference_model,
    largest_readout_difference,
    stub_module,
)
from slow_reference import lin, ln, sigmoid, silu, slow_mamba, softplus

from models import build_model
from models.echomamba4rec import EchoMamba4Rec, SpectralFilter
from models.mamba4rec import MambaBlock

torch.set_num_threads(1)
f64 = torch.float64
TINY = dict(hidden_size=8, d_state=3, num_layers=2, chunk_size=2, max_len=9)


def tiny(n_items=13, seed=0, **overrides):
    torch.manual_seed(seed)
    model = build_model("echomamba4rec", n_items, **{**TINY, **overrides}).to(f64).eval()
    with torch.no_grad():  # weights far from their small init, biases and LN affine non-trivial
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def batch(n_items=13, L=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, n_items, (3, L), generator=g)
    seq_len = torch.tensor([L, 4, 1])
    seq[torch.arange(L) >= seq_len[:, None]] = 0
    return seq, seq_len


# --- the slow reference ----------------------------------------------------------------
def slow_filter(f: SpectralFilter, xs):
    """x_t <- LN(x_t + y_t): X_k = n^-1/2 sum_t x_t e^{-2 pi i k t / n}, Y_k = X_k W_k (k < F),
    y_t = n^-1/2 [Re Y_0 + 2 sum_{0<k<n/2} Re(Y_k e^{2 pi i k t / n}) + (n even) Re Y_{n/2} (-1)^t]."""
    n, d = len(xs), xs[0].numel()
    W = f.complex_weight
    Y = []
    for k in range(n // 2 + 1):
        for_k = []
        for c in range(d):
            X = sum(complex(xs[t][c]) * cmath.exp(-2j * math.pi * k * t / n) for t in range(n)) / math.sqrt(n)
            for_k.append(X * complex(W[k, c, 0], W[k, c, 1]))
        Y.append(for_k)
    out = []
    for t in range(n):
        y = []
        for c in range(d):
            v = Y[0][c].real
            for k in range(1, (n + 1) // 2):                          # the pairs k, n - k
                v += 2 * (Y[k][c] * cmath.exp(2j * math.pi * k * t / n)).real
            if n % 2 == 0:
                v += Y[n // 2][c].real * (-1) ** t
            y.append(v / math.sqrt(n))
        out.append(ln(f.norm, xs[t] + torch.tensor(y, dtype=f64)))
    return out


@torch.no_grad()
def slow_forward(model: EchoMamba4Rec, item_seq):
    c = model.config
    n = c.max_len
    hidden = []
    for b in range(item_seq.size(0)):
        items = item_seq[b].tolist() + [0] * (n - item_seq.size(1))   # the max_len window
        x = [ln(model.emb_norm, model.item_embedding.weight[s]) for s in items]
        for layer in model.layers:
            x = slow_filter(layer.filter, x)
            for pair in layer.pairs:
                f = slow_mamba(pair.forward_mamba, x)
                back = slow_mamba(pair.backward_mamba, x[::-1])[::-1]
                x = [ln(pair.forward_norm, f[t] + x[t]) + ln(pair.backward_norm, back[t] + x[t])
                     for t in range(n)]
            glu = layer.glu
            new = []
            for t in range(n):
                a, g = lin(glu.fc1, x[t]).chunk(2)
                new.append(ln(glu.norm, lin(glu.fc2, a * sigmoid(g)) + x[t]))
            x = new
        hidden.append(torch.stack(x[: item_seq.size(1)]))
    return torch.stack(hidden)                                          # (B, L, d)


@pytest.mark.parametrize("variant", [{}, {"max_len": 10}, {"pairs_per_layer": 1}, {"num_layers": 1}],
                         ids=["default_odd_window", "even_window", "one_pair", "one_layer"])
def test_forward_matches_slow_reference(variant):
    model = tiny(**variant)
    seq, seq_len = batch()
    with torch.no_grad():
        got = model(seq, seq_len)
    assert (got - slow_forward(model, seq)).abs().max().item() < 1e-9


def test_filter_ignores_the_imaginary_parts_irfft_cannot_represent():
    """irFFT of a half spectrum keeps Im of neither the DC bin nor (even n) the Nyquist bin."""
    model = tiny(max_len=10)
    f = model.layers[0].filter
    x = torch.randn(2, 10, 8, dtype=f64)
    with torch.no_grad():
        before = f(x)
        f.complex_weight[0, :, 1] += 1.0
        f.complex_weight[5, :, 1] += 1.0
        assert torch.allclose(f(x), before, atol=1e-12)
        f.complex_weight[2, :, 1] += 1.0
        assert not torch.allclose(f(x), before, atol=1e-6)


def test_windows_are_padded_to_max_len_and_longer_ones_refused():
    model = tiny()
    seq, seq_len = batch()
    full = torch.cat([seq, torch.zeros(3, 2, dtype=seq.dtype)], dim=1)   # L = max_len = 9
    with torch.no_grad():
        torch.testing.assert_close(model(seq, seq_len), model(full, seq_len)[:, :7], atol=0, rtol=0)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 10, dtype=torch.long), torch.tensor([10]))


def test_bidirectional_read_out_sees_later_items():
    model = tiny()
    seq, seq_len = batch()
    changed = seq.clone()
    changed[0, 5] = (seq[0, 5] % 12) + 1
    with torch.no_grad():
        assert (model(changed, seq_len)[0, 1] - model(seq, seq_len)[0, 1]).abs().max() > 1e-6


def test_structure_and_init_as_the_reference():
    model = build_model("echomamba4rec", 20)
    layer = model.layers[0]
    assert len(model.layers) == 2 and len(layer.pairs) == 2          # num_layers pairs per layer
    assert len(build_model("echomamba4rec", 20, pairs_per_layer=1).layers[0].pairs) == 1
    assert layer.filter.complex_weight.shape == (101, 64, 2)         # max_len // 2 + 1 frequencies
    assert layer.pairs[0].forward_norm.eps == 1e-5 and layer.glu.norm.eps == 1e-12
    dt_bias = layer.pairs[0].forward_mamba.dt_proj.bias
    assert torch.equal(dt_bias, torch.zeros_like(dt_bias))            # RecBole's re-init
    own = build_model("echomamba4rec", 20, init="mamba_ssm").layers[0].pairs[0].forward_mamba
    assert own.dt_proj.bias.abs().min() > 0


def test_trainable_parameters_ml1m_reference_configuration():
    model = build_model("echomamba4rec", 3417)   # 3,416 items + padding, max_len 200
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 581_440


def test_bad_options_are_named():
    for bad in ({"pairs_per_layer": 0}, {"init": "xavier"}, {"chunk_size": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_model("echomamba4rec", 5, **bad)


# --- the mamba_ssm kernels (CUDA only) --------------------------------------------------
def _kernels_missing() -> str | None:
    if not torch.cuda.is_available():
        return "needs CUDA"
    from models import mamba4rec
    if mamba4rec.selective_scan_fn is None:
        return f"needs an importable mamba_ssm ({mamba4rec.KERNEL_IMPORT_ERROR})"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_kernels_missing() is not None, reason=str(_kernels_missing()))
def test_kernel_path_matches_pure_path_on_cuda():
    torch.manual_seed(0)
    model = build_model("echomamba4rec", 50, max_len=60).cuda().eval()
    seq = torch.randint(1, 50, (4, 60), device="cuda")
    seq_len = torch.tensor([60, 10, 44, 1], device="cuda")
    seq[torch.arange(60, device="cuda") >= seq_len[:, None]] = 0
    with torch.no_grad():
        fast = model(seq, seq_len)
        for m in model.modules():
            if isinstance(m, MambaBlock):
                m.use_kernels = False
        pure = model(seq, seq_len)
    torch.testing.assert_close(fast, pure, rtol=1e-3, atol=1e-4)


# --- the reference code itself (a checkout of TBI805/RecGRELA @ 608a39b: tests/reference_code.py)
REF_FILE = REFERENCE_DIR / "model" / "EchoMamba4Rec.py"
RENAMES = [(r"^LayerNorm\.", "emb_norm."), (r"^mamba_layers\.", "layers."),
           (r"\.filter_layer\.LayerNorm\.", ".filter.norm."), (r"\.filter_layer\.", ".filter."),
           (r"\.norms_forward\.(\d+)\.", r".pairs.\1.forward_norm."),
           (r"\.norms_backward\.(\d+)\.", r".pairs.\1.backward_norm."),
           (r"\.mamba_forwards\.(\d+)\.", r".pairs.\1.forward_mamba."),
           (r"\.mamba_backwards\.(\d+)\.", r".pairs.\1.backward_mamba."),
           (r"\.glu\.LayerNorm\.", ".glu.norm.")]


def rename(key: str) -> str | None:
    """A reference parameter name -> ours; None for the block the reference never calls."""
    if ".multi_query_transformer_block." in key:
        return None
    for old, new in RENAMES:
        key = re.sub(old, new, key)
    return key


def reference_pair(monkeypatch, hidden, num_layers, L, n_items=101):
    """The reference EchoMamba4Rec (mamba_ssm.Mamba stood in for by our pure-PyTorch MambaBlock,
    the same parameter names), ours, the reference's weights under our names, and the number of
    parameters of the reference's unused block."""
    def mamba(d_model, d_state, d_conv, expand):
        return MambaBlock(types.SimpleNamespace(hidden_size=d_model, d_state=d_state, d_conv=d_conv,
                                                expand=expand, chunk_size=0, use_kernels=False))
    stub_module(monkeypatch, "mamba_ssm", Mamba=mamba)
    ref_module = import_reference_model(monkeypatch, "EchoMamba4Rec.py")
    cfg = {"hidden_size": hidden, "loss_type": "CE", "num_layers": num_layers, "dropout_prob": 0.2,
           "d_state": 32, "d_conv": 4, "expand": 2, "MAX_ITEM_LIST_LENGTH": L}
    torch.manual_seed(0)
    ref = ref_module.EchoMamba4Rec(cfg, types.SimpleNamespace(n_items=n_items))
    model = build_model("echomamba4rec", n_items, hidden_size=hidden, num_layers=num_layers, max_len=L)
    state, unused = {}, 0
    for key, value in ref.state_dict().items():
        ours = rename(key)
        if ours is None:
            unused += value.numel()
        else:
            state[ours] = value.squeeze(0) if key.endswith("complex_weight") else value   # (1, F, d, 2)
    return ref, model, state, unused


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
@pytest.mark.parametrize("num_layers", [2, 1])
def test_same_outputs_as_the_reference_code_with_its_weights(monkeypatch, num_layers):
    """Eval mode, float32, L = max_len = 30 (the reference needs the full window)."""
    ref, model, state, unused = reference_pair(monkeypatch, 64, num_layers, 30)
    assert largest_readout_difference(ref.eval(), model.eval(), state, 101, 30) < 1e-5
    # the reference's never-called MultiQueryTransformerBlock: 62,592 parameters per layer at d = 64
    assert unused == 62_592 * num_layers


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
def test_same_training_loss_and_gradients_as_the_reference_code(monkeypatch, bernoulli_dropout):
    """Training mode, the same seed: the dropout masks are drawn in the reference's order, so
    the CE loss and every gradient agree."""
    ref, model, state, _ = reference_pair(monkeypatch, 16, 2, 20, n_items=41)
    model.load_state_dict(state)
    ref.train(), model.train()
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, 41, (5, 20), generator=g)
    seq_len = torch.tensor([20, 1, 7, 13, 19])
    seq[torch.arange(20) >= seq_len[:, None]] = 0
    target = torch.randint(1, 41, (5,), generator=g)
    ref.ITEM_SEQ, ref.ITEM_SEQ_LEN, ref.POS_ITEM_ID = "seq", "len", "target"
    torch.manual_seed(7)
    want = ref.calculate_loss({"seq": seq, "len": seq_len, "target": target})
    torch.manual_seed(7)
    got = model.calculate_loss(seq, seq_len, target)
    assert abs(got.item() - want.item()) < 1e-5
    want.backward(), got.backward()
    ours = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        if rename(name) is None:
            assert p.grad is None, f"{name}: the reference's unused block got a gradient"
            continue
        grad = p.grad.squeeze(0) if name.endswith("complex_weight") else p.grad
        torch.testing.assert_close(ours[rename(name)].grad, grad, rtol=1e-4, atol=1e-6, msg=name)
