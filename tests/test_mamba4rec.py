"""Mamba4Rec: the pure-PyTorch selective scan (values and its hand-written backward) against
an explicit per-position loop in float64, the block's causality, the init options, and
parity with mamba_ssm's CUDA kernels where they exist."""
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from models import build_model
from models.mamba4rec import MambaBlock, selective_scan

torch.set_num_threads(1)
f64 = torch.float64


def loop_scan(u, delta, A, B, C, D, z, delta_bias):
    """Mamba's recurrence, one position at a time (float64)."""
    delta = F.softplus(delta + delta_bias)
    h = torch.zeros(u.size(0), A.size(0), A.size(1), dtype=u.dtype)
    ys = []
    for t in range(u.size(1)):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1) * F.silu(z)


def _inputs(B=2, L=11, E=3, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=f64).requires_grad_()
    A = (-torch.rand(E, N, generator=g, dtype=f64) * 3).requires_grad_()
    return dict(u=r(B, L, E), delta=r(B, L, E), A=A, B=r(B, L, N), C=r(B, L, N), D=r(E),
                z=r(B, L, E), delta_bias=r(E))


@pytest.mark.parametrize("chunk", [1, 3, 4, 11, 64])
def test_scan_and_its_backward_match_loop(chunk):
    x = _inputs()
    want = loop_scan(**x)
    got = selective_scan(**x, chunk_size=chunk)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(want)
    g_want = torch.autograd.grad((want * weights).sum(), list(x.values()))
    g_got = torch.autograd.grad((got * weights).sum(), list(x.values()))
    for name, a, b in zip(x, g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


def test_scan_gradcheck():
    x = _inputs(B=1, L=5, E=2, N=2, seed=1)
    fn = lambda *args: selective_scan(*args, chunk_size=2)
    assert torch.autograd.gradcheck(fn, tuple(x.values()))


def _config(**kw):
    return build_model("mamba4rec", 5, hidden_size=8, d_state=4, dropout_prob=0.0, **kw).config


def test_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(_config(scan_chunk=3)).double()
    x = torch.randn(2, 9, 8, dtype=f64)
    y = x.clone()
    y[:, 5:] = torch.randn(2, 4, 8, dtype=f64)
    torch.testing.assert_close(block(x)[:, :5], block(y)[:, :5])
    assert not torch.allclose(block(x)[:, 5:], block(y)[:, 5:])


def test_reference_init_overrides_mamba_ssm_init():
    torch.manual_seed(0)
    ref = build_model("mamba4rec", 50).layers[0].mamba
    own = build_model("mamba4rec", 50, init="mamba_ssm").layers[0].mamba
    # Reference: RecBole re-init zeroes dt_proj.bias -> Delta = softplus(0) at init.
    assert torch.count_nonzero(ref.dt_proj.bias) == 0
    assert ref.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    # mamba_ssm: softplus(dt bias) log-uniform in [dt_min, dt_max] = [0.001, 0.1].
    dt = F.softplus(own.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    for block in (ref, own):   # untouched by either: S4D-real A and the D skip
        torch.testing.assert_close(-torch.exp(block.A_log[0]), -torch.arange(1.0, 33.0))
        torch.testing.assert_close(block.D, torch.ones_like(block.D))


def test_one_layer_model_has_no_residual_around_the_block():
    torch.manual_seed(0)
    one = build_model("mamba4rec", 20, hidden_size=8, d_state=4, num_layers=1, dropout_prob=0.0)
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
