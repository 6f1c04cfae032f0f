"""Mamba4Rec: selective state-space (Mamba) layers for sequential recommendation, as the
RecGRELA reference runs it.

Papers: C. Liu et al., "Mamba4Rec: Towards Efficient Sequential Recommendation with Selective
State Space Models", arXiv 2403.03900 (2024); the Mamba block: A. Gu and T. Dao, "Mamba:
Linear-Time Sequence Modeling with Selective State Spaces", arXiv 2312.00752 (2023).
Reference code: RecGRELA `model/Mamba4Rec.py` (on RecBole 1.2, `mamba_ssm.Mamba` blocks),
`config/Mamba4Rec.yaml` (hidden 64, 2 layers, dropout 0.2, d_state 32, d_conv 4, expand 2).

Config fields <- the reference config's keys: hidden_size, num_layers, d_state, d_conv, expand
(the same keys); dropout <- dropout_prob; init, chunk_size, use_kernels are this suite's options.

Notation. As in the Mamba paper, B and C are the input and output matrices of the SSM and D its
skip vector; so in this file the batch size is `batch` (never B), the model width is `d_model`
(= hidden_size, never D), E = expand * d_model channels, N = d_state, R = ceil(d_model / 16).
Paper symbols -> variables (one Mamba block):
    [x; z] = W_in u                                     MambaBlock.in_proj (no bias)   (batch, L, 2E)
    x <- SiLU(causal depthwise conv_k(x)), k = d_conv   MambaBlock.conv1d              (batch, L, E)
    [dt; B_t; C_t] = W_x x                              MambaBlock.x_proj              (batch, L, R + 2N)
    Delta_t = softplus(W_dt dt + b_dt)                  MambaBlock.dt_proj
    A = -exp(A_log)  (E, N), S4D-real init A_n = -n     MambaBlock.A_log
    A_bar_t = exp(Delta_t A),  B_bar_t = Delta_t B_t    discretisation (ZOH for A, Euler for B)
    h_t = A_bar_t * h_{t-1} + B_bar_t x_t               selective_scan(u=x, ...)  h_t (batch, E, N)
    y_t = C_t . h_t + D * x_t,   y <- y * SiLU(z)       MambaBlock.D (skip), gate z
    out = W_out y                                       MambaBlock.out_proj (no bias)  (batch, L, d_model)
Around each block (reference MambaLayer + FeedForward, post-LN):
    x' = LN(x + Dropout(Mamba(x)))   (one-layer model: LN(Dropout(Mamba(x))), no residual)
    x'' = LN(x' + Dropout(W_2 Dropout(GELU(W_1 x'))))   d_ff = 4 d_model (models/base.py FeedForward)
    input: x^0 = LN(Dropout(E[s]))   (dropout BEFORE LayerNorm, as the reference)

Selective scan. On CUDA with `mamba_ssm` installed (and `use_kernels`), the block calls
mamba_ssm's fused `selective_scan_fn` (and causal_conv1d's kernel when present). On a CPU (and
`use_kernels`) it calls the C kernels of models/cpu_scan.py when a C compiler is present: the
conv + SiLU, and `selective_scan(..., compiled=True)`, softplus to gate in one kernel (one
user at a time, the state in cache; backward recomputes the states chunk by chunk from the
states the forward kept at chunk starts, O(batch L E N / chunk) memory). Otherwise the
pure-PyTorch `selective_scan` below loops over positions with a vectorised (batch, E, N) state
update and has its own backward (the adjoint recurrence, right to left) that recomputes states
chunk by chunk (`chunk_size` positions): only chunk-boundary states are kept, so memory is
O(batch L E) instead of the O(batch L E N) of materialising every state (13 GB at batch 256,
L=3200, E=128, N=32), as mamba_ssm's kernel also recomputes states in backward.
`selective_scan_ref` is the plain per-step loop with the same arguments (autograd backward), the
float64 reference all are tested against (tests/test_mamba4rec.py, tests/test_fast_paths.py).
The parameter names equal mamba_ssm.Mamba's, so state dicts load into either.

Fidelity note (init, default = the reference): the reference applies RecBole's `_init_weights`
to the WHOLE model after building the mamba_ssm blocks, so every Linear inside them is
re-drawn from N(0, 0.02) and every Linear bias zeroed, dt_proj's bias included: softplus(0)
gives Delta ~ 0.69 at init instead of mamba_ssm's log-uniform [0.001, 0.1]. A_log, D and the
conv1d keep mamba_ssm's / PyTorch's init. `init="mamba_ssm"` keeps mamba_ssm's own block init
(dt weight uniform +-R^-0.5, dt bias = softplus^-1 of the log-uniform Delta, PyTorch default
Linear init) and applies N(0, 0.02) only outside the blocks.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import cpu_scan
from models.base import (Dropout, FeedForward, SequentialRecommender, linear_halves,
                         recbole_init_except)

try:  # optional CUDA kernels; the pure-PyTorch path below is the reference
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    KERNEL_IMPORT_ERROR = None
except (ImportError, OSError) as err:
    # installed but broken is not the same as absent: mamba-ssm 2.2.x imports transformers'
    # generation classes that transformers 5 removed, and then every kernel is unusable
    selective_scan_fn = None
    KERNEL_IMPORT_ERROR = None if getattr(err, "name", None) == "mamba_ssm" else err
try:
    from causal_conv1d import causal_conv1d_fn
except (ImportError, OSError):
    causal_conv1d_fn = None


@dataclass
class Config:
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2         # embedding, block-output and feed-forward dropout
    d_state: int = 32            # N
    d_conv: int = 4              # causal conv width
    expand: int = 2              # E = expand * hidden_size
    init: str = "reference"      # reference (RecBole re-init of the blocks) | mamba_ssm
    chunk_size: int = 0          # pure-PyTorch scan: positions per recomputed chunk (0 = auto)
    use_kernels: bool = True     # mamba_ssm / causal_conv1d kernels on CUDA when installed; the compiled scan on CPU


def selective_scan_ref(u, delta, A, B, C, D, z=None, delta_bias=None):
    """Mamba's selective scan as a plain loop over positions: the reference for `selective_scan`
    (the same arguments but chunk_size; mamba_ssm's `selective_scan_ref` with
    delta_softplus=True, channel-last). Autograd differentiates it.

    u, delta (batch, L, E); A (E, N); B, C (batch, L, N); D (E,); z (batch, L, E) or None;
    delta_bias (E,) or None; u is the paper's SSM input x.  Returns y (batch, L, E) in u's
    dtype, computed in float32 (float64 inputs in float64):
        1. Delta_t = softplus(delta_t + delta_bias)                           (batch, E)
        2. A_bar_t = exp(Delta_t A),  B_bar_t u_t = Delta_t u_t B_t          (batch, E, N)
        3. h_t = A_bar_t * h_{t-1} + B_bar_t u_t,  h_0 = 0                   (batch, E, N)
        4. y_t = C_t . h_t + D * u_t                                         (batch, E)
        5. y = y * SiLU(z)
    """
    dtype_in = u.dtype
    dtype = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C, D = (t.to(dtype) for t in (u, delta, A, B, C, D))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)
    delta = F.softplus(delta)                                               # 1.
    batch, L, E = u.shape
    h = u.new_zeros(batch, E, A.size(1))                                    # (batch, E, N)
    ys = []
    for t in range(L):
        A_bar = torch.exp(delta[:, t, :, None] * A)                         # 2. (batch, E, N)
        Bu = (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]         #    (batch, E, N)
        h = A_bar * h + Bu                                                  # 3.
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])             # 4. (batch, E)
    y = torch.stack(ys, dim=1)                                              # (batch, L, E)
    if z is not None:
        y = y * F.silu(z.to(dtype))                                         # 5.
    return y.to(dtype_in)


def _chunk_states(h0, delta, du, A, B, dA, X):
    """States of one chunk of c positions, time-major, written into the buffers dA and X.
    h0 (batch, E, N); delta, du = Delta * u (c, batch, E); B (c, batch, N); dA, X
    (c, batch, E, N). Returns A_bar = exp(Delta A) in dA and the states h_1..h_c in X."""
    torch.mul(delta[..., None], A, out=dA).exp_()                       # A_bar_t
    torch.mul(du[..., None], B[:, :, None, :], out=X)                   # B_bar_t u_t
    X[0].addcmul_(dA[0], h0)                                            # h_1 = A_bar_1 h_0 + B_bar_1 u_1
    for t in range(1, X.size(0)):   # the recurrence: one fused multiply-add per position, in place
        X[t].addcmul_(dA[t], X[t - 1])                                  # h_t = A_bar_t h_{t-1} + B_bar_t u_t
    return dA, X


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t . h_t,  h_t = exp(Delta_t A) h_{t-1} + Delta_t u_t B_t,  h_0 = 0 (time-major).

    Forward keeps only the state entering each chunk; backward recomputes one chunk's states
    and runs the adjoint recurrence G_t = C_t g_t + A_bar_{t+1} G_{t+1} right to left, so the
    (L, b, E, N) states never exist at once and autograd holds no per-position nodes.
    Every (c, b, E, N) tensor lives in one of three buffers reused chunk after chunk (no
    allocation, no page faults), every product over N or E is a matmul on those buffers in
    place (an einsum would copy them into a heads-first layout first), and the gradient of
    Delta A is formed in place in the A_bar buffer: measured 2.2x faster than the chunked
    loop it replaced (forward + backward, b 256, L 200, E 128, N 32, one thread).
    """

    @staticmethod
    def forward(ctx, delta, u, A, B, C, chunk_size):
        L, batch, E = u.shape                                            # time-major (L, batch, E)
        N = A.size(1)
        c = min(chunk_size, L)
        du = delta * u                                                   # (L, batch, E)
        starts = u.new_empty(-(-L // c), batch, E, N)                    # state entering each chunk
        y = u.new_empty(L, batch, E)
        dA, X = u.new_empty(c, batch, E, N), u.new_empty(c, batch, E, N)
        h = u.new_zeros(batch, E, N)
        for k in range(starts.size(0)):
            s, e = k * c, min((k + 1) * c, L)
            starts[k] = h
            _, states = _chunk_states(starts[k], delta[s:e], du[s:e], A, B[s:e], dA[:e - s], X[:e - s])
            torch.matmul(states, C[s:e, :, :, None], out=y[s:e, :, :, None])  # y_t = h_t C_t
            h = states[-1]                                               # copied into starts next
        ctx.chunk_size = c
        ctx.save_for_backward(delta, u, du, A, B, C, starts)
        return y                                                         # (L, batch, E)

    @staticmethod
    def backward(ctx, grad_y):
        delta, u, du, A, B, C, starts = ctx.saved_tensors
        L, batch, E = u.shape
        N, c = A.size(1), ctx.chunk_size
        grad_y = grad_y.contiguous()
        g_delta, g_u = torch.empty_like(delta), torch.empty_like(u)
        g_B, g_C = torch.empty_like(B), torch.empty_like(C)
        g_A = torch.zeros(E, N, 1, dtype=A.dtype, device=A.device)
        g_next = torch.zeros_like(starts[0])   # dLoss/dh at this chunk's end, through later chunks
        dA_buf, X_buf, G_buf = (u.new_empty(c, batch, E, N) for _ in range(3))
        for k in reversed(range(starts.size(0))):
            s, e = k * c, min((k + 1) * c, L)
            m = e - s
            dA, states = _chunk_states(starts[k], delta[s:e], du[s:e], A, B[s:e], dA_buf[:m], X_buf[:m])
            G = torch.mul(grad_y[s:e, :, :, None], C[s:e, :, None, :], out=G_buf[:m])  # C_t g_t
            G[-1] += g_next
            for t in reversed(range(m - 1)):
                G[t].addcmul_(dA[t + 1], G[t + 1])                      # G_t += A_bar_{t+1} G_{t+1}
            g_next = dA[0] * G[0]                                        # into the state entering the chunk
            GB = torch.matmul(G, B[s:e, :, :, None])[..., 0]             # sum_N G B  (m, batch, E)
            torch.matmul(grad_y[s:e, :, None, :], states, out=g_C[s:e, :, None, :])  # sum_E g h
            torch.matmul(du[s:e, :, None, :], G, out=g_B[s:e, :, None, :])           # sum_E G Delta u
            # dLoss/d(Delta A) = G_t A_bar_t h_{t-1}, formed in place in the A_bar buffer
            g_dA = dA.mul_(G)
            g_dA[1:].mul_(states[:-1])
            g_dA[0].mul_(starts[k])
            per_channel = g_dA.view(m * batch, E, N).transpose(0, 1)    # (E, m batch, N) view
            d_flat = delta[s:e].reshape(m * batch, E)
            g_A.baddbmm_(per_channel.transpose(1, 2), d_flat.T[:, :, None])  # sum_t g_dA Delta
            g_dA_A = torch.bmm(per_channel, A[:, :, None])[..., 0].T    # sum_N g_dA A  (m batch, E)
            torch.addcmul(g_dA_A.view(m, batch, E), GB, u[s:e], out=g_delta[s:e])
            torch.mul(GB, delta[s:e], out=g_u[s:e])
        return g_delta, g_u, g_A[..., 0], g_B, g_C, None


# CPU: users scanned together x positions per chunk. The three (chunk, users, E, N) buffers of
# a group (8 MB each at E 128, N 32, instead of 34 MB for 256 users at chunk 8) then stay in
# the CPU's cache from one pass over them to the next.
# One layer's scan, forward + backward, batch 256, one thread, flushed subnormals (2-core Xeon):
# L 50: 0.66 -> 0.37 s, L 200: 1.85 -> 1.30 s, L 800: 10.3 -> 6.1 s against the whole batch
# at once; 512 was the best budget at all three lengths (tried 4 x 32 .. 16 x 256).
SCAN_GROUP_POSITIONS = 512


def selective_scan(u, delta, A, B, C, D, z=None, delta_bias=None, chunk_size: int = 0,
                   group_size: int = 0, compiled: bool = False):
    """Mamba's selective scan (the maths of mamba_ssm `selective_scan_ref` with
    delta_softplus=True), channel-last, in pure PyTorch.

    u, delta (batch, L, E); A (E, N); B, C (batch, L, N); D (E,); z (batch, L, E) or None;
    delta_bias (E,) or None.  Returns y (batch, L, E), the equations of `selective_scan_ref`.
    chunk_size and group_size only decide memory and speed, never the values. chunk_size 0
    picks ~sqrt(L / 3), since memory holds L / c boundary states plus 3 (c, users, E, N)
    buffers of the chunk being recomputed, and that c minimises their sum. Users never
    interact, so they are scanned in groups of group_size (0: SCAN_GROUP_POSITIONS // c
    users on a CPU, the whole batch on a GPU). Low-precision inputs (bf16 / fp16 autocast)
    are scanned in float32 and y is returned in u's dtype, as `selective_scan_ref` (and
    mamba_ssm's kernel) do. compiled=True runs all five steps through the compiled CPU kernel
    of models/cpu_scan.py instead (one user's state in cache; chunk_size and group_size unused).
    """
    if chunk_size <= 0:
        chunk_size = max(1, round(math.sqrt(u.size(1) / 3)))
    if group_size <= 0:
        group_size = u.size(0) if u.is_cuda else max(1, SCAN_GROUP_POSITIONS // chunk_size)
    dtype_in = u.dtype
    dtype = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A, B, C, D = (t.to(dtype) for t in (u, delta, A, B, C, D))
    if compiled:   # all five steps in the kernel
        bias = D.new_zeros(D.shape) if delta_bias is None else delta_bias.to(dtype)
        return cpu_scan.CompiledScan.apply(delta, bias, u, A, B, C, D,
                                           None if z is None else z.to(dtype)).to(dtype_in)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)
    delta = F.softplus(delta)                                           # (batch, L, E), Delta > 0
    time_major = lambda t: t.transpose(0, 1).contiguous()               # (L, users, .)
    y = torch.cat([_SelectiveScan.apply(time_major(d), time_major(x), A, time_major(b),
                                        time_major(c), chunk_size).transpose(0, 1)
                   for d, x, b, c in zip(delta.split(group_size), u.split(group_size),
                                         B.split(group_size), C.split(group_size))])
    y = y + u * D
    y = y if z is None else y * F.silu(z.to(dtype))
    return y.to(dtype_in)


class MambaBlock(nn.Module):
    """The Mamba block (mamba_ssm `Mamba`, default options) with a pure-PyTorch path."""

    def __init__(self, c: Config, dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4):
        super().__init__()
        d_model, E, N = c.hidden_size, c.expand * c.hidden_size, c.d_state
        self.d_inner, self.d_state, self.d_conv = E, N, c.d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.chunk_size, self.use_kernels = c.chunk_size, c.use_kernels
        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        # Depthwise conv padded by d_conv - 1 on both sides; keeping the first L outputs
        # makes it causal (output t sees inputs t - d_conv + 1 .. t).
        self.conv1d = nn.Conv1d(E, E, c.d_conv, groups=E, padding=c.d_conv - 1, bias=True)
        self.x_proj = nn.Linear(E, self.dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, E, bias=True)
        self.out_proj = nn.Linear(E, d_model, bias=False)
        # mamba_ssm init: dt weight uniform(+-R^-0.5); dt bias = softplus^-1(Delta_0) with
        # Delta_0 log-uniform in [dt_min, dt_max]; S4D-real A_n = -(1..N); D = 1.
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))

    def _kernels_apply(self, x: torch.Tensor) -> bool:
        if self.use_kernels and x.is_cuda and KERNEL_IMPORT_ERROR is not None:
            warnings.warn(f"mamba4rec: mamba_ssm is installed but does not import "
                          f"({KERNEL_IMPORT_ERROR}); using the pure-PyTorch scan", stacklevel=2)
        return self.use_kernels and x.is_cuda and selective_scan_fn is not None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        L = u.size(1)
        x, z = linear_halves(self.in_proj, u)                           # (batch, L, E) each
        fast = self._kernels_apply(u)
        # on a CPU: the compiled conv + SiLU and scan of models/cpu_scan.py, in float32
        # (float64 for a float64 model), reading x and z where in_proj wrote them
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        compiled = self.use_kernels and not u.is_cuda and cpu_scan.available(dtype)
        if fast and causal_conv1d_fn is not None:
            x = causal_conv1d_fn(x.transpose(1, 2).contiguous(), self.conv1d.weight.squeeze(1),
                                 self.conv1d.bias, activation="silu").transpose(1, 2)
        elif compiled:
            x = cpu_scan.ConvSiLU.apply(x.to(dtype), self.conv1d.weight.squeeze(1).to(dtype),
                                        self.conv1d.bias.to(dtype))              # (batch, L, E)
        else:
            x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)  # (batch, L, E)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight)                       # (batch, L, E), bias added in the scan
        A = -torch.exp(self.A_log)                                      # (E, N)
        if fast:
            # The kernel wants (batch, E, L) / (batch, N, L) layouts and fp32 A, D, bias.
            y = selective_scan_fn(
                x.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous(), A.float(),
                B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), self.D.float(),
                z=z.transpose(1, 2).contiguous(), delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True).transpose(1, 2)                    # (batch, L, E)
        else:
            y = selective_scan(x, delta, A, B, C, self.D, z=z, delta_bias=self.dt_proj.bias,
                               chunk_size=self.chunk_size, compiled=compiled)  # (batch, L, E)
        return self.out_proj(y)                                         # (batch, L, d_model)


class MambaLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        # The reference drops the residual around the block when the model has one layer.
        self.residual = c.num_layers > 1
        self.mamba = MambaBlock(c)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        # the reference's FeedForward: 4 d_model, GELU (nn.GELU), dropout after the activation too
        self.ffn = FeedForward(c.hidden_size, 4 * c.hidden_size, c.dropout, activation="gelu",
                               layer_norm_eps=1e-12, inner_dropout=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.mamba(x))                                 # (batch, L, d_model)
        return self.ffn(self.norm(h + x if self.residual else h))


class Mamba4Rec(SequentialRecommender):
    Config = Config
    causal = True   # causal conv + left-to-right scan: position t sees items <= t only

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        if c.init not in ("reference", "mamba_ssm"):
            raise ValueError(f"mamba4rec: init must be 'reference' or 'mamba_ssm', got {c.init!r}")
        if c.chunk_size < 0:
            raise ValueError(f"mamba4rec: chunk_size must be >= 0 (0 = auto), got {c.chunk_size}")
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.layers = nn.ModuleList(MambaLayer(c) for _ in range(c.num_layers))
        # RecBole's init (N(0, 0.02) Linear/Embedding weights, zero Linear biases, LN (1, 0));
        # with init="reference" it reaches inside the Mamba blocks too (see the docstring).
        recbole_init_except(self, [layer.mamba for layer in self.layers]
                            if c.init == "mamba_ssm" else [])

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        x = self.emb_norm(self.emb_dropout(self.item_embedding(item_seq)))  # (batch, L, d_model)
        for layer in self.layers:
            x = layer(x)                                                     # (batch, L, d_model)
        return x
