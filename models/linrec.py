"""LinRec: a SASRec-style encoder whose softmax attention is replaced by L2-normalised
linear attention, as the RecGRELA reference code runs it.

Paper: L. Liu et al., "LinRec: Linear Attention Mechanism for Long-term Sequential
Recommender Systems", SIGIR 2023.
Reference code: RecGRELA `model/LinRec.py` + `model/layers/layers_LinRec.py` (on RecBole 1.2),
`config/LinRec.yaml` (hidden 128, 8 heads, 2 layers, inner 256, dropout 0.2).

Config fields <- the reference config's keys:
    hidden_size <- hidden_size       num_layers <- n_layers      num_heads <- n_heads
    inner_size  <- inner_size        dropout    <- hidden_dropout_prob
    hidden_act  <- hidden_act        layer_norm_eps, initializer_range <- the same keys
    max_len     <- MAX_ITEM_LIST_LENGTH (set by the engine)
    causal, chunk_size: options of this suite (the reference has neither)

Symbols -> variables, per head h (d = hidden_size / num_heads):
    E, P                       item / absolute position embeddings   item_embedding, position_embedding
    x^0 = Dropout(LN(E[s] + P))                                      forward()
    Q = x W_Q, K = x W_K, V = x W_V                                  LinearAttention.query/key/value
    phi(.) = ELU(.)  (plain ELU, NOT ELU + 1: features may be negative)
    Q~_i = phi(Q_i) / ||phi(Q_i)||_2,  K~_j = phi(K_j) / ||phi(K_j)||_2   (both over the d features
                                        of one position; see the fidelity note below)
    A(x)_i = Q~_i (sum_j K~_j^T V_j) / sqrt(d)                       linear_attention()
    x' = LN(x + Dropout(A(x) W_O)),  x'' = LN(x' + Dropout(act(x' W_1) W_2))   (post-LN, as SASRec;
                                        models/base.py FeedForward, act = ACTIVATIONS[hidden_act])

The sum over j runs over ALL L positions of the padded window in the reference (it builds
RecBole's causal [B, 1, L, L] mask and never uses it), so the default model is NOT causal: a
right-padded sequence's read-out at `seq_len - 1` also sees the padding tail (never a future
item: the target is not in the input). `causal=True` restricts the sum to j <= i, computed
chunk-wise (models/linear_attention.py), so no L x L tensor is ever built in either mode.

Fidelity notes (the default is the reference's behaviour):
- The LinRec paper normalises K column-wise (over the sequence); the reference code normalises
  each key over its features (it permutes K to [B, h, d, L] and takes the norm over dim 2 = d).
  We follow the code.
- `attn_dropout_prob` is read by the reference but never applied in its ELU attention; we do
  not expose it.
- GELU: the reference spells it out as RecBole does (`hidden_act: gelu` there is
  ACTIVATIONS["gelu_recbole"]); our default `gelu` is torch's kernel, the same function rounded
  differently (kept so that earlier runs reproduce bit for bit).
- The L2 norm has a 1e-12 floor (F.normalize); the reference divides by the raw norm, which
  only differs where the reference would produce inf/NaN (an all-zero ELU feature vector).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (ACTIVATIONS, Dropout, FeedForward, SequentialRecommender, check_window,
                         recbole_init)
from models.linear_attention import causal_linear_attention


@dataclass
class Config:
    max_len: int = 200               # learnable absolute positions 0..max_len-1 (the run's max_len)
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 8
    inner_size: int = 256            # feed-forward width
    dropout: float = 0.2             # embedding, attention-output and feed-forward dropout
    hidden_act: str = "gelu"         # a key of models/base.py ACTIVATIONS
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    causal: bool = False             # reference: False (sum over the whole padded window)
    chunk_size: int = 32             # causal mode: positions per chunk (memory ~ B*h*L*(C + 2d^2/C))


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     causal: bool = False, chunk_size: int = 32) -> torch.Tensor:
    """LinRec attention on per-head tensors q, k, v: (B, h, L, d) -> (B, h, L, d).

    Non-causal: out_i = q~_i (K~^T V) / sqrt(d), one (d, d) state per head.
    Causal:     out_i = q~_i (sum_{j<=i} k~_j^T v_j) / sqrt(d), in chunks of `chunk_size`
                positions (models/linear_attention.py): memory O(L * C + L / C * d^2), never O(L^2).
    """
    d = q.size(-1)
    q = F.normalize(F.elu(q), dim=-1)                    # (B, h, L, d) unit rows
    k = F.normalize(F.elu(k), dim=-1)                    # (B, h, L, d) unit rows
    if not causal:
        kv = k.transpose(-2, -1) @ v                     # (B, h, d, d)
        return (q @ kv) / math.sqrt(d)
    positions_first = lambda t: t.transpose(1, 2)                 # (B, L, h, d) views
    out = causal_linear_attention(positions_first(q), positions_first(k), positions_first(v),
                                  chunk_size)                      # (B, L, h, d)
    return out.transpose(1, 2) / math.sqrt(d)                      # (B, h, L, d)


class LinearAttention(nn.Module):
    """Multi-head LinRec attention with the post-LN residual of RecBole's MultiHeadAttention."""

    def __init__(self, c: Config):
        super().__init__()
        self.num_heads, self.causal, self.chunk_size = c.num_heads, c.causal, c.chunk_size
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        split = lambda t: t.view(B, L, self.num_heads, D // self.num_heads).transpose(1, 2)  # (B, h, L, d)
        out = linear_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                               self.causal, self.chunk_size)                    # (B, h, L, d)
        out = out.transpose(1, 2).reshape(B, L, D)                               # (B, L, D)
        return self.norm(x + self.dropout(self.dense(out)))


class LinRec(SequentialRecommender):
    Config = Config
    causal = False   # the reference default; an instance built with causal=True says so

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        if c.hidden_size % c.num_heads:
            raise ValueError(f"linrec: hidden_size ({c.hidden_size}) is not a multiple of "
                             f"num_heads ({c.num_heads})")
        if c.hidden_act not in ACTIVATIONS:
            raise ValueError(f"linrec Config.hidden_act: {c.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        if c.chunk_size < 1:
            raise ValueError(f"linrec: chunk_size must be >= 1, got {c.chunk_size}")
        self.causal = c.causal
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(c.max_len, c.hidden_size)
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.emb_dropout = Dropout(c.dropout)
        # no dropout between the two dense layers, as RecBole's FeedForward
        self.layers = nn.ModuleList(
            nn.Sequential(LinearAttention(c),
                          FeedForward(c.hidden_size, c.inner_size, c.dropout, activation=c.hidden_act,
                                      layer_norm_eps=c.layer_norm_eps, inner_dropout=False))
            for _ in range(c.num_layers))
        # RecBole's init; the padding row is drawn too (it is only added to a position vector)
        self.apply(lambda m: recbole_init(m, c.initializer_range))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        L = item_seq.size(1)
        check_window("linrec", L, self.config.max_len)
        positions = torch.arange(L, device=item_seq.device)                     # (L,)
        x = self.item_embedding(item_seq) + self.position_embedding(positions)  # (B, L, D)
        x = self.emb_dropout(self.emb_norm(x))
        for layer in self.layers:
            x = layer(x)                                                         # (B, L, D)
        return x
