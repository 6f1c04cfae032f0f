"""SASRec: self-attentive sequential recommendation (a causal post-LN Transformer).

Paper: W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.
Reference code: RecBole 1.2.1 `sequential_recommender/sasrec.py` and `model/layers.py`
(MultiHeadAttention, FeedForward, TransformerEncoder), which follows BERT's post-LN layer
rather than the paper's pre-LN one; RecBole is what the comparison runs, so it is the default.

Config fields <- RecBole's `SASRec.yaml` keys:
    hidden_size <- hidden_size       num_layers   <- n_layers     num_heads <- n_heads
    inner_size  <- inner_size        dropout      <- hidden_dropout_prob
    attn_dropout <- attn_dropout_prob
    hidden_act  <- hidden_act ('gelu' there = 'gelu_recbole' here: RecBole's spelled-out erf GELU)
    layer_norm_eps, initializer_range <- the same keys;  max_len <- MAX_ITEM_LIST_LENGTH

Symbols -> variables:
    E (item embedding, |I| x d)          self.item_embedding
    P (learnable positions, n x d)       self.position_embedding, n = config.max_len, positions
                                         counted from the window start (index 0 = first item)
    E^(0) = Dropout(LN(E[x] + P))        forward
    S = Q K^T / sqrt(d_h)  per head       MultiHeadSelfAttention (d_h = d / num_heads)
    causal mask: key j allowed for query t iff j <= t and x_j != 0 (padding keys masked too);
    masked scores get -10000 (RecBole's value), not -inf
    A = Dropout(softmax(S)) V            attention probabilities are dropped (attn_dropout)
    block: H = LN(X + Dropout(A W_O));  X' = LN(H + Dropout(W_2 GELU(W_1 H)))   (post-LN;
                                         the second sublayer is models/base.py FeedForward)
    score(i | x_<=t) = E^(b)_t . E[i]    base.score (tied item embedding)

`attention="math"` materialises the (B, h, L, L) scores exactly as RecBole does: that is the
memory the paper's comparison is about. `attention="sdpa"` calls
F.scaled_dot_product_attention(is_causal=True), which may pick a flash / memory-efficient
kernel that never stores the L x L matrix; real positions get the same outputs (padding keys
only ever sit after the last real query in right-padded windows, so the causal mask alone
already hides them from every real position).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (ACTIVATIONS, Dropout, FeedForward, SequentialRecommender, check_window,
                         recbole_init)

MASK_VALUE = -10000.0   # RecBole's additive mask value (an exact zero weight after softmax)

@dataclass
class Config:
    num_layers: int = 2
    num_heads: int = 2
    hidden_size: int = 64            # d
    inner_size: int = 256            # feed-forward width
    dropout: float = 0.2             # embedding, sublayer-output and feed-forward dropout
    attn_dropout: float = 0.2        # on the attention probabilities
    hidden_act: str = "gelu_recbole" # a key of models/base.py ACTIVATIONS (RecBole's 'gelu')
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_len: int = 200               # rows of the position table; the engine sets the run's max_len
    attention: str = "math"          # "math" (RecBole, explicit L x L) | "sdpa"


class MultiHeadSelfAttention(nn.Module):
    """Post-LN multi-head self-attention sublayer: LN(x + Dropout(W_O Attn(x)))."""

    def __init__(self, hidden_size, num_heads, dropout, attn_dropout,
                 layer_norm_eps, attention="math", causal=True):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        if attention not in ("math", "sdpa"):
            raise ValueError(f"attention must be 'math' or 'sdpa', got {attention!r}")
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.attention, self.causal = attention, causal
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = Dropout(attn_dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_dropout = Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)     # (B, h, L, d_h)

    def forward(self, x: torch.Tensor, key_is_item: torch.Tensor) -> torch.Tensor:
        """x (B, L, d); key_is_item (B, L) bool, False at padding."""
        B, L, D = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        if self.attention == "math":
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)      # (B, h, L, L)
            # Two broadcast masks instead of RecBole's materialised (B, 1, L, L) float mask:
            # same weights (every masked score underflows to 0 after softmax), less memory.
            scores = scores.masked_fill(~key_is_item[:, None, None, :], MASK_VALUE)
            if self.causal:
                future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)  # (L, L)
                scores = scores.masked_fill(future, MASK_VALUE)
            probs = self.attn_dropout(torch.softmax(scores, dim=-1))          # (B, h, L, L)
            context = probs @ v                                               # (B, h, L, d_h)
        else:
            p = self.attn_dropout.p if self.training else 0.0
            if self.causal:
                context = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                context = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=key_is_item[:, None, None, :], dropout_p=p)
        context = context.transpose(1, 2).reshape(B, L, D)                    # (B, L, d)
        return self.LayerNorm(x + self.out_dropout(self.dense(context)))


class TransformerBlock(nn.Module):
    """RecBole's TransformerLayer: attention sublayer then feed-forward sublayer."""

    def __init__(self, c, causal: bool):
        super().__init__()
        if c.hidden_act not in ACTIVATIONS:
            raise ValueError(f"{type(c).__module__} Config.hidden_act: {c.hidden_act!r} is not "
                             f"one of {sorted(ACTIVATIONS)}")
        self.attention = MultiHeadSelfAttention(c.hidden_size, c.num_heads, c.dropout,
                                                c.attn_dropout, c.layer_norm_eps,
                                                c.attention, causal)
        # RecBole's FeedForward: no dropout between its two dense layers
        self.feed_forward = FeedForward(c.hidden_size, c.inner_size, c.dropout,
                                        activation=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
                                        inner_dropout=False)

    def forward(self, x, key_is_item):
        return self.feed_forward(self.attention(x, key_is_item))


class SASRec(SequentialRecommender):
    Config = Config
    causal = True   # the attention mask hides every key after the query

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(c.max_len, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(c, causal=True) for _ in range(c.num_layers))
        self.apply(lambda m: recbole_init(m, c.initializer_range))

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        L = item_seq.size(1)
        check_window("sasrec", L, self.config.max_len)
        positions = self.position_embedding.weight[:L]                       # (L, d)
        x = self.item_embedding(item_seq) + positions                        # (B, L, d)
        x = self.dropout(self.LayerNorm(x))
        key_is_item = item_seq != 0                                          # (B, L)
        for block in self.blocks:
            x = block(x, key_is_item)                                        # (B, L, d)
        return x
