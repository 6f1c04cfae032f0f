"""EulerFormer: a causal post-LN Transformer whose queries and keys are turned into polar-form
complex vectors (Euler's formula), with a phase contrastive auxiliary loss, as the RecGRELA
reference code runs it.

Paper: Z. Tian, W. X. Zhao, C. Zhang, X. Zhao, Z. Ma, J.-R. Wen, "EulerFormer: Sequential User
Behavior Modeling with Complex Vector Attention", SIGIR 2024 (arXiv 2403.17729).
Reference code: RecGRELA `model/EulerFormer.py` and `model/layers/layers_euler.py` (RecBole 1.2's
SASRec and TransformerEncoder with an `EulerFormer` module in the attention),
`config/EulerFormer.yaml` (2 layers, 2 heads, hidden 64, inner 256, dropout 0.2 / 0.2, CE;
euler_bias True, init_factor 1.0, lamb 1e-5, tep 1.0). The repository's
`modeling_llama_w_EulerFormer.py` is a LLaMA variant for language models, imported by nothing
of the recommender; it is not what this file follows.

Config fields <- the reference config's keys:
    hidden_size <- hidden_size        num_layers <- n_layers       num_heads <- n_heads
    inner_size  <- inner_size         dropout    <- hidden_dropout_prob
    attn_dropout <- attn_dropout_prob
    hidden_act  <- hidden_act ('gelu' there = 'gelu_recbole' here: RecBole's spelled-out erf GELU)
    layer_norm_eps, initializer_range <- the same keys;  max_len <- MAX_ITEM_LIST_LENGTH
    euler_bias, init_factor <- the same keys;  contrastive_weight <- lamb;  temperature <- tep
    contrastive_dropout <- the literal Dropout(p=0.5);  rope_base <- the literal 10000
The yaml's ft_ratio, selected_features and mask_ratio are read by nothing; `config["rope"]`
(absent from the yaml) is stored and never used.

Symbols -> variables. Pairs are ADJACENT dimensions (2m, 2m+1), m = 0..D/2-1, over the full D
before the head split; position t counts from the start of the right-padded window.
    input:     e_t = E[s_t] + P_t, each pair rotated by a learned phase phi_{t,m} (init 0):
               (e_2m, e_2m+1) <- (e_2m cos phi - e_2m+1 sin phi, e_2m sin phi + e_2m+1 cos phi)
               x^0 = Dropout(LN(e))   (SASRec's order)        position_embedding, rotary_embedding
    Euler transform of v = W_Q x or W_K x (per pair, v_2m + i v_2m+1 = lam e^{i theta}):
               lam = sqrt(v_2m^2 + v_2m+1^2),  theta = atan2(v_2m+1, v_2m)
               theta' = delta * theta + alpha_{t,m} (+ b for queries),  alpha_{t,m} = t * base^(-2m/D)
               v' = (lam cos theta', lam sin theta')       euler_transform; delta, bias (per layer,
                                                           one scalar each, delta shared by Q and K)
    attention: RecBole's: softmax(Q' K'^T / sqrt(d_h) + causal and padding-key mask (-10000)),
               attention dropout, LN(x + Dropout(W_O A)); then LN(h + Dropout(W_2 GELU(W_1 h)))
               (models/base.py FeedForward, no inner dropout)
    phase contrastive loss (per layer, for Q' and for K'): a = phases of v' (atan2 of the pairs),
               a~ = Dropout_0.5(a) (the phases themselves dropped and rescaled),
               S_ij = sum_m w_m cos(a_im - a~_jm) = (cos a * w) cos a~^T + (sin a * w) sin a~^T
               l = mean over positions i of -log( exp(S_ii/tau) / (sum_j exp(S_ij/tau) + 1e-5) )
               w (D/2,) learned, init 1 (per layer), over ALL L positions of the window (padding too)
    loss:      CE(next item) + lamb * sum over layers of (l(Q') + l(K'))   calculate_loss

The reference TRAINS WITH the contrastive objective: its calculate_loss adds
`self.trm_encoder.loss` (the sum above, lamb = 1e-5, tau = 1.0) to the CE loss. So does ours
(`calculate_loss` and `sequence_loss`); `contrastive_weight = 0` turns it off. It never enters
the scores: `forward` / `full_sort_predict` skip it.

Causal (causal = True): the mask hides every later key and every padding key, and positions
count from the window start, so hidden[:, t] depends on items 0..t only, as SASRec's; the
engine's `sequence` mode is allowed. There the contrastive term is computed once per window
(mean over its L positions) and added to the mean of the per-position CE terms; in `prefix`
mode, as the reference, once per example over its padded window. The two weight the (1e-5
scaled) term differently; the CE parts are the same sum of terms.

Fidelity (default = the reference code; docs/fidelity.md, "EulerFormer"):
- alpha: the reference registers its (max_len, D) angle table as a Parameter and adds it
  through `.data`, so it never receives a gradient: the positional angles are RoPE's, fixed.
  Here they are computed (in float64, then cast) from the positions: same values up to float32
  rounding, no table, no untrainable parameters (the reference module has num_layers *
  max_len * D more "parameters", 25,600 at the ML-1M settings).
- The input rotation by the learned phi (in the reference's polar form lam (cos, sin)(theta +
  phi)) is computed as the equal plane rotation, which has a gradient at lam = 0 too.
- The phase contrastive log-softmax is computed with logsumexp (the reference exponentiates
  S / tau directly and divides): the same value, no overflow for large S / tau.
- euler_bias False: no query phase bias (the reference's b = 0); init_factor: delta's start.
- contrastive_weight 0: no contrastive loss, and no w (nothing else would train it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (ACTIVATIONS, Dropout, FeedForward, SequentialRecommender, check_window,
                         recbole_init)
from models.sasrec import MASK_VALUE


@dataclass
class Config:
    max_len: int = 200               # rows of the position tables; the engine sets the run's max_len
    hidden_size: int = 64            # D (even: pairs)
    num_layers: int = 2
    num_heads: int = 2
    inner_size: int = 256            # feed-forward width
    dropout: float = 0.2             # embedding, sublayer-output and feed-forward dropout
    attn_dropout: float = 0.2        # on the attention probabilities
    hidden_act: str = "gelu_recbole" # a key of models/base.py ACTIVATIONS (RecBole's 'gelu')
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    euler_bias: bool = True          # learned phase bias b on the queries
    init_factor: float = 1.0         # initial delta (the semantic-angle scale)
    rope_base: float = 10000.0       # alpha_{t,m} = t * rope_base^(-2m/D)
    contrastive_weight: float = 1e-5 # lamb; 0 = no phase contrastive loss
    temperature: float = 1.0         # tau (tep)
    contrastive_dropout: float = 0.5 # dropout on the phases of the positive view

    def __post_init__(self):
        checks = [
            (self.hidden_size % 2 == 0, f"hidden_size must be even (pairs), got {self.hidden_size}"),
            (self.num_heads > 0 and self.hidden_size % self.num_heads == 0,
             f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})"),
            ((self.hidden_size // self.num_heads) % 2 == 0 if self.num_heads > 0 else False,
             "the head size must be even (a pair never straddles two heads)"),
            (self.hidden_act in ACTIVATIONS, f"hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}"),
            (self.contrastive_weight >= 0, f"contrastive_weight must be >= 0, got {self.contrastive_weight}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"eulerformer: {message}")


def position_angles(L: int, dim: int, base: float, device, dtype) -> torch.Tensor:
    """alpha (L, dim/2): alpha_{t,m} = t * base^(-2m/dim), computed in float64."""
    t = torch.arange(L, device=device, dtype=torch.float64)
    inv_freq = base ** (-torch.arange(0, dim // 2, device=device, dtype=torch.float64) * 2 / dim)
    return (t[:, None] * inv_freq[None, :]).to(dtype)


def rotate_pairs(x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Rotate each adjacent pair (x_2m, x_2m+1) of x [..., D] by phi [..., D/2]."""
    r, p = x[..., 0::2], x[..., 1::2]                                     # (..., D/2)
    cos, sin = torch.cos(phi), torch.sin(phi)
    return torch.stack([r * cos - p * sin, r * sin + p * cos], dim=-1).flatten(-2)   # (..., D)


def euler_transform(v: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor, bias) -> torch.Tensor:
    """v [B, L, D] -> pairs lam (cos, sin)(delta * theta + alpha + bias), alpha [L, D/2]."""
    r, p = v[..., 0::2], v[..., 1::2]                                     # (B, L, D/2)
    lam = torch.sqrt(r ** 2 + p ** 2)
    theta = torch.atan2(p, r) * delta + alpha + bias
    return torch.stack([lam * torch.cos(theta), lam * torch.sin(theta)], dim=-1).flatten(-2)  # (B, L, D)


def phase_contrastive(v: torch.Tensor, w: torch.Tensor, dropout: nn.Module,
                      temperature: float) -> torch.Tensor:
    """Per-user phase contrastive loss of the transformed v [B, L, D]: [B] (mean over the L
    positions of -log(exp(S_ii / tau) / (sum_j exp(S_ij / tau) + 1e-5)))."""
    a = torch.atan2(v[..., 1::2], v[..., 0::2])                          # (B, L, D/2) phases
    b = dropout(a)                                                        # the positive view
    S = ((torch.cos(a) * w) @ torch.cos(b).transpose(-2, -1)
         + (torch.sin(a) * w) @ torch.sin(b).transpose(-2, -1)) / temperature   # (B, L, L)
    log_den = torch.logaddexp(torch.logsumexp(S, dim=-1), S.new_tensor(math.log(1e-5)))  # (B, L)
    return (log_den - S.diagonal(dim1=-2, dim2=-1)).mean(dim=-1)         # (B,)


class EulerAttention(nn.Module):
    """Post-LN multi-head self-attention with Euler-transformed queries and keys."""

    def __init__(self, c: Config):
        super().__init__()
        D = c.hidden_size
        self.c = c
        self.num_heads, self.head_dim = c.num_heads, D // c.num_heads
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D)
        self.value = nn.Linear(D, D)
        self.delta = nn.Parameter(torch.full((1,), float(c.init_factor)))
        self.bias = nn.Parameter(torch.zeros(1)) if c.euler_bias else None
        if c.contrastive_weight > 0:     # the contrastive similarity weights (used by nothing else)
            self.w = nn.Parameter(torch.ones(D // 2))
        self.phase_dropout = Dropout(c.contrastive_dropout)
        self.attn_dropout = Dropout(c.attn_dropout)
        self.dense = nn.Linear(D, D)
        self.out_dropout = Dropout(c.dropout)
        self.norm = nn.LayerNorm(D, eps=c.layer_norm_eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)     # (B, h, L, d_h)

    def forward(self, x, key_is_item, alpha, with_aux: bool):
        """x (B, L, D); key_is_item (B, L) bool; alpha (L, D/2). Returns (out, aux [B] or None)."""
        B, L, D = x.shape
        q = euler_transform(self.query(x), alpha, self.delta, self.bias if self.bias is not None else 0.0)
        k = euler_transform(self.key(x), alpha, self.delta, 0.0)
        aux = None
        if with_aux:   # where the reference computes it: before the attention's own dropout
            aux = (phase_contrastive(q, self.w, self.phase_dropout, self.c.temperature)
                   + phase_contrastive(k, self.w, self.phase_dropout, self.c.temperature))
        q, k, v = self._heads(q), self._heads(k), self._heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)          # (B, h, L, L)
        future = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)  # (L, L)
        scores = scores.masked_fill(~key_is_item[:, None, None, :], MASK_VALUE)
        scores = scores.masked_fill(future, MASK_VALUE)
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))             # (B, h, L, L)
        context = (probs @ v).transpose(1, 2).reshape(B, L, D)              # (B, L, D)
        return self.norm(x + self.out_dropout(self.dense(context))), aux


class EulerLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.attention = EulerAttention(c)
        self.feed_forward = FeedForward(c.hidden_size, c.inner_size, c.dropout,
                                        activation=c.hidden_act, layer_norm_eps=c.layer_norm_eps,
                                        inner_dropout=False)

    def forward(self, x, key_is_item, alpha, with_aux: bool):
        h, aux = self.attention(x, key_is_item, alpha, with_aux)
        return self.feed_forward(h), aux


class EulerFormer(SequentialRecommender):
    Config = Config
    causal = True   # causal, padding-key-masked attention; positions from the window start

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        self.item_embedding = nn.Embedding(n_items, c.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(c.max_len, c.hidden_size)
        self.rotary_embedding = nn.Embedding(c.max_len, c.hidden_size // 2)   # phi
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.emb_dropout = Dropout(c.dropout)
        self.layers = nn.ModuleList(EulerLayer(c) for _ in range(c.num_layers))
        self.apply(lambda m: recbole_init(m, c.initializer_range))
        nn.init.zeros_(self.rotary_embedding.weight)      # the reference: phases start at 0

    def encode(self, item_seq: torch.Tensor, with_aux: bool):
        """hidden (B, L, D) and the summed contrastive losses per user (B,) (None without, or
        with contrastive_weight 0)."""
        c = self.config
        with_aux = with_aux and c.contrastive_weight > 0
        L = item_seq.size(1)
        check_window("eulerformer", L, c.max_len)
        x = self.item_embedding(item_seq) + self.position_embedding.weight[:L]      # (B, L, D)
        x = rotate_pairs(x, self.rotary_embedding.weight[:L])
        x = self.emb_dropout(self.emb_norm(x))
        alpha = position_angles(L, c.hidden_size, c.rope_base, x.device, x.dtype)  # (L, D/2)
        key_is_item = item_seq != 0                                                 # (B, L)
        aux = None
        for layer in self.layers:
            x, layer_aux = layer(x, key_is_item, alpha, with_aux)
            if layer_aux is not None:
                aux = layer_aux if aux is None else aux + layer_aux
        return x, aux

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        return self.encode(item_seq, with_aux=False)[0]

    def calculate_loss(self, item_seq, seq_len, target, reduction: str = "mean") -> torch.Tensor:
        """`prefix` mode: CE(next item) + lamb * phase contrastive loss, per example."""
        hidden, aux = self.encode(item_seq, with_aux=True)
        logits = self.score(self.gather_last(hidden, seq_len))                      # (B, n_items)
        losses = F.cross_entropy(logits, target, reduction="none")                  # (B,)
        if aux is not None:
            losses = losses + self.config.contrastive_weight * aux
        if reduction == "none":
            return losses
        return losses.sum() if reduction == "sum" else losses.mean()

    def sequence_loss(self, item_seq, seq_len, targets, reduction: str = "mean") -> torch.Tensor:
        """`sequence` mode: CE at every position with a target + lamb * the window's contrastive
        loss (once per window; see the module docstring)."""
        hidden, aux = self.encode(item_seq, with_aux=True)
        has_target = targets > 0
        if aux is not None and reduction == "none":
            raise ValueError("eulerformer: sequence_loss(reduction='none') has no per-term share "
                             "of the per-window contrastive loss; use 'mean' or 'sum'")
        ce = F.cross_entropy(self.score(hidden[has_target]), targets[has_target], reduction=reduction)
        if aux is None:
            return ce
        return ce + self.config.contrastive_weight * (aux.sum() if reduction == "sum" else aux.mean())
