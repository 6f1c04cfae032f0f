"""RecGRELA: Gated Rotary-Enhanced Linear Attention (with Rank Modulation) for long-term
sequential recommendation (arXiv 2506.13315; reference code github.com/TBI805/RecGRELA,
`model/RecGRELA.py`, RecBole 1.2).

The encoder, in the paper's vocabulary (symbol -> variable name):

    E = Emb(s)                  item embeddings, no positional embedding  -> item_embedding
    X0 = LN(Dropout(E))         dropout *before* LayerNorm (reference order) -> emb_dropout, emb_norm
    per GRELA block (L blocks, `num_layers`):
      H = LN1(X)                                                           -> norm1, h
      G = SiLU(W_g H)           Gated Rank Selector (the gate)             -> act_proj, gate_act
      V = W_in H                values ("input gate" of Fig. 4): no
                                separate V projection                      -> in_proj, v
      Q, K = phi(W_qk V)        phi(x) = ELU(x) + 1, one Linear(D, 2D)     -> rela.qk, q, k
      R_i                       RoPE over the full D (adjacent pairs,
                                theta_m = base^(-2m/D), position i counted
                                from the start of the right-padded window) -> rope_angles, rotation_tables, apply_rope
      RELA_i = sum_j (R_i Q_i)(R_j K_j)^T V_j / sum_j Q_i K_j^T            -> rela_attention
                                (per head; the normaliser uses the *un-rotated* Q, K)
      A = SiLU(CausalConv1d_k4(V))   rank augmentation branch (local
                                shortcut, depthwise, causal)               -> rela.conv, local_shortcut
      Y = W_o ((RELA + A) * G)  Adaptive Rank Modulator = A + G           -> out_proj
      X = X + DropPath(Y);  X = X + MLP(LN2(X))   (MLP: 4D, GELU, dropout) -> drop_path, mlp
    score(i) = X_last . e_i     tied item embedding (models/base.py)

Config fields <- the reference (`config/RecGRELA.yaml` keys, or literals in `model/RecGRELA.py`):
    hidden_size <- hidden_size      num_layers <- num_layers     num_heads <- num_heads
    dropout     <- dropout_prob     drop_path  <- drop_path
    mlp_ratio   <- literal 4 (Mlp hidden_features = d_model * 4)
    conv_kernel <- literal 4 (Conv1d kernel_size)      rope_base <- literal 10000 (RoPE base)
    layer_norm_eps <- literal 1e-12                     attn_eps  <- literal 1e-6 (in z)
    initializer_range <- literal 0.02 (_init_weights)
    max_len     <- MAX_ITEM_LIST_LENGTH (the reference's RoPE table size; here only the
                   "absolute" / "learnable" position tables use it; the engine sets it)
    the rest are this suite's options (below).

Default = the reference code, exactly (TBI805/RecGRELA `model/RecGRELA.py`; docs/fidelity.md), including what the text does not say:
  * Non-causal attention: the kv state and the key mean run over all L positions of the
    right-padded window (padding rows included); scalings L^-1/2 * L^-1/2 on kv and a mean over
    L in the normaliser, z = 1 / (Q_i . mean_j K_j + 1e-6). Prefix inputs never contain the
    target item, but the read-out at `len-1` attends to the padded tail.
  * The embedding's padding row 0 is initialised N(0, 0.02) like the others (non-zero); as an
    input it gets no gradient, as the padding column of the scores it does (CE over all ids).
  * Drop path on the attention branch only; GRELA's own dropout is unused; no final LayerNorm.
  * `num_layers == 1` has no residual connections at all: X = DropPath(Y); X = MLP(LN2(X)).
  * The reference's CPU fallback for the local shortcut crashes (no transpose back) and forgets
    the SiLU; ours computes on every device what its CUDA path (`causal_conv1d_fn`) computes.

Named options (docs/fidelity.md lists text-vs-code for each; the ablations are the paper's Fig. 4 and 5):
  causal          attention over j <= i only, normaliser over the same prefix:
                  RELA_i = [sum_{j<=i} (R_i Q_i)(R_j K_j)^T V_j / (i+1)]
                           / [Q_i . (sum_{j<=i} K_j) / (i+1) + 1e-6]
                  i.e. the reference's formula with "all L positions" replaced by "the prefix
                  0..i" (un-rotated normaliser, the mean over the prefix, same epsilon). The
                  output at i then depends neither on later items nor on the window length,
                  which makes streaming inference (`init_state` / `step`) exact. Computed
                  chunk-wise (models/linear_attention.py): an exact (C x C) product inside
                  chunks of `chunk_size`, a carried kv state between them; never an L x L matrix.
  position_encoding  (Fig. 4 "w/o RoPE", Fig. 5 APE / LPE / RoPE)
                  "rope"      R_i above (default).
                  "none"      no rotation: R_i = I ("w/o RoPE").
                  "absolute"  APE "as SASRec": X0 = LN(Dropout(E + P)), P a learned
                              (max_len, D) table (N(0, 0.02)) added to the item embedding;
                              no rotation. Positions, like RoPE's, count from the window start.
                  "learnable" LPE: RoPE's rotation with LEARNED angles, a (max_len, D/2)
                              parameter phi_{i,m} initialised to RoPE's i * theta_m, so
                              R_i turns pair m by phi_{i,m} (numerator only, as RoPE).
  activation      None: the reference (gate SiLU, MLP GELU). A key of models/base.py
                  ACTIVATIONS ("silu", "gelu", "relu" in Fig. 5) sets BOTH the gate and the MLP
                  activation; the local shortcut's SiLU is not part of the study and stays.
  input_proj      False ("w/ V matrix, w/o input gate"): V = H = LN1(X), no W_in (not created).
  local_shortcut  False: no rank augmentation branch (its conv parameters are not created).
  gate            False ("w/ V, w/o SiGLU"): Y = W_o(RELA + A) (act_proj not created).
  drop_path       0.0: "w/o DropPath".
  recompute       False (default, as the reference): every activation is kept for backward.
                  True: each block keeps only its input and recomputes the rest in backward
                  (torch.utils.checkpoint; the RNG state is replayed for dropout, so values
                  and gradients are identical: tested); the peak then holds one user group's
                  intermediates (below). Memory, not maths: on the 2-core Xeon (batch 256, one
                  thread) it cost 2.2 -> 3.0 s a step at max_len 200 and saved 2.4 -> 0.8 GB.
  group_tokens    On CPU the batch goes through each block in groups of whole users, as few
                  groups as hold at most this many positions each (16384 with float32
                  activations, twice as many under a 2-byte autocast: the MLP's [positions,
                  4D] intermediate is then 16 MB either way; on a GPU the batch is one group).
                  Users never interact inside a block, so the maths is the same (tested
                  against one group); only the dropout masks are drawn group by group. Every
                  tensor stays under the 32 MB above which glibc's malloc maps fresh pages for
                  it at every step (at max_len 800, 4096 positions a group: 11.8 s a step
                  against 15.5 s for the whole batch, 5.0 M page faults). Sizes measured on the
                  2-core Xeon, batch 256, 1 and 2 threads, max_len 200 and 800, fp32 and bf16:
                  16384 fp32 / 32768 bf16 was the fastest of 4096-51200 in 6 of the 8 cells
                  and within 10% in the other two; 4096 was 1.2-1.5x slower on 2 threads
                  (reports/efficiency/recgrela_group_sweep.md).
tests/test_recgrela.py checks the default against the reference file itself (same weights,
same outputs to fp32 rounding) when that checkout is present, and every variant against a
slow float64 loop reference.
Fast path: `causal_conv1d_fn` (package causal-conv1d) for the local shortcut on CUDA when
installed, exactly as the reference; on a CPU the compiled conv + SiLU of models/cpu_scan.py
(`ConvSiLU`, Mamba's) when a C compiler is present; pure PyTorch otherwise (`fast_kernels`
False, or no compiler).
Training-step costs that are not the model's maths, removed (torch.profiler, issue 28; each
beside its explicit form, tests/test_fast_paths.py compares them in float64, values and
gradients):
  * dropout masks: `Dropout` (models/base.py) draws the dropped positions as geometric gaps,
    ~p n random numbers instead of n Bernoulli draws (aten::bernoulli_ was the top op), same
    distribution, same seeding; DropPath's per-user draw is unchanged.
  * RoPE: `rotate_pairs`, one complex product, instead of `apply_rope`'s flip + two products +
    sum (four passes, and as many in backward); `apply_rope` stays for streaming and tests.
  * attention: all heads as (D x D) block-diagonal matmuls on the [B, L, D] tensors instead of
    per-head einsums, which copied Q, K, V into a heads-first layout and back.
  * bf16 autocast: the attention (its products included) and the local shortcut run in float32
    on one float32 copy of V: fewer casts than autocast's per-product ones, and no sum
    rounded to bf16.
  * the local shortcut's taps are fused multiply-adds (one pass per tap, not a product and a
    sum), and the attention output is multiplied by the normaliser's reciprocal (a division's
    backward makes three passes over [B, L, D]).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models import cpu_scan
from models.base import ACTIVATIONS, Dropout, SequentialRecommender, recbole_init
from models.linear_attention import causal_linear_attention

try:  # optional CUDA kernel, the one the reference's logged run used
    from causal_conv1d import causal_conv1d_fn
except ImportError:
    causal_conv1d_fn = None

POSITION_ENCODINGS = ("rope", "absolute", "learnable", "none")


@dataclass
class Config:
    hidden_size: int = 64          # D
    num_layers: int = 4            # GRELA blocks
    num_heads: int = 4             # head_dim = D / num_heads = 16
    dropout: float = 0.1           # embedding dropout and MLP dropout
    drop_path: float = 0.1         # stochastic depth on the attention branch
    mlp_ratio: int = 4             # MLP hidden = 4 D
    conv_kernel: int = 4           # local shortcut kernel width (causal, depthwise)
    rope_base: float = 10000.0
    layer_norm_eps: float = 1e-12
    attn_eps: float = 1e-6         # added to the linear-attention normaliser
    initializer_range: float = 0.02
    max_len: int = 200             # rows of the "absolute" / "learnable" position tables
    causal: bool = False           # False = reference (attends over the whole padded window)
    position_encoding: str = "rope"    # rope | absolute | learnable | none
    activation: str | None = None  # None = reference (gate SiLU, MLP GELU); else both
    input_proj: bool = True        # V = W_in LN1(x) ("input gate"); False: V = LN1(x)
    local_shortcut: bool = True    # rank augmentation branch
    gate: bool = True              # Gated Rank Selector
    chunk_size: int = 64           # causal variant: positions per chunk
    recompute: bool = False        # activation recomputation in backward (memory, not maths)
    group_tokens: int = 16384      # CPU: users go through a block in groups of <= this many positions (x2 under bf16 autocast)
    fast_kernels: bool = True      # local shortcut: causal_conv1d_fn on CUDA when installed, the compiled conv on CPU

    def __post_init__(self):
        rotary = self.position_encoding in ("rope", "learnable")
        checks = [
            (self.hidden_size > 0 and self.num_heads > 0, "hidden_size and num_heads must be positive"),
            (self.hidden_size % max(self.num_heads, 1) == 0,
             f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"),
            (self.position_encoding in POSITION_ENCODINGS,
             f"position_encoding must be one of {POSITION_ENCODINGS}, got {self.position_encoding!r}"),
            (not rotary or self.hidden_size % 2 == 0,
             f"hidden_size ({self.hidden_size}) must be even for RoPE's rotation pairs"),
            (self.activation is None or self.activation in ACTIVATIONS,
             f"activation must be None (reference) or one of {sorted(ACTIVATIONS)}, got {self.activation!r}"),
            (self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}"),
            (self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}"),
            (self.conv_kernel >= 1, f"conv_kernel must be >= 1, got {self.conv_kernel}"),
            (self.chunk_size >= 1, f"chunk_size must be >= 1, got {self.chunk_size}"),
            (self.group_tokens >= 1, f"group_tokens must be >= 1, got {self.group_tokens}"),
            (0 <= self.dropout < 1 and 0 <= self.drop_path < 1, "dropout and drop_path must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"recgrela Config: {message}")


# --- RoPE (real-valued: no complex copies) ------------------------------------------------
def rope_angles(positions: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """RoPE's angles in float64: positions [...] -> [..., dim/2], pair m turns by
    pos * base^(-2m/D) (the reference's theta = 1 / base^(m / (D/2)))."""
    m = torch.arange(dim // 2, dtype=torch.float64, device=positions.device)
    theta = base ** (-m / (dim // 2))                                  # (D/2,)
    return positions.to(torch.float64).unsqueeze(-1) * theta            # (..., D/2)


def rotation_tables(angles: torch.Tensor, dtype: torch.dtype):
    """cos and signed sin of angles [..., D/2] -> two [..., D] tables for `apply_rope`,
    computed in the angles' dtype and cast to `dtype` (differentiable: the "learnable" angles)."""
    cos = angles.cos().repeat_interleave(2, dim=-1)                     # (..., D)  c0 c0 c1 c1 ..
    sin = angles.sin()
    sin = torch.stack((-sin, sin), dim=-1).flatten(-2)                  # (..., D) -s0 s0 -s1 s1 ..
    return cos.to(dtype), sin.to(dtype)


def rope_tables(positions: torch.Tensor, dim: int, base: float, dtype: torch.dtype):
    """RoPE's cos / signed sin tables for positions [...] -> two [..., dim] tables. Angles are
    computed in float64 and cast, so the tables are the same whether built for a whole window
    or for one streaming position."""
    return rotation_tables(rope_angles(positions, dim, base), dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs: (x0, x1) -> (x0 c - x1 s, x1 c + x0 s).  x [..., D].
    The explicit formula (streaming `step`, tests); `rotate_pairs` is the one-pass form."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)            # (..., D)  x1 x0 x3 x2 ..
    return x * cos + swapped * sin


def rotation_phasors(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The tables of `apply_rope` as unit complex numbers c_m + i s_m: [..., D] -> [..., D/2]."""
    return torch.complex(cos[..., 0::2].contiguous(), sin[..., 1::2].contiguous())


def rotate_pairs(x: torch.Tensor, phasors: torch.Tensor) -> torch.Tensor:
    """`apply_rope` in one pass: pair (x0, x1) read as x0 + i x1 and multiplied by c + i s gives
    (x0 c - x1 s) + i (x1 c + x0 s), the same numbers (to the rounding of one fused multiply-add).
    The flip / two products / sum of `apply_rope` are four passes over x, and as many in backward.
    x [B, L, D] (float32 / float64; last dim contiguous), phasors [L, D/2] complex -> [B, L, D]."""
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))           # (B, L, D/2) complex view
    return torch.view_as_real(pairs * phasors).flatten(-2)             # (B, L, D)


# --- RELA: rotary-enhanced linear attention -----------------------------------------------
def rela_attention(q, k, v, cos, sin, num_heads: int, causal: bool, chunk_size: int = 64,
                   eps: float = 1e-6) -> torch.Tensor:
    """Multi-head linear attention with RoPE on the numerator only.

    q, k: phi-features (ELU+1), v: values, all [B, L, D]; cos/sin [L, D] or None (no rotation).
    Returns [B, L, D]. RoPE acts on the full D before the head split (as in the reference),
    so head h sees the frequencies of dims h*hd .. (h+1)*hd.
    """
    if q.dtype not in (torch.float32, torch.float64):   # bf16 / fp16 (autocast): the attention's
        q, k, v = q.float(), k.float(), v.float()        # sums and ratio in float32, products
    with torch.autocast(q.device.type, enabled=False):   # included (autocast would round them)
        return _rela_attention(q, k, v, cos, sin, num_heads, causal, chunk_size, eps)


def _rela_attention(q, k, v, cos, sin, num_heads, causal, chunk_size, eps):
    B, L, D = q.shape
    hd = D // num_heads
    if cos is not None:
        rot = rotation_phasors(cos, sin).to(torch.complex128 if q.dtype == torch.float64
                                            else torch.complex64)          # (L, D/2)
        qr, kr = rotate_pairs(q, rot), rotate_pairs(k, rot)
    else:
        qr, kr = q, k
    if not causal:
        # reference: kv = (K_rot^T L^-1/2)(V L^-1/2) per head, num = Q_rot kv, den = Q . mean_j K.
        # All heads at once as (D x D) products with the off-head blocks zeroed: bmm reads the
        # [B, L, D] tensors in place (a per-head einsum copies them into a heads-first layout
        # and back), and multiplying by the zeros adds exact zeros (4x the FLOPs of D x hd
        # products, which are a small part of the step). Scaling the small D x D sum once by
        # 1/L is the same number up to rounding and never materialises scaled copies of K, V.
        head = torch.arange(D, device=q.device) // hd
        same_head = (head[:, None] == head[None, :]).to(qr.dtype)       # (D, D) block diagonal
        kv = torch.bmm(kr.transpose(1, 2), v) * (same_head / L)        # (B, D, D)
        num = torch.bmm(qr, kv)                                         # (B, L, D)
        k_mean = k.mean(dim=1)                                          # (B, D)
        # den[b, i, h] = sum_{d in head h} q[b, i, d] k_mean[b, d] = Q_i . mean_j K_j per head
        in_head = (head[:, None] == torch.arange(num_heads, device=q.device)).to(q.dtype)  # (D, H)
        den = torch.bmm(q, k_mean[:, :, None] * in_head).add_(eps)     # (B, L, H)
        # times 1 / den: a (B, L, H) reciprocal, then a product, whose backward is two products
        # where a division's is a division, a square and a product over the (B, L, D) tensor
        return (num.view(B, L, num_heads, hd) * den.reciprocal()[..., None]).view(B, L, D)

    # causal: sums over the prefix j <= i, both divided by the prefix length i + 1
    qr, kr, vh = (t.view(B, L, num_heads, hd) for t in (qr, kr, v))    # (B, L, H, hd)
    num = causal_linear_attention(qr, kr, vh, chunk_size)               # (B, L, H, hd)
    inv_count = 1.0 / torch.arange(1, L + 1, device=q.device, dtype=q.dtype).view(1, L, 1, 1)
    k_cum = k.cumsum(dim=1).view(B, L, num_heads, hd)                   # (B, L, H, hd)
    den = (q.view(B, L, num_heads, hd) * k_cum).sum(-1, keepdim=True) * inv_count + eps
    return (num * inv_count / den).reshape(B, L, D)


# --- layers ----------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath with scale_by_keep, as the reference)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def mask(self, x):
        """Bernoulli(1 - p) / (1 - p), one draw per sample: [B, 1, ..., 1] (None: identity)."""
        if self.p == 0.0 or not self.training:
            return None
        keep = 1.0 - self.p
        return x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep).div_(keep)

    def forward(self, x):
        mask = self.mask(x)
        return x if mask is None else x * mask

    def residual(self, x, y):
        """x + DropPath(y) in one pass (the same draw as `forward`)."""
        mask = self.mask(y)
        return x + y if mask is None else torch.addcmul(x, y, mask)


class Mlp(nn.Module):
    """timm's pre-LN block MLP, as the reference: Dropout(fc2(Dropout(act(fc1 x))))."""

    def __init__(self, d: int, hidden: int, dropout: float, act):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.drop = Dropout(dropout)   # nn.Dropout's distribution, a cheaper draw (models/base.py)
        self.act = act

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class RELA(nn.Module):
    """phi(W_qk V) -> rotary linear attention, plus the rank augmentation branch on V."""

    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.hidden_size
        self.cfg = cfg
        self.qk = nn.Linear(D, 2 * D)
        if cfg.local_shortcut:  # depthwise, PyTorch default init (the reference's _init_weights skips Conv1d);
            # padding k-1 as the reference declares it: conv(v^T)[..., :L] is the causal conv
            self.conv = nn.Conv1d(D, D, cfg.conv_kernel, padding=cfg.conv_kernel - 1, groups=D)

    def forward(self, v, cos, sin):
        qk = F.elu(self.qk(v)).add_(1.0)                                # phi; elu saves its input
        q, k = qk.chunk(2, dim=-1)                                      # (B, L, D) each, views
        if v.dtype in (torch.bfloat16, torch.float16):  # autocast: V once in float32 for the
            v = v.float()                               # attention and the local shortcut
        y = rela_attention(q, k, v, cos, sin, self.cfg.num_heads, self.cfg.causal,
                           self.cfg.chunk_size, self.cfg.attn_eps)
        if self.cfg.local_shortcut:
            y = y + self.local_shortcut(v)
        return y

    def local_shortcut(self, v):
        """SiLU(causal depthwise conv(V)), [B, L, D] -> [B, L, D]."""
        w, b = self.conv.weight.squeeze(1), self.conv.bias              # (D, k), (D,)
        if causal_conv1d_fn is not None and v.is_cuda and self.cfg.fast_kernels:
            return causal_conv1d_fn(v.transpose(1, 2), w, b, activation="silu").transpose(1, 2)
        dtype = torch.float64 if v.dtype == torch.float64 else torch.float32
        if not v.is_cuda and self.cfg.fast_kernels and cpu_scan.available(dtype):
            # Mamba's compiled conv + SiLU (one pass each way; float32 under bf16 autocast)
            return cpu_scan.ConvSiLU.apply(v.to(dtype), w.to(dtype), b.to(dtype))  # (B, L, D)
        # Pure path in the [B, L, D] layout: sum of k shifted copies. PyTorch's CPU depthwise
        # Conv1d backward is ~100x slower than this; the left padding of k-1 zeros makes output
        # t see inputs t-k+1 .. t, which is what the CUDA kernel computes. Under autocast the
        # values are bf16: the taps are cast to them (as conv1d's weights would be), so that
        # the sum runs in one dtype instead of promoting v at every tap.
        w, b = w.to(v.dtype), b.to(v.dtype)
        k = w.shape[1]
        L = v.shape[1]
        vp = F.pad(v, (0, 0, k - 1, 0))                                # (B, L + k - 1, D)
        out = torch.addcmul(b, vp[:, k - 1:], w[:, k - 1])              # newest tap: input t
        for i in range(k - 1):   # one fused multiply-add pass per tap
            out = torch.addcmul(out, vp[:, i:i + L], w[:, i])           # input t - (k - 1) + i
        return F.silu(out)                                              # (B, L, D)


class GRELABlock(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        D = cfg.hidden_size
        self.cfg = cfg
        # the reference: SiLU in the gate, GELU (nn.GELU) in the MLP; `activation` sets both
        self.gate_act = ACTIVATIONS[cfg.activation or "silu"]
        self.norm1 = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        if cfg.input_proj:
            self.in_proj = nn.Linear(D, D)
        self.rela = RELA(cfg)
        if cfg.gate:
            self.act_proj = nn.Linear(D, D)
        self.out_proj = nn.Linear(D, D)
        self.drop_path = DropPath(cfg.drop_path)
        self.norm2 = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(D, D * cfg.mlp_ratio, cfg.dropout, ACTIVATIONS[cfg.activation or "gelu"])

    def values(self, h):
        """V = W_in H, or H itself without the input projection ("w/o input gate")."""
        return self.in_proj(h) if self.cfg.input_proj else h

    def mixer(self, x, cos, sin):
        """Y = W_o((RELA(V) + A(V)) * act(W_g H)), H = LN1(x): the branch before DropPath."""
        h = self.norm1(x)
        y = self.rela(self.values(h), cos, sin)
        if self.cfg.gate:
            y = y * self.gate_act(self.act_proj(h))
        return self.out_proj(y)

    def ffn(self, x):
        return self.mlp(self.norm2(x))

    def block(self, x, cos, sin):
        if self.cfg.num_layers == 1:  # the reference's 1-layer branch: no residuals at all
            return self.ffn(self.drop_path(self.mixer(x, cos, sin)))
        x = self.drop_path.residual(x, self.mixer(x, cos, sin))       # x + DropPath(Y)
        return x + self.ffn(x)

    def group_positions(self) -> int:
        """The cap on a CPU group's positions: `group_tokens`, twice that under a 2-byte (bf16)
        autocast, whose activations take half the bytes."""
        half = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu").itemsize == 2
        return self.cfg.group_tokens * (2 if half else 1)

    def forward(self, x, cos, sin):
        # Users never interact inside a block, so on CPU the batch goes through it in groups of
        # whole users of at most `group_positions()` positions (module docstring); on a GPU
        # groups would only add kernel launches. With `recompute`, a group keeps only its input
        # and is recomputed in backward (RNG replayed for dropout). cos / sin are the same for
        # every user ([L, D]), so each group gets them whole.
        recompute = self.cfg.recompute and torch.is_grad_enabled()
        run = partial(checkpoint, self.block, use_reentrant=False) if recompute else self.block
        users = x.size(0) if x.is_cuda else max(1, self.group_positions() // x.size(1))
        groups = -(-x.size(0) // users)                  # as few groups as the cap allows,
        if groups == 1:                                  # of as equal sizes as possible
            return run(x, cos, sin)
        return torch.cat([run(group, cos, sin) for group in x.chunk(groups)])

    # --- streaming (causal variant only) ---
    def step(self, x, st: dict, cos, sin):
        """One new position per user. x [B, D]; cos / sin [B, D] or None; st holds kv
        [B,H,hd,hd], k_sum [B,D], conv [B,k-1,D] (last k-1 values), count [B,1] (positions seen
        including this one)."""
        cfg = self.cfg
        B, D = x.shape
        H = cfg.num_heads
        hd = D // H
        h = self.norm1(x)
        v = self.values(h)                                              # (B, D)
        q, k = self.rela.qk(v).chunk(2, dim=-1)
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        qr, kr = (apply_rope(q, cos, sin), apply_rope(k, cos, sin)) if cos is not None else (q, k)
        st["kv"] = st["kv"] + kr.view(B, H, hd, 1) * v.view(B, H, 1, hd)  # += K_rot^T V  (B, H, hd, hd)
        st["k_sum"] = st["k_sum"] + k
        inv = 1.0 / st["count"]                                         # (B, 1)
        num = torch.einsum("bhd,bhde->bhe", qr.view(B, H, hd), st["kv"]).reshape(B, D) * inv
        den = ((q * st["k_sum"]).view(B, H, hd).sum(-1) * inv + cfg.attn_eps).repeat_interleave(hd, dim=1)
        y = num / den                                                   # (B, D)
        if cfg.local_shortcut:
            window = torch.cat([st["conv"], v.unsqueeze(1)], dim=1)     # (B, k, D) oldest first
            w = self.rela.conv.weight.squeeze(1)                        # (D, k)
            y = y + F.silu((window * w.T).sum(1) + self.rela.conv.bias)
            st["conv"] = window[:, 1:]
        if cfg.gate:
            y = y * self.gate_act(self.act_proj(h))
        y = self.out_proj(y)
        if cfg.num_layers == 1:
            return self.ffn(y)
        x = x + y
        return x + self.ffn(x)


class RecGRELA(SequentialRecommender):
    Config = Config
    causal = False  # the reference default; instances set it from config.causal

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        # What the engine reads: True only for the causal variant. Position tables count from
        # the window start, so "absolute" / "learnable" keep the causal variant causal.
        self.causal = bool(config.causal)
        D, pe = config.hidden_size, config.position_encoding
        self.item_embedding = nn.Embedding(n_items, D, padding_idx=0)
        if pe == "absolute":   # APE, as SASRec: P[i] added to the item embedding (N(0, 0.02) below)
            self.position_embedding = nn.Embedding(config.max_len, D)
        if pe == "learnable":  # LPE: RoPE's angles as a parameter, starting at RoPE's values
            positions = torch.arange(config.max_len)
            self.position_angles = nn.Parameter(
                rope_angles(positions, D, config.rope_base).to(torch.get_default_dtype()))  # (max_len, D/2)
        self.emb_dropout = Dropout(config.dropout)
        self.emb_norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.blocks = nn.ModuleList(GRELABlock(config) for _ in range(config.num_layers))
        # the reference's init (models/base.py recbole_init): the padding row is drawn too and
        # still learns as the logit of column 0 in the CE loss; Conv1d keeps its default init
        self.apply(lambda m: recbole_init(m, config.initializer_range))

    def _check_positions(self, last: int) -> None:
        if self.config.position_encoding in ("absolute", "learnable") and last >= self.config.max_len:
            raise ValueError(f"recgrela: position {last} is past Config.max_len={self.config.max_len} "
                             f"(rows of the {self.config.position_encoding!r} position table)")

    def embed(self, item_seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Emb(s) (+ P[positions] for "absolute"): item_seq and positions of the same shape [...]
        -> [..., D], before dropout and LayerNorm."""
        e = self.item_embedding(item_seq)
        if self.config.position_encoding == "absolute":
            e = e + self.position_embedding(positions)
        return e

    def rotations(self, positions: torch.Tensor, dtype):
        """(cos, sin) tables [..., D] for positions [...], or (None, None) without rotation."""
        pe = self.config.position_encoding
        if pe == "rope":
            return rope_tables(positions, self.config.hidden_size, self.config.rope_base, dtype)
        if pe == "learnable":
            return rotation_tables(self.position_angles[positions], dtype)
        return None, None

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        L = item_seq.size(1)
        self._check_positions(L - 1)
        positions = torch.arange(L, device=item_seq.device)                       # (L,)
        x = self.emb_norm(self.emb_dropout(self.embed(item_seq, positions)))       # (B, L, D)
        cos, sin = self.rotations(positions, x.dtype)                              # (L, D)
        for block in self.blocks:
            x = block(x, cos, sin)
        return x

    # --- streaming inference (causal variant) ---------------------------------------------
    def init_state(self, batch_size: int) -> list[dict]:
        """Empty per-user state for `step`: one dict per layer, O(D^2 / H) numbers per user."""
        if not self.causal:
            raise ValueError("recgrela: streaming `step` needs the causal variant (Config.causal=True); "
                             "the reference variant attends over the whole padded window")
        cfg = self.config
        D, H = cfg.hidden_size, cfg.num_heads
        p = self.item_embedding.weight
        return [{"kv": p.new_zeros(batch_size, H, D // H, D // H),
                 "k_sum": p.new_zeros(batch_size, D),
                 "conv": p.new_zeros(batch_size, max(cfg.conv_kernel - 1, 0), D),
                 "count": p.new_zeros(batch_size, 1),
                 "pos": torch.zeros(batch_size, dtype=torch.long, device=p.device)}
                for _ in range(cfg.num_layers)]

    @torch.no_grad()
    def step(self, state: list[dict], item_ids: torch.Tensor):
        """Append one item per user: O(D^2) work. Returns (state, hidden [B, D]), the hidden
        state a full causal forward would give at that position (score it with `score`)."""
        if self.training:
            raise RuntimeError("recgrela: `step` is for inference; call model.eval() first")
        if not self.causal:
            raise ValueError("recgrela: streaming `step` needs Config.causal=True")
        pos = state[0]["pos"]                                           # (B,)
        self._check_positions(int(pos.max()))
        x = self.emb_norm(self.embed(item_ids, pos))                    # (B, D)
        cos, sin = self.rotations(pos, x.dtype)                         # (B, D)
        new_state = []
        for block, st in zip(self.blocks, state):
            st = dict(st, count=st["count"] + 1, pos=st["pos"] + 1)
            x = block.step(x, st, cos, sin)
            new_state.append(st)
        return new_state, x
