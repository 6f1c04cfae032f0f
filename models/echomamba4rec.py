"""EchoMamba4Rec: a learnable spectral (FFT) filter, then forward and backward Mamba blocks,
then a gated linear unit, as the RecGRELA reference code runs it.

Paper: Y. Wang, X. He, S. Zhu, "EchoMamba4Rec: Harmonizing Bidirectional State Space Models with
Spectral Filtering for Advanced Sequential Recommendation", arXiv 2406.02638 (2024).
Reference code: RecGRELA `model/EchoMamba4Rec.py` (on RecBole 1.2, `mamba_ssm.Mamba` blocks),
`config/EchoMamba4Rec.yaml` (hidden 64, 2 layers, dropout 0.2, d_state 32, d_conv 4, expand 2).

Config fields <- the reference config's keys: hidden_size, num_layers, d_state, d_conv, expand
(the same keys); dropout <- dropout_prob; max_len <- MAX_ITEM_LIST_LENGTH (the filter has
max_len // 2 + 1 frequencies; the engine sets it). The yaml's initializer_range (0.02, the
code's literal), num_experts and num_heads are read by nothing. pairs_per_layer, init,
chunk_size and use_kernels are this suite's options.

Notation as models/mamba4rec.py (batch size `batch`, width d = hidden_size; Mamba(.) is the
Mamba block of that file). n = max_len, F = n // 2 + 1. One EchoMamba layer, x (batch, n, d):
    spectral filter:  X = rFFT_n(x) / sqrt(n) along positions     (batch, F, d) complex   filter
                      x <- LN(x + Dropout(irFFT_n(X * W) * sqrt(n)))   W (F, d) complex, learned
                      (torch.fft norm="ortho" both ways; irFFT ignores Im W_0 and, n even, Im W_{n/2})
    K bidirectional pairs (K = num_layers: the reference nests num_layers pairs in EACH of its
    num_layers layers), for k = 1..K:
                      f = LN_f,k(Dropout(Mamba_f,k(x)) + x)                                 forward_mamba, forward_norm
                      b = LN_b,k(Dropout(Rev(Mamba_b,k(Rev(x)))) + x)   Rev: positions reversed  backward_mamba, backward_norm
                      x <- f + b
    GLU:              [a; g] = W_1 x + b_1,   x <- LN(Dropout(W_2 (a * Sigmoid(g)) + b_2 + x))   glu
                      (the dropout acts on the residual SUM, as the code writes it)
    input: x^0 = LN(Dropout(E[s]))   (dropout before LayerNorm, as the reference)
LayerNorm eps: 1e-12 for the embedding, the filter and the GLU; PyTorch's 1e-5 for LN_f, LN_b
(the reference's nn.LayerNorm(d_model)).

Windows. The filter's W has F = max_len // 2 + 1 rows, so the reference only runs on windows
of exactly MAX_ITEM_LIST_LENGTH positions (RecBole pads every batch to it). A shorter window is
right-padded here with padding ids to max_len before the embedding and the output cut back to
its L positions: the reference's computation exactly, on any window up to max_len; a longer
one is an error. More right padding thus changes nothing (padding_invariant = True).

Causality and the prefix protocol. The model is bidirectional (causal = False): the FFT mixes
all n positions and the backward Mamba reads the window from its end, so hidden[:, t] sees the
items after t and the whole padded tail (the backward scan runs through n - seq_len padding
embeddings before it reaches the last item). The engine therefore refuses `train.mode:
sequence` (its targets would be in its inputs); in `prefix` mode, as the reference, every
example is a prefix whose next item is not in the window, so nothing leaks.

Fidelity (default = the reference code; docs/fidelity.md, "EchoMamba4Rec"):
- K = num_layers Mamba pairs inside each layer (4 pairs, 8 Mamba blocks at num_layers 2).
  `pairs_per_layer = 1` gives one pair per layer, the paper's block as we read it.
- The reference builds a `MultiQueryTransformerBlock` (4-head attention + a GLU) in every layer
  and never calls it: its parameters (62,592 per layer at d = 64) are trained by nothing and
  are not created here. So our parameter count is lower than the reference module's by that.
- init = "reference": RecBole's init after building the blocks (N(0, 0.02) Linear / Embedding
  weights, zero Linear biases, dt_proj's bias included: models/mamba4rec.py); W ~ N(0, 0.02^2)
  per real and imaginary part (not touched by the re-init). `init = "mamba_ssm"` keeps
  mamba_ssm's init inside the blocks.
Fast path: mamba_ssm's kernels on CUDA when installed, through MambaBlock; pure PyTorch
elsewhere (tests/test_echomamba4rec.py: a float64 per-step loop with an explicit DFT, and the
reference file itself with the same weights when the checkout is present).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (Dropout, SequentialRecommender, check_window, linear_halves,
                         recbole_init_except)
from models.mamba4rec import MambaBlock


@dataclass
class Config:
    max_len: int = 200           # n: the filter's window (F = n // 2 + 1); the engine sets the run's
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2         # embedding, filter, Mamba-output and GLU dropout
    d_state: int = 32            # N
    d_conv: int = 4              # the Mamba blocks' causal conv width
    expand: int = 2              # E = expand * hidden_size
    pairs_per_layer: int | None = None   # None: num_layers pairs in each layer (reference)
    init: str = "reference"      # reference (RecBole re-init of the blocks) | mamba_ssm
    chunk_size: int = 0          # pure-PyTorch scan: positions per recomputed chunk (0 = auto)
    use_kernels: bool = True     # mamba_ssm / causal_conv1d kernels on CUDA when installed; the compiled scan on CPU

    def __post_init__(self):
        checks = [
            (self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}"),
            (self.pairs_per_layer is None or self.pairs_per_layer >= 1,
             f"pairs_per_layer must be None or >= 1, got {self.pairs_per_layer}"),
            (self.init in ("reference", "mamba_ssm"), f"init must be 'reference' or 'mamba_ssm', got {self.init!r}"),
            (self.chunk_size >= 0, f"chunk_size must be >= 0 (0 = auto), got {self.chunk_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"echomamba4rec: {message}")


class SpectralFilter(nn.Module):
    """x <- LN(x + Dropout(irFFT(rFFT(x) * W))), FFTs along positions, orthonormal."""

    def __init__(self, c: Config):
        super().__init__()
        # W as (F, d, 2) real: [..., 0] real part, [..., 1] imaginary part
        self.complex_weight = nn.Parameter(torch.randn(c.max_len // 2 + 1, c.hidden_size, 2) * 0.02)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(1)
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")                   # (batch, F, d) complex
        spectrum = spectrum * torch.view_as_complex(self.complex_weight)    # W (F, d) broadcast
        filtered = torch.fft.irfft(spectrum, n=n, dim=1, norm="ortho")      # (batch, n, d)
        return self.norm(x + self.dropout(filtered))


class BiMambaPair(nn.Module):
    """f = LN_f(Dropout(Mamba_f(x)) + x), b = LN_b(Dropout(Rev Mamba_b(Rev x)) + x); f + b."""

    def __init__(self, c: Config):
        super().__init__()
        self.forward_mamba = MambaBlock(c)
        self.backward_mamba = MambaBlock(c)
        self.forward_norm = nn.LayerNorm(c.hidden_size)        # eps 1e-5, as the reference
        self.backward_norm = nn.LayerNorm(c.hidden_size)

    def forward(self, x: torch.Tensor, dropout: Dropout) -> torch.Tensor:
        f = self.forward_norm(dropout(self.forward_mamba(x)) + x)                        # (batch, n, d)
        b = self.backward_norm(dropout(self.backward_mamba(x.flip(1)).flip(1)) + x)      # (batch, n, d)
        return f + b


class GLU(nn.Module):
    """LN(Dropout(W_2 (a * Sigmoid(g)) + x)), [a; g] = W_1 x."""

    def __init__(self, c: Config):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, 2 * c.hidden_size)
        self.fc2 = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = linear_halves(self.fc1, x)                                   # (batch, n, d) each
        return self.norm(self.dropout(self.fc2(a * torch.sigmoid(g)) + x))


class EchoMambaLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        pairs = c.num_layers if c.pairs_per_layer is None else c.pairs_per_layer
        self.filter = SpectralFilter(c)
        self.pairs = nn.ModuleList(BiMambaPair(c) for _ in range(pairs))
        self.dropout = Dropout(c.dropout)     # one module for both directions of every pair
        self.glu = GLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.filter(x)
        for pair in self.pairs:
            x = pair(x, self.dropout)
        return self.glu(x)


class EchoMamba4Rec(SequentialRecommender):
    Config = Config
    causal = False            # the FFT and the backward scan see the whole window
    padding_invariant = True  # every window is padded to max_len first (module docstring)

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=1e-12)
        self.layers = nn.ModuleList(EchoMambaLayer(c) for _ in range(c.num_layers))
        recbole_init_except(self, [block for layer in self.layers for pair in layer.pairs
                                   for block in (pair.forward_mamba, pair.backward_mamba)]
                            if c.init == "mamba_ssm" else [])

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        L, n = item_seq.size(1), self.config.max_len
        check_window("echomamba4rec", L, n)
        window = F.pad(item_seq, (0, n - L))                                # (batch, n), 0 = padding
        x = self.emb_norm(self.emb_dropout(self.item_embedding(window)))     # (batch, n, d)
        for layer in self.layers:
            x = layer(x)                                                     # (batch, n, d)
        return x[:, :L]                                                      # (batch, L, d)
