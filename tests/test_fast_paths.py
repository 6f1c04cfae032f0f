"""The fast paths of issue 28 against their explicit references, in float64, values and gradients.

  models/base.py      `Dropout` (geometric-gap mask draw)  vs  the Bernoulli(p) mask it stands for
                      `linear_halves` (two products)  vs  layer(x).chunk(2)
  models/recgrela.py  `rotate_pairs` (one complex product)  vs  `apply_rope` (the real formula)
                      `rela_attention` (D x D head-block matmuls)  vs  the per-head einsums of 3672477
                      recomputation with the gap dropout  vs  no recomputation (same masks replayed)
  models/mamba4rec.py `selective_scan` (chunked, buffers)  vs  `selective_scan_ref` (the loop)
  models/cpu_scan.py  the compiled CPU scan (C, one user at a time)  vs  `selective_scan_ref`
                      the compiled conv + SiLU  vs  F.conv1d + F.silu (MambaBlock's PyTorch path)
                      MambaBlock with both  vs  MambaBlock without (use_kernels=False)

Speed is measured by benchmarks/train_throughput.py, never asserted here.
"""
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import build_model
from models.base import (GAP_MAX_P, Dropout, dropout, dropped_positions, geometric_gaps,
                         linear_halves)
from models import cpu_scan
from models.mamba4rec import MambaBlock, selective_scan, selective_scan_ref
from models.recgrela import (apply_rope, rela_attention, rope_angles, rotate_pairs,
                             rotation_phasors, rotation_tables, rope_tables)

torch.set_num_threads(1)


# --- Dropout: the same distribution, a cheaper draw -----------------------------------------
def test_dropout_is_the_identity_in_eval_and_at_p_zero():
    x = torch.randn(4, 5, 6)
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.1).eval()
    assert module(x) is x


@pytest.mark.parametrize("p", [0.05, 0.1, 0.2])
def test_dropout_zeroes_a_bernoulli_share_and_scales_the_rest_like_F_dropout(p):
    n = 400_000
    x = torch.rand(n, dtype=torch.float64) + 0.5                     # never 0
    torch.manual_seed(0)
    y = dropout(x, p, training=True)
    dropped = y == 0
    scale = torch.ones((), dtype=torch.float64).div_(1 - p)           # F.dropout's 1 / (1 - p)
    assert torch.equal(y[~dropped], x[~dropped] * scale)
    # the dropped share is Binomial(n, p) / n: within 6 standard deviations
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(dropped.double().mean().item() - p) < 6 * sd
    # the same share in every tenth of the tensor (no drift along the flat index), and
    # neighbours independent: P(both of a pair dropped) = p^2
    for part in dropped.chunk(10):
        assert abs(part.double().mean().item() - p) < 6 * math.sqrt(p * (1 - p) / len(part))
    both = (dropped[:-1] & dropped[1:]).double().mean().item()
    assert abs(both - p * p) < 6 * math.sqrt(p * p * (1 - p * p) / n)


def test_dropout_runs_of_kept_elements_are_geometric():
    """Gaps between dropped elements are Geometric(p): P(gap = 1) = p, P(gap = 2) = p (1 - p)."""
    p = 0.1
    pos = dropped_positions(1_000_000, p)
    gaps = pos[1:] - pos[:-1]
    m = len(gaps)
    for g, prob in ((1, p), (2, p * (1 - p)), (10, p * (1 - p) ** 9)):
        share = (gaps == g).double().mean().item()
        assert abs(share - prob) < 6 * math.sqrt(prob * (1 - prob) / m), g


@pytest.mark.parametrize("p", [0.01, 0.2])
def test_geometric_gaps_have_the_geometric_law_on_1_2_and_so_on(p):
    """P(G = k) = p (1 - p)^(k - 1) for k = 1, 2, 5, the mean 1 / p, never 0."""
    torch.manual_seed(0)
    m = 400_000
    gaps = geometric_gaps(m, p)
    assert gaps.dtype == torch.int64 and int(gaps.min()) >= 1
    for k in (1, 2, 5):
        prob = p * (1 - p) ** (k - 1)
        share = (gaps == k).double().mean().item()
        assert abs(share - prob) < 6 * math.sqrt(prob * (1 - prob) / m), k
    sd_mean = math.sqrt((1 - p) / p ** 2 / m)
    assert abs(gaps.double().mean().item() - 1 / p) < 6 * sd_mean


def test_dropout_of_a_non_contiguous_input_masks_its_row_major_order_like_a_copy():
    """An FFT's or a transpose's output takes the gap draw too: the same elements (in the
    tensor's logical order) as for its contiguous copy under the same seed, and the same
    mask in the backward."""
    x = torch.randn(30, 40, dtype=torch.float64).t().requires_grad_()   # (40, 30), strides (1, 40)
    assert not x.is_contiguous()
    torch.manual_seed(2)
    y = dropout(x, 0.2, training=True)
    torch.manual_seed(2)
    assert torch.equal(y, dropout(x.detach().contiguous(), 0.2, training=True))
    g = torch.randn(40, 30, dtype=torch.float64)
    (y * g).sum().backward()
    kept = (y != 0).double()
    torch.testing.assert_close(x.grad, g * kept / 0.8, rtol=1e-12, atol=0)
    assert 0 < (kept == 0).sum() < kept.numel()


def test_every_position_of_a_short_tensor_is_dropped_with_probability_p():
    """The window's first and last elements too (the ends of the gap process), over 4,000 draws."""
    p, n, draws = 0.2, 5, 4000
    torch.manual_seed(0)
    counts = torch.zeros(n)
    for _ in range(draws):
        counts[dropped_positions(n, p)] += 1
    sd = math.sqrt(p * (1 - p) / draws)
    assert ((counts / draws - p).abs() < 5 * sd).all(), counts / draws


def test_dropout_is_reproducible_under_manual_seed_and_changes_with_the_seed():
    x = torch.randn(64, 50, 32)
    torch.manual_seed(5)
    a = dropout(x, 0.1, True)
    torch.manual_seed(5)
    b = dropout(x, 0.1, True)
    torch.manual_seed(6)
    c = dropout(x, 0.1, True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dropped_positions_are_sorted_distinct_in_range_even_when_blocks_run_short():
    for n, p in ((1, 0.2), (7, 0.25), (1000, 0.01), (100_000, 0.2)):
        torch.manual_seed(n)
        pos = dropped_positions(n, p)
        assert pos.dtype == torch.int64
        assert bool((pos[1:] > pos[:-1]).all()) and (len(pos) == 0 or (0 <= pos[0] and pos[-1] < n))


def test_dropout_gradient_is_the_same_mask_times_the_scale():
    x = torch.randn(3, 40, 16, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 40, 16, dtype=torch.float64)
    torch.manual_seed(1)
    y = dropout(x, 0.2, training=True)
    (y * g).sum().backward()
    mask = (y != 0).double() / 0.8
    torch.testing.assert_close(x.grad, g * mask, rtol=1e-15, atol=0)


def test_dropout_gradient_masks_the_same_elements_when_the_incoming_gradient_is_transposed():
    """GRU4Rec's embedding dropout gets a gradient laid out column-major from the GRU; the mask
    of the backward must still be the forward's, element for element."""
    torch.manual_seed(0)
    x = torch.randn(40, 30, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.2, training=True)
    w = torch.randn(30, 40, dtype=torch.float64)
    (y.t() * w).sum().backward()                      # dLoss/dy = w.t(), not contiguous
    kept = (y != 0).double()
    torch.testing.assert_close(x.grad, kept * w.t() / 0.8, rtol=1e-12, atol=0)
    assert 0 < (kept == 0).sum() < kept.numel()


def test_dropout_above_the_gap_threshold_is_F_dropout_itself():
    x = torch.randn(8, 9)
    torch.manual_seed(3)
    a = dropout(x, GAP_MAX_P + 0.1, True)
    torch.manual_seed(3)
    assert torch.equal(a, F.dropout(x, GAP_MAX_P + 0.1, True))


# --- linear_halves: a Linear's output halves as two products ----------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_linear_halves_equal_the_chunked_output_values_and_gradients(bias):
    torch.manual_seed(0)
    layer = nn.Linear(12, 2 * 7, bias=bias).double()
    x = torch.randn(3, 5, 12, dtype=torch.float64).transpose(0, 1).requires_grad_()   # any layout
    g1, g2 = torch.randn(2, 5, 3, 7, dtype=torch.float64)
    results = []
    for halves in (linear_halves, lambda m, v: m(v).chunk(2, dim=-1)):
        layer.zero_grad(set_to_none=True)
        x.grad = None
        a, b = halves(layer, x)
        torch.autograd.backward([a, b], [g1, g2])
        results.append((a, b, x.grad, *(p.grad for p in layer.parameters())))
    assert len(results[0]) == 4 + bias
    for fast, reference in zip(*results):
        torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)


# --- RecGRELA: RoPE in one pass, attention as head-block matmuls ------------------------------
@pytest.mark.parametrize("L", [1, 7, 200])
def test_rotate_pairs_equals_apply_rope_values_and_gradients(L):
    g = torch.Generator().manual_seed(L)
    x = torch.randn(3, L, 16, dtype=torch.float64, generator=g, requires_grad=True)
    angles = rope_angles(torch.arange(L), 16, 10000.0).requires_grad_()   # as "learnable"
    w = torch.randn(3, L, 16, dtype=torch.float64, generator=g)
    outs = []
    for fast in (False, True):
        cos, sin = rotation_tables(angles, torch.float64)
        y = rotate_pairs(x, rotation_phasors(cos, sin)) if fast else apply_rope(x, cos, sin)
        outs.append([y] + list(torch.autograd.grad((y * w).sum(), (x, angles))))
    for slow, fast in zip(*outs):
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-13)


def rela_attention_3672477(q, k, v, cos, sin, num_heads, eps=1e-6):
    """The non-causal attention as 3672477 computed it: per-head einsums on [B, L, H, hd]."""
    B, L, D = q.shape
    hd = D // num_heads
    qr, kr = (apply_rope(q, cos, sin), apply_rope(k, cos, sin)) if cos is not None else (q, k)
    qr, kr, vh = (t.reshape(B, L, num_heads, hd) for t in (qr, kr, v))
    kv = torch.einsum("blhd,blhe->bhde", kr, vh) * (1.0 / L)
    num = torch.einsum("blhd,bhde->blhe", qr, kv)
    k_mean = k.mean(dim=1).view(B, 1, num_heads, hd)
    den = (q.reshape(B, L, num_heads, hd) * k_mean).sum(-1, keepdim=True) + eps
    return (num / den).reshape(B, L, D)


@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("L", [1, 5, 64, 65])
def test_head_block_attention_equals_per_head_einsums_values_and_gradients(L, rope):
    g = torch.Generator().manual_seed(L)
    B, D, H = 2, 16, 4
    q, k = (F.elu(torch.randn(B, L, D, dtype=torch.float64, generator=g)) + 1 for _ in range(2))
    v = torch.randn(B, L, D, dtype=torch.float64, generator=g)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    cos, sin = rope_tables(torch.arange(L), D, 10000.0, torch.float64) if rope else (None, None)
    w = torch.randn(B, L, D, dtype=torch.float64, generator=g)
    outs = []
    for fn in (lambda: rela_attention_3672477(q, k, v, cos, sin, H),
               lambda: rela_attention(q, k, v, cos, sin, H, causal=False)):
        y = fn()
        outs.append([y] + list(torch.autograd.grad((y * w).sum(), (q, k, v))))
    for slow, fast in zip(*outs):
        torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)


def test_recgrela_with_gap_dropout_recomputes_the_same_masks():
    """recompute=True redraws the gap-dropout masks in backward from the replayed RNG state:
    loss and every gradient equal those of recompute=False (dropout 0.1 < GAP_MAX_P)."""
    grads = []
    for recompute in (True, False):
        torch.manual_seed(0)
        model = build_model("recgrela", 13, hidden_size=8, num_heads=2, num_layers=2,
                            dropout=0.1, drop_path=0.1, recompute=recompute).double().train()
        seq = torch.randint(1, 13, (4, 9), generator=torch.Generator().manual_seed(1))
        torch.manual_seed(7)
        loss = model.calculate_loss(seq, torch.full((4,), 9), torch.tensor([3, 4, 5, 6]))
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-13, rtol=0) for a, b in zip(*grads))


@pytest.mark.parametrize("name", ["recgrela", "lrurec"])
def test_bf16_autocast_runs_and_stays_close_to_fp32(name):
    """Under bf16 autocast the scores stay within 5% of fp32's. LRURec: no complex bf16 exists,
    so its LRU's inputs are cast to float32 (3672477 failed with 'Expected both inputs to be
    Half, Float or Double tensors')."""
    torch.manual_seed(0)
    model = build_model(name, 50).eval()
    seq = torch.randint(1, 50, (4, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model.full_sort_predict(seq, torch.full((4,), 30))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.full_sort_predict(seq, torch.full((4,), 30))
    assert (low.float() - full).abs().max().item() < 0.05 * full.abs().max().item()


# --- Mamba's selective scan: chunked with buffers vs the per-position loop ---------------------
def scan_inputs(batch, L, E, N, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, dtype=torch.float64, generator=g)
    x = dict(u=r(batch, L, E), delta=r(batch, L, E) * 0.5, A=-torch.rand(E, N, dtype=torch.float64, generator=g) * 3,
             B=r(batch, L, N), C=r(batch, L, N), D=r(E), z=r(batch, L, E), delta_bias=r(E) * 0.1)
    return {k: v.requires_grad_() for k, v in x.items()}


@pytest.mark.parametrize("batch,L,chunk,group", [
    (2, 1, 0, 0), (2, 5, 0, 0), (2, 17, 0, 0), (2, 17, 4, 0), (2, 40, 6, 0), (2, 40, 40, 0),
    (5, 17, 4, 2), (5, 17, 0, 1), (5, 40, 6, 3)])
def test_selective_scan_equals_the_loop_values_and_gradients(batch, L, chunk, group):
    """Lengths 17 and 40 are not multiples of chunk 4 / 6 (or of the automatic sqrt(L/3)); 5
    users in groups of 2 (2 + 2 + 1), 1 and 3 (3 + 2); group 0 is the automatic size."""
    x = scan_inputs(batch, L, 6, 4, seed=L)
    w = torch.randn(batch, L, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    outs = []
    for fn in (lambda: selective_scan_ref(**x),
               lambda: selective_scan(**x, chunk_size=chunk, group_size=group)):
        y = fn()
        outs.append([y] + list(torch.autograd.grad((y * w).sum(), list(x.values()))))
    for name, slow, fast in zip(["y"] + list(x), *outs):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-11, msg=name)


def test_selective_scan_of_bf16_inputs_is_computed_in_float32_like_the_reference():
    x = {k: v.detach().float().to(torch.bfloat16) if k in ("u", "delta", "B", "C", "z") else v.detach().float()
         for k, v in scan_inputs(2, 12, 6, 4, seed=3).items()}
    got = selective_scan(**x, chunk_size=5)
    want = selective_scan_ref(**x)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)


# --- the compiled CPU scan vs the per-position loop ------------------------------------------
needs_compiler = pytest.mark.skipif(not cpu_scan.available(torch.float64),
                                    reason="no C compiler here: the compiled CPU scan is not built")


@needs_compiler
@pytest.mark.parametrize("batch,L,threads,chunk", [(1, 1, 1, 0), (2, 17, 1, 0), (5, 40, 1, 0),
                                                  (5, 40, 2, 0), (3, 9, 4, 0), (2, 17, 1, 5),
                                                  (3, 40, 2, 8), (2, 9, 1, 1)])
@pytest.mark.parametrize("gate_and_bias", [True, False])
def test_compiled_scan_equals_the_loop_values_and_gradients(batch, L, threads, chunk,
                                                            gate_and_bias, monkeypatch):
    """float64 build, softplus, D skip and gate included (or no z and no delta_bias); users
    split over 1, 2 or 4 threads (5 users -> 2 + 3; 3 users over 4 threads -> 3 groups of
    one), the per-channel partial sums of the groups added. chunk 0 keeps the default chunk
    (longer than these windows); 5, 8 and 1 make backward recompute 17 and 40 positions in
    chunks that do not divide them, from the states the forward kept."""
    if chunk:   # bytes of states + decays that give `chunk` positions at E 6, N 4, float64
        monkeypatch.setattr(cpu_scan, "CHUNK_BYTES", 2 * 6 * 4 * 8 * chunk)
    x = scan_inputs(batch, L, 6, 4, seed=L + batch)
    if not gate_and_bias:
        x = {k: v for k, v in x.items() if k not in ("z", "delta_bias")}
    w = torch.randn(batch, L, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    outs = []
    torch.set_num_threads(threads)
    try:
        for fn in (lambda: selective_scan_ref(**x), lambda: selective_scan(**x, compiled=True)):
            y = fn()
            outs.append([y] + list(torch.autograd.grad((y * w).sum(), list(x.values()))))
    finally:
        torch.set_num_threads(1)
    for name, slow, fast in zip(["y"] + list(x), *outs):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-11, msg=name)


def assert_compiled_scan_equals_the_loop(x, dtype, tol, w_seed=5):
    """The compiled scan on scan_inputs x cast to dtype against the loop in float64: y and
    every gradient of (y * w).sum()."""
    x = {k: v.detach().to(dtype).requires_grad_() for k, v in x.items()}
    batch, L, E = x["u"].shape
    w = torch.randn(batch, L, E, dtype=dtype, generator=torch.Generator().manual_seed(w_seed))
    outs = []
    for fn in (lambda: selective_scan_ref(**{k: v.double() for k, v in x.items()}),
               lambda: selective_scan(**x, compiled=True).double()):
        y = fn()
        outs.append([y] + list(torch.autograd.grad((y * w.double()).sum(), list(x.values()))))
    for name, slow, fast in zip(["y"] + list(x), *outs):
        torch.testing.assert_close(fast.double(), slow.double(), rtol=tol, atol=tol, msg=name)


@needs_compiler
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_compiled_scan_past_softplus_threshold_and_exp_underflow_equals_the_loop(dtype, tol):
    """Delta inputs above 20 (softplus returns its input there, and so must its gradient) and
    decays exp(Delta A) down to e^-250, below float32's smallest normal: the float32 build's
    decay reads 2^-125 = 2.4e-38 there instead of 0, which must not show in y or the gradients."""
    x = scan_inputs(2, 12, 6, 4, seed=7)
    with torch.no_grad():
        x["delta"][:, ::3] += 25.0
        x["A"].mul_(3.0)                                           # A down to -9: Delta A to -250
    assert_compiled_scan_equals_the_loop(x, dtype, tol, w_seed=3)


@needs_compiler
@pytest.mark.parametrize("dtype,E,N,tol", [(torch.float64, 20, 15, 1e-10), (torch.float32, 37, 11, 1e-4)])
def test_compiled_scan_blocks_of_every_shape_equal_the_loop(dtype, E, N, tol, monkeypatch):
    """The scan goes block by block: a vector of channels (8 float64 or 16 float32 with
    AVX-512, half that with AVX2) by 8 states (4 with AVX2). E = 20 and 37 give full vectors and
    a partial one; N = 15 and 11 give blocks of every size the kernel has (8, 4, 2, 1); chunks of
    7 positions do not divide L = 33."""
    monkeypatch.setattr(cpu_scan, "CHUNK_BYTES", 2 * E * N * torch.finfo(dtype).bits // 8 * 7)
    assert_compiled_scan_equals_the_loop(scan_inputs(3, 33, E, N, seed=E + N), dtype, tol)


@needs_compiler
@pytest.mark.skipif("avx512f" not in cpu_scan._cpu_features(),
                    reason="no AVX-512 on this CPU: every other test already runs the portable build")
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_the_build_without_avx512_equals_the_loop(dtype, tol, tmp_path, monkeypatch):
    """An AVX2-only CPU (the AMD machines) builds the portable decay (2^x from the exponent
    bits, GCC vector extensions of 256 bits, blocks of 4 states): built here with
    -mno-avx512f into an empty cache."""
    monkeypatch.setattr(cpu_scan, "FLAGS", cpu_scan.FLAGS + ["-mno-avx512f"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_scan._library.cache_clear()
    try:
        assert cpu_scan.available(dtype)
        for shape in ((3, 33, 20, 15), (2, 12, 6, 4)):
            assert_compiled_scan_equals_the_loop(scan_inputs(*shape, seed=sum(shape[2:])), dtype, tol)
    finally:
        cpu_scan._library.cache_clear()


@needs_compiler
def test_compiled_scan_reads_B_C_and_z_as_column_slices_of_wider_rows():
    """MambaBlock's B, C (of x_proj's output) and z (of in_proj's) are views with a row stride
    wider than their width: the kernel reads them in place, with the values of copies."""
    x = scan_inputs(3, 11, 6, 4, seed=5)
    wide = torch.randn(3, 11, 2 + 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xz = torch.randn(3, 11, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x["B"], x["C"], x["z"] = wide[..., 2:6], wide[..., 6:], xz[..., 6:]
    assert not x["B"].is_contiguous() and not x["z"].is_contiguous()
    copies = {k: v.contiguous() for k, v in x.items()}
    torch.testing.assert_close(selective_scan(**x, compiled=True), selective_scan_ref(**copies),
                               rtol=1e-10, atol=1e-11)


@needs_compiler
@pytest.mark.parametrize("batch,L,E,K,threads", [(2, 9, 5, 4, 1), (5, 3, 8, 4, 2), (3, 12, 6, 1, 3),
                                                 (1, 1, 4, 4, 1)])
def test_compiled_conv_silu_equals_conv1d_values_and_gradients(batch, L, E, K, threads):
    """SiLU(causal depthwise conv) as MambaBlock's PyTorch path computes it (Conv1d padded
    K - 1 on both sides, the first L outputs kept); the input a column slice of in_proj's
    output (row stride 2E), as in the block; windows shorter than the kernel included."""
    g = torch.Generator().manual_seed(L + E)
    xz = torch.randn(batch, L, 2 * E, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(E, K, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(E, dtype=torch.float64, generator=g, requires_grad=True)
    weights = torch.randn(batch, L, E, dtype=torch.float64, generator=g)
    conv1d = lambda x: F.silu(F.conv1d(x.transpose(1, 2), w[:, None], bias, padding=K - 1,
                                       groups=E)[..., :L]).transpose(1, 2)
    outs = []
    torch.set_num_threads(threads)
    try:
        for fn in (conv1d, lambda x: cpu_scan.ConvSiLU.apply(x, w, bias)):
            y = fn(xz[..., :E])
            outs.append([y] + list(torch.autograd.grad((y * weights).sum(), [xz, w, bias])))
    finally:
        torch.set_num_threads(1)
    for name, slow, fast in zip(["y", "x", "w", "bias"], *outs):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-11, msg=name)


@needs_compiler
def test_recgrela_local_shortcut_through_the_compiled_conv_equals_its_pytorch_taps():
    """RecGRELA's rank augmentation branch on a CPU: the compiled conv + SiLU against the
    shifted multiply-adds of its PyTorch path, float64, values and gradients (v, taps, bias)."""
    torch.manual_seed(0)
    rela = build_model("recgrela", 50, hidden_size=8, num_heads=2).double().blocks[0].rela
    v = torch.randn(3, 11, 8, dtype=torch.float64, requires_grad=True)
    outs = []
    for fast in (False, True):
        rela.cfg.fast_kernels = fast
        y = rela.local_shortcut(v)
        outs.append([y] + list(torch.autograd.grad(y.square().sum(), [v, *rela.conv.parameters()])))
    rela.cfg.fast_kernels = True
    for name, slow, fast in zip(["y", "v", "weight", "bias"], *outs):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-11, msg=name)


@needs_compiler
@pytest.mark.parametrize("L", [1, 3, 40])
def test_mamba_block_with_the_compiled_kernels_equals_its_pytorch_path(L):
    """The whole block, float64: output and the gradients of its input and every parameter
    (in_proj, conv, x_proj, dt_proj with its bias, A_log, D, out_proj)."""
    from models.mamba4rec import Config
    torch.manual_seed(L)
    compiled = MambaBlock(Config(hidden_size=8, d_state=4, use_kernels=True)).double()
    plain = MambaBlock(Config(hidden_size=8, d_state=4, use_kernels=False)).double()
    plain.load_state_dict(compiled.state_dict())
    u = torch.randn(3, L, 8, dtype=torch.float64, requires_grad=True)
    outs = []
    for block in (plain, compiled):
        y = block(u)
        outs.append([y] + list(torch.autograd.grad(y.square().sum(), [u, *block.parameters()])))
    names = ["y", "u"] + [n for n, _ in compiled.named_parameters()]
    for name, slow, fast in zip(names, *outs):
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-11, msg=name)


@needs_compiler
def test_compiled_scan_in_float32_and_bf16_is_within_float32_rounding_of_the_loop():
    x64 = scan_inputs(3, 30, 8, 16, seed=4)
    want = selective_scan_ref(**x64)
    x32 = {k: v.detach().float() for k, v in x64.items()}
    torch.testing.assert_close(selective_scan(**x32, compiled=True).double(), want,
                               rtol=1e-4, atol=1e-4)
    x16 = {k: v.to(torch.bfloat16) if k in ("u", "delta", "B", "C", "z") else v for k, v in x32.items()}
    got = selective_scan(**x16, compiled=True)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), selective_scan_ref(**x16).float(), rtol=1e-2, atol=1e-2)


@needs_compiler
@pytest.mark.parametrize("use_kernels", [True, False])
def test_mamba_block_on_cpu_takes_the_compiled_kernels_exactly_when_use_kernels(use_kernels, monkeypatch):
    from models.mamba4rec import Config
    calls = []
    for kernel in (cpu_scan.CompiledScan, cpu_scan.ConvSiLU):
        real = kernel.apply
        monkeypatch.setattr(kernel, "apply", lambda *a, real=real, name=kernel.__name__:
                            calls.append(name) or real(*a))
    torch.manual_seed(0)
    block = MambaBlock(Config(hidden_size=8, d_state=4, use_kernels=use_kernels)).double()
    u = torch.randn(2, 7, 8, dtype=torch.float64, requires_grad=True)
    block(u).sum().backward()
    assert sorted(calls) == (["CompiledScan", "ConvSiLU"] if use_kernels else [])


def test_a_failed_build_warns_leaves_no_library_and_the_scan_falls_back(tmp_path, monkeypatch):
    """`false` as the compiler: the build fails, nothing under the cache looks built, and
    MambaBlock runs the PyTorch scan."""
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_scan._library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="compiled CPU scan is unavailable"):
            assert not cpu_scan.available(torch.float32)
        assert not list(tmp_path.rglob("*.so"))
        from models.mamba4rec import Config
        block = MambaBlock(Config(hidden_size=8, d_state=4)).double()
        with pytest.warns(UserWarning, match="using the PyTorch scan"):   # the float64 build
            assert block(torch.randn(2, 5, 8, dtype=torch.float64)).shape == (2, 5, 8)
    finally:
        cpu_scan._library.cache_clear()


@needs_compiler
def test_the_kernel_builds_into_an_empty_cache_and_is_reused(tmp_path, monkeypatch):
    """A fresh machine: one library per precision appears under $XDG_CACHE_HOME/recgrela-bench,
    complete (no temporary left), and a second load builds nothing."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_scan._library.cache_clear()
    try:
        assert cpu_scan.available(torch.float32) and cpu_scan.available(torch.float64)
        built = sorted(p.name for p in (tmp_path / "recgrela-bench").iterdir())
        assert len(built) == 2 and all(n.startswith("selective_scan_") and n.endswith(".so") for n in built)
        stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "recgrela-bench").iterdir()}
        cpu_scan._library.cache_clear()
        assert cpu_scan.available(torch.float32)
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    finally:
        cpu_scan._library.cache_clear()


@needs_compiler
def test_loading_the_kernel_leaves_the_processs_subnormals_alone(tmp_path):
    """Built with -ffast-math but linked without it: no crtfastmath constructor that would turn
    on flush-to-zero for every computation of the process that loads the library."""
    import subprocess
    import sys
    code = ("import torch\n"
            "from models import cpu_scan\n"
            "tiny = lambda: (torch.tensor([1e-30]) * torch.tensor([1e-10])).item()\n"
            "before = tiny()\n"
            "assert cpu_scan.available(torch.float32)\n"
            "print(before != 0, tiny() != 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(cpu_scan.__file__).parents[1],
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert out.stdout.split() == ["True", "True"], out.stderr
