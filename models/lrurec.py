"""LRURec: linear recurrent units for sequential recommendation, as the RecGRELA reference runs it.

Paper: Z. Yue et al., "Linear Recurrent Units for Sequential Recommendation", WSDM 2024
(the LRU itself: A. Orvieto et al., "Resurrecting Recurrent Neural Networks for Long
Sequences", ICML 2023).
Reference code: RecGRELA `model/LRURec.py` (on RecBole 1.2), `config/LRURec.yaml`
(hidden 64, 2 layers, dropout 0.2).

Config fields <- the reference config's keys: hidden_size <- hidden_size, num_layers <- n_layers,
dropout <- dropout_prob; r_min, r_max <- the reference LRULayer's arguments (0.8, 0.99);
chunk_size is this suite's scan option.

Symbols -> variables (one LRU layer, H = 2 * hidden_size complex channels):
    lambda = exp(-nu + i theta), |lambda| = exp(-nu)  log_lambda = complex(-nu, theta)
    (nu, theta, gamma) = exp(params_log)              LRULayer.params_log (3, H), learned in log form
    b_t = gamma * (W_in x_t + c_in)   (complex)       LRULayer.in_proj (real Linear D -> 2H = [Re | Im])
    h_t = lambda * h_{t-1} + b_t,  h_{-1} = 0         lru_scan()  (chunked parallel scan)
    y_t = Re(W_out h_t + c_out)                        LRULayer.out_proj (real Linear 2H -> D on [Re h | Im h])
    x'  = LN(x + Dropout(y)),  x'' = LN(x' + Dropout(W_2 Dropout(GELU(W_1 x'))))   (d_ff = 4D,
                                                       models/base.py FeedForward, LN eps 1e-5)
    input: x^0 = LN(Dropout(E[s]));  score(i) = x_t . E[i] + bias_i    (learned output bias)

Padding and direction. The reference LRU is a left-to-right recurrence (not bidirectional). It
moves each right-padded sequence to the right end (left padding), pads the window on the left
to a power of two, and zeroes the carry that leaves a padding position, so a real position's
state is the recurrence started at the sequence's FIRST REAL item; it reads the last position.
We keep our right padding and start the recurrence at position 0 = the first real item: the
states at real positions are the same numbers, padding only follows them (so `causal = True`),
and the read-out at `seq_len - 1` is the reference's read-out at the last position.

Parallel scan. The reference runs a log-depth doubling scan that keeps log2(L) copies of the
(B, L, H) complex state for backward. Ours is chunked: inside a chunk of C positions the
recurrence is a (C x C) lower-triangular Toeplitz product per channel (powers of lambda), and
chunk boundaries carry state with one more (n x n) Toeplitz product over the n = L / C chunks;
memory is O(B L H), work O(B L H (C + n)), and the result is exact up to rounding.

Fidelity notes (the default is the reference's behaviour):
- The reference's complex `nn.Linear`s become real ones on [Re | Im] halves (same function,
  same truncated-normal init per real and imaginary part; `out_proj`'s imaginary bias, which
  cannot reach Re(.), is dropped: D fewer parameters). This keeps `.double()` and optimisers
  exact without complex parameters.
- Init as the reference: everything except LayerNorms and `params_log` is drawn from a normal
  N(0, 0.02) truncated to [-0.04, 0.04] (the item-embedding padding row and the output bias
  included); nu and theta as the LRU paper (|lambda| uniform in the ring [r_min, r_max],
  theta in [0, 2 pi)), gamma = sqrt(1 - |lambda|^2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Dropout, FeedForward, SequentialRecommender


@dataclass
class Config:
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2         # embedding, LRU-output and feed-forward dropout
    r_min: float = 0.8           # initial |lambda| ring, as the reference LRULayer
    r_max: float = 0.99
    chunk_size: int = 32         # positions per chunk of the parallel scan


def lru_scan(b: torch.Tensor, log_lambda: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """h_t = lambda * h_{t-1} + b_t with h_{-1} = 0, for every t at once.

    b (B, L, H) complex, log_lambda (H,) complex (lambda = exp(log_lambda), |lambda| < 1)
    -> h (B, L, H) complex.
    """
    B, L, H = b.shape
    C = min(chunk_size, L)
    n = -(-L // C)
    if n * C != L:  # zero inputs at the end change no earlier state; dropped below
        b = F.pad(b, (0, 0, 0, n * C - L))
    b = b.view(B, n, C, H)                                            # (B, n, C, H)

    def decay_matrix(size: int, step: int, offset: int) -> torch.Tensor:
        # M[i, j, h] = lambda_h ** (step * (i - j + offset)) where i - j + offset >= 0, else 0.
        # The exponent is clamped before exp so masked entries never overflow (no inf * 0).
        idx = torch.arange(size, device=b.device)
        gap = idx[:, None] - idx[None, :] + offset                     # (size, size)
        keep = (gap >= 0).to(log_lambda.real.dtype)
        power = torch.exp(gap.clamp(min=0)[..., None] * step * log_lambda)  # (size, size, H)
        return power * keep[..., None]

    # 1. Inside each chunk, from a zero state: h[c, i] = sum_{j <= i} lambda^(i - j) b[c, j].
    intra = torch.einsum("ijh,bcjh->bcih", decay_matrix(C, 1, 0), b)  # (B, n, C, H)
    # 2. State entering chunk c = sum_{c' < c} lambda^(C (c - 1 - c')) * (end state of chunk c').
    ends = intra[:, :, -1]                                            # (B, n, H)
    carry = torch.einsum("cdh,bdh->bch", decay_matrix(n, C, -1), ends)  # (B, n, H)
    # 3. Each position adds the entering state decayed by lambda^(i + 1).
    steps = torch.arange(1, C + 1, device=b.device)[:, None]           # (C, 1)
    h = intra + torch.exp(steps * log_lambda) * carry[:, :, None]      # (B, n, C, H)
    return h.reshape(B, n * C, H)[:, :L]                              # (B, L, H)


class LRULayer(nn.Module):
    """One LRU with residual + LayerNorm: LN(x + Dropout(Re(W_out h)))."""

    def __init__(self, c: Config):
        super().__init__()
        D, H = c.hidden_size, 2 * c.hidden_size
        self.chunk_size = c.chunk_size
        # LRU init (Orvieto et al. 2023, as the reference): |lambda|^2 uniform on [r_min^2, r_max^2].
        u1, u2 = torch.rand(H), torch.rand(H)
        nu_log = torch.log(-0.5 * torch.log(u1 * (c.r_max ** 2 - c.r_min ** 2) + c.r_min ** 2))
        theta_log = torch.log(u2 * 2 * math.pi)
        gamma_log = 0.5 * torch.log(1 - torch.exp(-2 * torch.exp(nu_log)))  # log sqrt(1 - |lambda|^2)
        self.params_log = nn.Parameter(torch.stack([nu_log, theta_log, gamma_log]))  # (3, H)
        self.in_proj = nn.Linear(D, 2 * H)       # [Re | Im] of the complex input map
        self.out_proj = nn.Linear(2 * H, D)      # Re(W h + c) = [W_re, -W_im] [Re h; Im h] + c_re
        self.dropout = Dropout(c.dropout)
        self.layer_norm = nn.LayerNorm(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu, theta, gamma = torch.exp(self.params_log)                # (H,) each
        log_lambda = torch.complex(-nu, theta)                       # (H,)
        proj = self.in_proj(x)                                       # (B, L, 2H)
        if proj.dtype in (torch.bfloat16, torch.float16):  # autocast: no bf16 complex numbers,
            proj = proj.float()                            # so the recurrence runs in complex64
        re, im = proj.chunk(2, dim=-1)                               # (B, L, H) each
        b = torch.complex(re, im) * gamma                            # (B, L, H) complex
        h = lru_scan(b, log_lambda, self.chunk_size)                 # (B, L, H) complex
        y = self.out_proj(torch.cat([h.real, h.imag], dim=-1))       # (B, L, D)
        return self.layer_norm(x + self.dropout(y))


class LRURec(SequentialRecommender):
    Config = Config
    causal = True   # a left-to-right recurrence on right-padded input (see the docstring)

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        if not 0 < c.r_min < c.r_max < 1:
            raise ValueError(f"lrurec: need 0 < r_min < r_max < 1, got r_min={c.r_min}, r_max={c.r_max}")
        if c.chunk_size < 1:
            raise ValueError(f"lrurec: chunk_size must be >= 1, got {c.chunk_size}")
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.layer_norm = nn.LayerNorm(c.hidden_size)
        # the reference's FeedForward: 4D, GELU, dropout after the activation too, default LN eps
        self.layers = nn.ModuleList(
            nn.Sequential(LRULayer(c),
                          FeedForward(c.hidden_size, 4 * c.hidden_size, c.dropout, activation="gelu",
                                      layer_norm_eps=1e-5, inner_dropout=True))
            for _ in range(c.num_layers))
        self.bias = nn.Parameter(torch.zeros(n_items))               # per-item output bias
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        # The reference's truncated_normal_init: every parameter whose name has neither
        # 'layer_norm' nor 'params_log' ~ N(0, 0.02) truncated to [-0.04, 0.04] (biases,
        # the output bias and the embedding's padding row included).
        for name, p in self.named_parameters():
            if "layer_norm" not in name and "params_log" not in name:
                nn.init.trunc_normal_(p, mean=0.0, std=0.02, a=-0.04, b=0.04)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] -> hidden . E^T + bias, [..., n_items]."""
        return hidden @ self.output_item_embeddings().T + self.bias

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(self.emb_dropout(self.item_embedding(item_seq)))  # (B, L, D)
        for layer in self.layers:
            x = layer(x)                                                       # (B, L, D)
        return x
