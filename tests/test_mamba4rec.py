"""Mamba4Rec: the reference loop `selective_scan_ref` against a hand computation, the chunked
pure-PyTorch scan (values and its hand-written backward) against that loop in float64, the
block's causality, the init options, and parity with mamba_ssm's CUDA kernels where they exist."""
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from models import build_model
from models.mamba4rec import MambaBlock, selective_scan, selective_scan_ref

torch.set_num_threads(1)
f64 = torch.float64


def test_reference_loop_by_hand():
    """selective_scan_ref on one channel, one state, two steps, written out (float64):
    Delta = softplus(delta + bias); h_1 = Delta_1 u_1 B_1; h_2 = exp(Delta_2 A) h_1 + Delta_2 u_2 B_2;
    y_t = (C_t h_t + D u_t) * SiLU(z_t)."""
    t = lambda *v: torch.tensor(v, dtype=f64).view(1, len(v), 1)        # (batch 1, L, 1)
    u, delta, B, C, z = t(0.5, -1.0), t(0.2, -0.3), t(1.5, 0.25), t(-2.0, 3.0), t(0.7, -0.4)
    A, D, bias = torch.tensor([[-0.8]], dtype=f64), torch.tensor([0.3], dtype=f64), torch.tensor([0.1], dtype=f64)
    sp = lambda x: math.log1p(math.exp(x))
    silu = lambda x: x / (1 + math.exp(-x))
    d1, d2 = sp(0.2 + 0.1), sp(-0.3 + 0.1)
    h1 = d1 * 0.5 * 1.5
    h2 = math.exp(d2 * -0.8) * h1 + d2 * -1.0 * 0.25
    want = [(-2.0 * h1 + 0.3 * 0.5) * silu(0.7), (3.0 * h2 + 0.3 * -1.0) * silu(-0.4)]
    got = selective_scan_ref(u, delta, A, B, C, D, z=z, delta_bias=bias)
    assert got.shape == (1, 2, 1) and got.dtype == f64
    assert got.flatten().tolist() == pytest.approx(want, abs=1e-15)
    # no z, no bias: y_t = C_t h_t + D u_t with Delta = softplus(delta)
    plain = selective_scan_ref(u, delta, A, B, C, D)
    e1 = sp(0.2)
    assert plain[0, 0, 0].item() == pytest.approx(-2.0 * e1 * 0.5 * 1.5 + 0.3 * 0.5, abs=1e-15)


def test_reference_loop_computes_low_precision_inputs_in_float32():
    x = {k: v.detach().to(torch.bfloat16) for k, v in _inputs(L=4).items()}
    got = selective_scan_ref(**x)
    assert got.dtype == torch.bfloat16
    want = selective_scan_ref(**{k: v.float() for k, v in x.items()}).to(torch.bfloat16)
    assert torch.equal(got, want)


def _inputs(batch=2, L=11, E=3, N=4, seed=0):
    """Every input of the scan, float64, requiring grad (B, C here are the SSM matrices)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=f64).requires_grad_()
    A = (-torch.rand(E, N, generator=g, dtype=f64) * 3).requires_grad_()
    return dict(u=r(batch, L, E), delta=r(batch, L, E), A=A, B=r(batch, L, N), C=r(batch, L, N),
                D=r(E), z=r(batch, L, E), delta_bias=r(E))


@pytest.mark.parametrize("chunk", [1, 3, 4, 11, 64])     # 3 and 4 do not divide L = 11
def test_chunked_scan_and_its_backward_match_the_reference_loop(chunk):
    x = _inputs()
    want = selective_scan_ref(**x)
    got = selective_scan(**x, chunk_size=chunk)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(want)
    g_want = torch.autograd.grad((want * weights).sum(), list(x.values()))
    g_got = torch.autograd.grad((got * weights).sum(), list(x.values()))
    for name, a, b in zip(x, g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


def test_chunked_scan_without_gate_or_bias_matches_the_reference_loop():
    x = _inputs(L=7)
    del x["z"], x["delta_bias"]
    torch.testing.assert_close(selective_scan(**x, chunk_size=3), selective_scan_ref(**x),
                               rtol=1e-12, atol=1e-12)


def test_scan_gradcheck():
    x = _inputs(batch=1, L=5, E=2, N=2, seed=1)
    fn = lambda *args: selective_scan(*args, chunk_size=2)
    assert torch.autograd.gradcheck(fn, tuple(x.values()))


def _config(**kw):
    return build_model("mamba4rec", 5, hidden_size=8, d_state=4, dropout=0.0, **kw).config


def test_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(_config(chunk_size=3)).double()
    x = torch.randn(2, 9, 8, dtype=f64)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 4, 8, dtype=f64)
    torch.testing.assert_close(block(x)[:, :5], block(y)[:, :5])
    assert not torch.allclose(block(x)[:, 5:], block(y)[:, 5:])


def test_mamba_ssm_dt_init_by_hand():
    """mamba_ssm's dt init: Delta_0 = exp(U (log dt_max - log dt_min) + log dt_min), U ~ U[0, 1)
    per channel, floored at 1e-4; bias = softplus^-1(Delta_0). Replayed from the same RNG stream:
    the block draws its five Linear / Conv1d inits, then dt_proj's uniform weight, then U."""
    cfg = build_model("mamba4rec", 5, init="mamba_ssm").config
    D, E, N, R = cfg.hidden_size, cfg.expand * cfg.hidden_size, cfg.d_state, math.ceil(cfg.hidden_size / 16)
    torch.manual_seed(3)
    block = MambaBlock(cfg)
    torch.manual_seed(3)
    # the block's own Linear / Conv1d inits, drawn here only to advance the RNG alike
    torch.nn.Linear(D, 2 * E, bias=False)
    torch.nn.Conv1d(E, E, cfg.d_conv, groups=E, padding=cfg.d_conv - 1)
    torch.nn.Linear(E, R + 2 * N, bias=False)
    torch.nn.Linear(R, E)
    torch.nn.Linear(E, D, bias=False)
    weight = torch.empty(E, R).uniform_(-R ** -0.5, R ** -0.5)
    dt = torch.exp(torch.rand(E) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
    assert torch.equal(block.dt_proj.weight, weight)
    torch.testing.assert_close(F.softplus(block.dt_proj.bias), dt, rtol=1e-5, atol=0)
    torch.testing.assert_close(-torch.exp(block.A_log), -torch.arange(1.0, N + 1).repeat(E, 1))
    assert torch.equal(block.D, torch.ones(E))


def test_reference_init_overrides_mamba_ssm_init():
    torch.manual_seed(0)
    ref = build_model("mamba4rec", 50)
    torch.manual_seed(0)
    own = build_model("mamba4rec", 50, init="mamba_ssm")
    # init="mamba_ssm" keeps every block parameter as MambaBlock drew it: replay the model's
    # RNG stream up to the first block (the item embedding's init) and build that block alone
    torch.manual_seed(0)
    torch.nn.Embedding(50, own.config.hidden_size)
    alone = MambaBlock(own.config)
    for name, value in alone.state_dict().items():
        assert torch.equal(own.layers[0].mamba.state_dict()[name], value), name
    # the reference: RecBole's re-init reaches inside the blocks: dt_proj.bias zeroed, so
    # Delta = softplus(0) = log 2 at init, and every block Linear N(0, 0.02)
    block = ref.layers[0].mamba
    assert torch.count_nonzero(block.dt_proj.bias) == 0
    for lin in (block.in_proj, block.x_proj, block.dt_proj, block.out_proj):
        assert lin.weight.std().item() == pytest.approx(0.02, rel=0.15)
    # ...but not A_log, D or the conv (not Linear / Embedding): as mamba_ssm drew them
    torch.testing.assert_close(-torch.exp(block.A_log[0]), -torch.arange(1.0, 33.0))
    torch.testing.assert_close(block.D, torch.ones_like(block.D))
    assert torch.equal(block.conv1d.weight, own.layers[0].mamba.conv1d.weight)


def test_one_layer_model_has_no_residual_around_the_block():
    torch.manual_seed(0)
    one = build_model("mamba4rec", 20, hidden_size=8, d_state=4, num_layers=1, dropout=0.0)
    layer = one.layers[0].double().eval()
    x = torch.randn(1, 4, 8, dtype=f64)
    torch.testing.assert_close(layer(x), layer.ffn(layer.norm(layer.mamba(x))))


def test_bad_init_is_a_clear_error():
    with pytest.raises(ValueError, match="init"):
        build_model("mamba4rec", 5, init="xavier")


def _mamba_ssm_import_error() -> str | None:
    try:
        from mamba_ssm import Mamba  # noqa: F401
    except (ImportError, OSError) as err:  # absent, or installed but broken (transformers 5)
        return f"needs mamba_ssm ({err})"
    return None


needs_kernels = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None
    or _mamba_ssm_import_error() is not None,
    reason="needs CUDA and an importable mamba_ssm")


@pytest.mark.gpu
@needs_kernels
def test_pure_path_matches_mamba_ssm_on_cuda():
    from mamba_ssm import Mamba

    torch.manual_seed(0)
    cfg = build_model("mamba4rec", 5, init="mamba_ssm").config
    ours = MambaBlock(cfg).cuda()
    theirs = Mamba(d_model=cfg.hidden_size, d_state=cfg.d_state, d_conv=cfg.d_conv,
                   expand=cfg.expand).cuda()
    theirs.load_state_dict(ours.state_dict())      # same parameter names and shapes
    x = torch.randn(4, 50, cfg.hidden_size, device="cuda", requires_grad=True)
    ours.use_kernels = False
    y_pure = ours(x)
    ours.use_kernels = True
    y_kernel = ours(x)
    y_theirs = theirs(x)
    torch.testing.assert_close(y_kernel, y_theirs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_pure, y_theirs, rtol=1e-3, atol=1e-4)
    g_pure = torch.autograd.grad(y_pure.square().sum(), x)[0]
    g_theirs = torch.autograd.grad(y_theirs.square().sum(), x)[0]
    torch.testing.assert_close(g_pure, g_theirs, rtol=1e-3, atol=1e-4)
