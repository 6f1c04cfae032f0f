"""SIGMA: Selective Gated Mamba (a partially flipped, bidirectional Mamba with a dense
selective gate and a GRU branch), as the RecGRELA reference code runs it.

Paper: Z. Liu, Q. Liu et al., "SIGMA: Selective Gated Mamba for Sequential Recommendation",
arXiv 2408.11451 (AAAI 2025). Reference code: RecGRELA `model/SIGMA.py` (on RecBole 1.2, one
`mamba_ssm.Mamba` per layer), `config/SIGMA.yaml` (hidden 64, 2 layers, dropout 0.2, d_state 32,
d_conv 4, expand 2: the Mamba4Rec settings).

Config fields <- the reference config's keys: hidden_size, num_layers, d_state, d_conv, expand
(the same keys); dropout <- dropout_prob. Literals of `model/SIGMA.py` made options:
flip_len <- 45 (`flipped_input[:, :45]`), gate_dropout <- 0.2 (`Dropout(0.2)` of the gate);
the rest (keep_last, flipped_gate, unflip_output, mix, init, chunk_size, use_kernels) are this
suite's options, below.

Notation as models/mamba4rec.py: batch size `batch`, width d = hidden_size; Mamba(.) is the
Mamba block of that file (MambaBlock, pure-PyTorch scan or mamba_ssm's kernel), ONE block per
layer, shared by both directions. One G-Mamba block, x (batch, L, d):
    PF-Mamba:  x_f = Flip(x): positions 0..flip_len-1 reversed, the rest in place   pf_flip
               m = Mamba(x),  m_f = Mamba(x_f)        (m_f stays in flipped order)   mamba
    DS gate:   h_1 = x + W_1 x                                                      dense1
               g(h) = W_si SiLU(h) + W_sig Sigmoid(h)       (shared by both branches) gate_si, gate_sig
               G_1 = Dropout_0.2(W_si SiLU(h_1) + W_sig Sigmoid(h_1))
               h_2 = x_f + W_2 x_f                                                  dense2
               G_2 = Dropout_0.2(W_si SiLU(h_2) + W_sig Sigmoid(G_1))   <- G_1, not h_2 (as the code)
               m <- m * G_1 + m,   m_f <- m_f * G_2 + m_f
    FE-GRU:    c = Conv1d_k3(x) (padding 1 on both sides: position t sees t-1, t, t+1)  conv1d
               r = GRU(c)        (no biases; PyTorch's default init, as the reference)  gru
    mix:       y = W_p (w_2 m + w_1 m_f + w_0 r),  w = (w_0, w_1, w_2) learned, init
               (0.1, 0.1, 0.8), used RAW (the code computes their softmax and discards it)  combining_weights, projection
Around each block (post-LN, as models/mamba4rec.py):
    x' = LN(x + Dropout(y))   (one-layer model: LN(Dropout(y)), no residual)
    x'' = LN(x' + Dropout(W_b Dropout(GELU(W_a x'))))   d_ff = 4 d (models/base.py FeedForward)
    input: x^0 = LN(Dropout(E[s]))   (dropout before LayerNorm, as the reference)

Causality and the prefix protocol. SIGMA is bidirectional (causal = False): the flipped
branch, and the conv's look-ahead of one position, let hidden[:, t] see items after t and the
padding of the window. The engine therefore refuses `train.mode: sequence` for it (its
targets would be in its inputs) and trains it as the reference does, in `prefix` mode: every
example is a prefix whose next item is NOT in the window, so nothing leaks; the read-out at
seq_len - 1 does see the padded tail (the conv's right neighbour, and, for windows or
sequences shorter than flip_len, the padding flipped to the front), so it is not padding
invariant either: the reference's numbers are those of max_len-long windows (RecBole pads to
MAX_ITEM_LIST_LENGTH, as the engine does).

Fidelity (default = the reference code; docs/fidelity.md, "SIGMA"):
- flip_len = 45 positions of the right-padded window, a literal of the code, whatever the
  window or the sequence length. As we read the paper, PF-Mamba flips a user's sequence except
  its last r items; `keep_last = r` does that: per user, the real items except the last r are
  reversed, the last r items and the padding stay in place (flip_len is then unused).
- The flipped branch's gate reads the forward branch's gate G_1 in its sigmoid term (above).
  `flipped_gate = "own"` gives it its own input: G_2 = Dropout(W_si SiLU(h_2) + W_sig Sigmoid(h_2)).
- The flipped branch's output is mixed in flipped order. `unflip_output = True` flips it back
  (the flip is its own inverse) so that position t of both directions is the same item.
- The mixing weights are used raw (they need not sum to one); `mix = "softmax"` uses
  softmax(w), the normalisation the code computes and does not use.
- The gate's dropout is 0.2 whatever `dropout` is (`gate_dropout`).
- init = "reference": RecBole's init over the whole model after building the blocks (N(0, 0.02)
  Linear and Embedding weights, zero Linear biases, the Mamba blocks' dt_proj bias included:
  see models/mamba4rec.py); the GRU, the FE-GRU conv and the Mamba conv keep PyTorch's default
  init, A_log and D mamba_ssm's. `init = "mamba_ssm"` keeps mamba_ssm's init inside the blocks.
Fast path: mamba_ssm's selective-scan kernel (and causal_conv1d's) on CUDA when installed,
through models/mamba4rec.py MambaBlock; pure PyTorch everywhere else (tests/test_sigma.py checks
the model against a float64 per-step loop and, when the checkout is present, against
`model/SIGMA.py` itself with the same weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Dropout, FeedForward, SequentialRecommender, recbole_init_except
from models.mamba4rec import MambaBlock


@dataclass
class Config:
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2         # embedding, block-output and feed-forward dropout
    d_state: int = 32            # N
    d_conv: int = 4              # the Mamba block's causal conv width
    expand: int = 2              # E = expand * hidden_size
    flip_len: int = 45           # PF-Mamba: window positions 0..flip_len-1 reversed (reference literal)
    keep_last: int | None = None  # None: reference; r: per user, flip all real items but the last r
    gate_dropout: float = 0.2    # dropout of the DS gate (reference literal, not `dropout`)
    flipped_gate: str = "reference"   # reference (sigmoid term reads G_1) | own (reads h_2)
    unflip_output: bool = False  # flip the flipped branch's output back before mixing
    mix: str = "raw"             # raw (reference: learned weights as they are) | softmax
    init: str = "reference"      # reference (RecBole re-init of the blocks) | mamba_ssm
    chunk_size: int = 0          # pure-PyTorch scan: positions per recomputed chunk (0 = auto)
    use_kernels: bool = True     # mamba_ssm / causal_conv1d kernels on CUDA when installed; the compiled scan on CPU

    def __post_init__(self):
        checks = [
            (self.flip_len >= 0, f"flip_len must be >= 0, got {self.flip_len}"),
            (self.keep_last is None or self.keep_last >= 0, f"keep_last must be None or >= 0, got {self.keep_last}"),
            (self.flipped_gate in ("reference", "own"), f"flipped_gate must be 'reference' or 'own', got {self.flipped_gate!r}"),
            (self.mix in ("raw", "softmax"), f"mix must be 'raw' or 'softmax', got {self.mix!r}"),
            (self.init in ("reference", "mamba_ssm"), f"init must be 'reference' or 'mamba_ssm', got {self.init!r}"),
            (self.chunk_size >= 0, f"chunk_size must be >= 0 (0 = auto), got {self.chunk_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"sigma: {message}")


def pf_flip(x: torch.Tensor, seq_len: torch.Tensor, c: Config) -> torch.Tensor:
    """PF-Mamba's partial flip of x (batch, L, d); its own inverse.
    keep_last None (reference): window positions 0..flip_len-1 reversed, the rest in place.
    keep_last r: per user, positions 0..n-1 reversed with n = max(seq_len - r, 0)."""
    if c.keep_last is None:
        n = min(c.flip_len, x.size(1))
        return torch.cat([x[:, :n].flip(1), x[:, n:]], dim=1)                 # (batch, L, d)
    t = torch.arange(x.size(1), device=x.device)                              # (L,)
    n = (seq_len - c.keep_last).clamp(min=0)[:, None]                         # (batch, 1)
    source = torch.where(t < n, n - 1 - t, t)                                 # (batch, L)
    return x.gather(1, source[..., None].expand_as(x))                        # (batch, L, d)


class GMambaBlock(nn.Module):
    """PF-Mamba + DS gate + FE-GRU, mixed and projected (the docstring's equations)."""

    def __init__(self, c: Config):
        super().__init__()
        d = c.hidden_size
        self.c = c
        # (w_0, w_1, w_2): weights of the GRU, flipped and forward branches
        self.combining_weights = nn.Parameter(torch.tensor([0.1, 0.1, 0.8]))
        self.dense1 = nn.Linear(d, d)
        self.dense2 = nn.Linear(d, d)
        self.projection = nn.Linear(d, d)
        self.mamba = MambaBlock(c)
        self.gru = nn.GRU(d, d, num_layers=1, bias=False, batch_first=True)
        self.gate_si = nn.Linear(d, d)       # W_si, after SiLU
        self.gate_sig = nn.Linear(d, d)      # W_sig, after Sigmoid
        self.gate_dropout = Dropout(c.gate_dropout)
        self.conv1d = nn.Conv1d(d, d, kernel_size=3, padding=1)   # centred: sees t-1, t, t+1

    def forward(self, x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        c = self.c
        x_f = pf_flip(x, seq_len, c)                                          # (batch, L, d)
        h_1 = x + self.dense1(x)
        h_2 = x_f + self.dense2(x_f)
        # the reference runs the flipped sequence through the block first (no effect on values)
        m_f, m = self.mamba(x_f), self.mamba(x)                               # (batch, L, d) each
        g_1 = self.gate_dropout(self.gate_si(F.silu(h_1)) + self.gate_sig(torch.sigmoid(h_1)))
        sig_in = g_1 if c.flipped_gate == "reference" else h_2
        g_2 = self.gate_dropout(self.gate_si(F.silu(h_2)) + self.gate_sig(torch.sigmoid(sig_in)))
        m = m * g_1 + m
        m_f = m_f * g_2 + m_f
        if c.unflip_output:
            m_f = pf_flip(m_f, seq_len, c)
        r, _ = self.gru(self.conv1d(x.transpose(1, 2)).transpose(1, 2))      # (batch, L, d)
        w = self.combining_weights
        if c.mix == "softmax":
            w = torch.softmax(w, dim=0)
        return self.projection(w[2] * m + w[1] * m_f + w[0] * r)             # (batch, L, d)


class SIGMALayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.residual = c.num_layers > 1     # the reference drops it in a one-layer model
        self.gmamba = GMambaBlock(c)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.ffn = FeedForward(c.hidden_size, 4 * c.hidden_size, c.dropout, activation="gelu",
                               layer_norm_eps=1e-12, inner_dropout=True)

    def forward(self, x: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        h = self.dropout(self.gmamba(x, seq_len))                             # (batch, L, d)
        return self.ffn(self.norm(h + x if self.residual else h))


class SIGMA(SequentialRecommender):
    Config = Config
    causal = False   # bidirectional: the flipped branch and the centred conv see later positions
    # padding_invariant = causal = False: the read-out sees the padded tail (module docstring)

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.layers = nn.ModuleList(SIGMALayer(c) for _ in range(c.num_layers))
        recbole_init_except(self, [layer.gmamba.mamba for layer in self.layers]
                            if c.init == "mamba_ssm" else [])

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        x = self.emb_norm(self.emb_dropout(self.item_embedding(item_seq)))  # (batch, L, d)
        for layer in self.layers:
            x = layer(x, seq_len)                                            # (batch, L, d)
        return x
