"""RecBLR: behaviour-dependent linear recurrent units for sequential recommendation
(arXiv 2406.12580; the RecGRELA reference repository's `model/RecBLR.py` and `parallel_scan.py`,
one of the paper's baselines).

Symbols -> variables (per recurrent layer; D = hidden_size, E = expand * D):
    X0 = LN(Dropout(Emb(s)))          dropout before LayerNorm, as RecGRELA      -> item_embedding, emb_dropout, emb_norm
    [u, z] = W_in x                   Linear(D, 2E), no bias                     -> BDLRU.input
    u = SiLU(CausalConv1d_k4(u))      depthwise, causal                          -> BDLRU.conv1d
    [r, i] = W_g u + b_g              Linear(E, 2E): recurrence and input gates  -> BDLRU.gates
    alpha_t = exp(-softplus(Lambda) * sigmoid(r_t))       per channel, in (0, 1]  -> Lambda (E,)
    beta_t  = sqrt(1 - alpha_t^2 + 1e-8) * sigmoid(i_t)
    h_t = alpha_t * h_{t-1} + beta_t * u_t,   h_{-1} = 0                         -> linear_recurrence
    y = W_out(SiLU(z) * h)            Linear(E, D), no bias                      -> BDLRU.output
    x = LN(Dropout(y) + x);  x = LN(x + Dropout(W_2 Dropout(SiLU(W_1 x))))   (4D, SiLU;
                                                          models/base.py FeedForward)
    score(i) = x_last . e_i           tied item embedding (models/base.py)
Config fields <- the reference config's keys: hidden_size, num_layers, expand, d_conv (the same
keys); dropout <- dropout_prob; layer_norm_eps (1e-12) and initializer_range (0.02) are literals
in the reference code; pad_to_power_of_two is this suite's option (see below).
Lambda starts evenly spaced so that exp(-softplus(Lambda)) runs from 0.9 to 0.999 (softplus^-1
of -log 0.9 ... -log 0.999), as the reference.

Default = the reference code, including one thing the paper does not describe:
  pad_to_power_of_two  True: its Triton scan needs a power-of-two length, so the projected
                  inputs u are LEFT-padded with zeros to the next power of two before the
                  convolution. The padded steps are not inert: the convolution of zeros is its
                  bias, so they enter the recurrence as SiLU(b_conv) and the state at the first
                  real item already holds 2^ceil(log2 L) - L phantom steps (14 at L=50, none at
                  L=64). False: no padding, the recurrence starts at the first position.
Init: N(0, 0.02) for every Linear and Embedding weight (padding row too), zero biases, LayerNorm
(1, 0); the Conv1d keeps PyTorch's default; Lambda as above.
The reference uses causal-conv1d's CUDA kernel when installed; this file has the pure path only
(same values: a causal depthwise convolution followed by SiLU).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import Dropout, FeedForward, SequentialRecommender, linear_halves, recbole_init


@dataclass
class Config:
    hidden_size: int = 64           # D
    num_layers: int = 2
    dropout: float = 0.2
    expand: int = 2                 # E = expand * D
    d_conv: int = 4                 # causal conv kernel width
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_to_power_of_two: bool = True    # the reference's phantom steps (see the docstring)


def linear_recurrence(alpha: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = alpha_t * h_{t-1} + b_t with h_{-1} = 0, over dim 1 of [B, L, E] tensors.

    A plain loop over time: L small element-wise steps, exact, and autograd does the backward
    (the reference's Triton kernel computes the same recurrence by an associative scan).
    `unbind` rather than indexing `[:, t]`: the backward of an index writes a full-size zero
    gradient per step (quadratic in L), unbind's stacks the per-step gradients once.
    """
    h = torch.zeros_like(b[:, 0])
    states = []
    for alpha_t, b_t in zip(alpha.unbind(1), b.unbind(1)):
        h = alpha_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1)


class BDLRU(nn.Module):
    """The gated recurrent (behaviour modelling) layer: [B, L, D] -> [B, L, D]."""

    def __init__(self, c: Config):
        super().__init__()
        D, E = c.hidden_size, c.expand * c.hidden_size
        self.pad_to_power_of_two = c.pad_to_power_of_two
        self.input = nn.Linear(D, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, c.d_conv, groups=E, padding=c.d_conv - 1)
        self.gates = nn.Linear(E, 2 * E)
        softplus_inverse = lambda y: math.log(math.expm1(y))
        self.Lambda = nn.Parameter(torch.linspace(softplus_inverse(-math.log(0.9)),
                                                  softplus_inverse(-math.log(0.999)), E))
        self.output = nn.Linear(E, D, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.size(1)
        u, z = linear_halves(self.input, x)                             # (B, L, E) each
        pad = 2 ** (L - 1).bit_length() - L if self.pad_to_power_of_two else 0
        u = F.pad(u, (0, 0, pad, 0))                                    # (B, pad + L, E), zeros first
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :pad + L]).transpose(1, 2)  # causal conv
        r, i = linear_halves(self.gates, u)
        alpha = torch.exp(-F.softplus(self.Lambda) * torch.sigmoid(r))
        beta = torch.sqrt(1 - alpha.pow(2) + 1e-8) * torch.sigmoid(i)
        h = linear_recurrence(alpha, beta * u)[:, pad:]                 # (B, L, E), phantom steps dropped
        return self.output(F.silu(z) * h)


class RecurrentLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.bdlru = BDLRU(c)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.ffn = FeedForward(c.hidden_size, 4 * c.hidden_size, c.dropout, activation="silu",
                               layer_norm_eps=c.layer_norm_eps, inner_dropout=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.dropout(self.bdlru(x)) + x)
        return self.ffn(x)


class RecBLR(SequentialRecommender):
    Config = Config
    causal = False  # the reference default; instances set it from config.pad_to_power_of_two

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        # Later items never reach position t, but with the phantom steps position t depends on
        # the window length (how many steps are padded in), which the engine's `sequence` mode
        # and padding invariance rule out. Without them the model is causal in the full sense.
        self.causal = not c.pad_to_power_of_two
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(RecurrentLayer(c) for _ in range(c.num_layers))
        self.apply(lambda m: recbole_init(m, c.initializer_range))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        x = self.emb_norm(self.emb_dropout(self.item_embedding(item_seq)))  # (B, L, D)
        for layer in self.layers:
            x = layer(x)
        return x
