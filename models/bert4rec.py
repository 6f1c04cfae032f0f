"""BERT4Rec: a bidirectional Transformer trained with a cloze (masked item) objective.

Paper: F. Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019.
Reference code: RecBole 1.2.1 `sequential_recommender/bert4rec.py`, `data/transform.py`
(MaskItemSequence) and `properties/model/BERT4Rec.yaml`. RecBole's behaviour is the default:

Training (one example = one prefix window x_1..x_n of the prefix-augmented data; its
next-item target is NOT used, as in RecBole, where the cloze transform reads only the window):
    each real item is replaced by the mask token [M] = id n_items with probability rho
    (mask_ratio); padding is never masked. The loss is the mean CE over the chosen positions,
    but, as RecBole's fixed-size index list does, only the LAST K = int(rho * max_len) chosen
    positions of a window count, and a chosen FIRST position (index 0) never counts (RecBole
    pads its index list with 0 and weights by index > 0). Positions chosen beyond those still
    show [M] in the input.
Prediction (RecBole's reconstruct_test_data): [M] is written at position n (just after the
    last item) of the window extended by one column, the FIRST column is dropped (so the
    window keeps its length and x_1 is lost, for every window), and the score is read at the
    [M] position n - 1. `predict_drop_first=False` drops x_1 only from full windows (n = L),
    where there is no room for [M].

Config fields <- RecBole's `BERT4Rec.yaml` keys: as models/sasrec.py (num_layers <- n_layers,
num_heads <- n_heads, dropout <- hidden_dropout_prob, attn_dropout <- attn_dropout_prob,
hidden_act 'gelu_recbole' <- 'gelu'), plus mask_ratio <- mask_ratio, max_len <-
MAX_ITEM_LIST_LENGTH; predict_drop_first is an option of this suite.

Symbols -> variables:
    E (items + [M], (|I| + 1) x d)       self.item_embedding, row n_items = [M]
    P (learnable positions)              self.position_embedding (config.max_len rows)
    encoder                              SASRec's post-LN blocks (models/sasrec.py) with the
                                         padding-key mask only (bidirectional, no causal mask)
    h_t = LN(GELU(W_out H_t + b))        self.output_ffn / output_act (nn.GELU in RecBole:
                                         ACTIVATIONS["gelu"]) / output_ln
    score(i) = h_t . E[i] + b_i          score(): tied embedding (rows < n_items) + output_bias
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ACTIVATIONS, Dropout, SequentialRecommender, check_window, recbole_init
from models.sasrec import TransformerBlock


@dataclass
class Config:
    num_layers: int = 2
    num_heads: int = 2
    hidden_size: int = 64
    inner_size: int = 256
    dropout: float = 0.2             # embedding, sublayer-output and feed-forward dropout
    attn_dropout: float = 0.2        # on the attention probabilities
    hidden_act: str = "gelu_recbole" # a key of models/base.py ACTIVATIONS (RecBole's 'gelu')
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    mask_ratio: float = 0.2          # rho: probability that a real item is replaced by [M]
    max_len: int = 200               # position rows; also sets K = int(mask_ratio * max_len)
    attention: str = "math"          # "math" (RecBole) | "sdpa"
    predict_drop_first: bool = True  # RecBole drops x_1 from every window at prediction


class BERT4Rec(SequentialRecommender):
    Config = Config
    causal = False              # bidirectional: h_t sees the whole window
    padding_invariant = True    # padding keys are masked: more right padding changes nothing

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        if not 0.0 < c.mask_ratio < 1.0:
            raise ValueError(f"BERT4Rec: mask_ratio must be in (0, 1), got {c.mask_ratio}")
        self.mask_token = n_items                       # one id past the last real item
        self.item_embedding = nn.Embedding(n_items + 1, c.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(c.max_len, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(c, causal=False) for _ in range(c.num_layers))
        self.output_ffn = nn.Linear(c.hidden_size, c.hidden_size)
        self.output_act = ACTIVATIONS["gelu"]           # RecBole's nn.GELU(): torch's erf GELU
        self.output_ln = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.output_bias = nn.Parameter(torch.zeros(n_items))
        self.apply(lambda m: recbole_init(m, c.initializer_range))

    # --- encoder ------------------------------------------------------------------------
    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """Encode the window as given ([M] ids already in place): (B, L) -> (B, L, d)."""
        L = item_seq.size(1)
        check_window("bert4rec", L, self.config.max_len)
        x = self.item_embedding(item_seq) + self.position_embedding.weight[:L]   # (B, L, d)
        x = self.dropout(self.LayerNorm(x))
        key_is_item = item_seq != 0                    # [M] is a real key, padding is not
        for block in self.blocks:
            x = block(x, key_is_item)                                             # (B, L, d)
        return self.output_ln(self.output_act(self.output_ffn(x)))               # (B, L, d)

    # --- scoring: real items only, plus a per-item bias -----------------------------------
    def output_item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items]          # drop the [M] row

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.output_item_embeddings().T + self.output_bias

    # --- prediction: append [M] and read it out --------------------------------------------
    def append_mask(self, item_seq: torch.Tensor, seq_len: torch.Tensor):
        """Window with [M] after the last item, and the index of [M]: ((B, L), (B,))."""
        B, L = item_seq.shape
        rows = torch.arange(B, device=item_seq.device)
        extended = torch.cat([item_seq, item_seq.new_zeros(B, 1)], dim=1)       # (B, L + 1)
        extended[rows, seq_len] = self.mask_token
        if self.config.predict_drop_first:
            return extended[:, 1:], seq_len - 1                                 # (B, L), (B,)
        full = seq_len >= L                             # no room for [M]: drop x_1 there only
        window = torch.where(full[:, None], extended[:, 1:], extended[:, :-1])  # (B, L)
        return window, torch.where(full, seq_len - 1, seq_len)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        window, mask_at = self.append_mask(item_seq, seq_len)
        hidden = self.forward(window, seq_len)                                  # (B, L, d)
        at_mask = hidden[torch.arange(hidden.size(0), device=hidden.device), mask_at]  # (B, d)
        return self.score(at_mask)                                              # (B, n_items)

    # --- training: cloze loss ----------------------------------------------------------------
    def cloze_mask(self, item_seq: torch.Tensor):
        """Draw the cloze mask with torch's global RNG (so seeding reproduces it).

        Returns the masked window (B, L) and the positions that carry a loss term (B, L) bool.
        """
        c = self.config
        draw = torch.rand(item_seq.shape, device=item_seq.device)               # (B, L)
        chosen = (draw < c.mask_ratio) & (item_seq != 0)
        masked_seq = torch.where(chosen, torch.full_like(item_seq, self.mask_token), item_seq)
        return masked_seq, self.loss_positions(chosen, int(c.mask_ratio * c.max_len))

    @staticmethod
    def loss_positions(chosen: torch.Tensor, k: int) -> torch.Tensor:
        """RecBole's index list: the last `k` chosen positions per row, never position 0."""
        chosen_from_here = chosen.flip(1).cumsum(1).flip(1)    # (B, L): chosen at >= t
        keep = chosen & (chosen_from_here <= k)
        keep[:, 0] = False
        return keep

    def calculate_loss(self, item_seq, seq_len, target=None, reduction: str = "mean"):
        """Cloze CE on the window `item_seq`; `target` (the prefix's next item) is unused."""
        masked_seq, at = self.cloze_mask(item_seq)
        hidden = self.forward(masked_seq, seq_len)                              # (B, L, d)
        losses = F.cross_entropy(self.score(hidden[at]), item_seq[at], reduction="none")  # (N,)
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        # A batch without any term gives 0 (RecBole divides 0 by 0 there).
        return losses.sum() / max(int(at.sum()), 1)

    def sequence_loss(self, item_seq, seq_len, targets, reduction: str = "mean"):
        raise NotImplementedError("BERT4Rec is bidirectional (causal = False): train it in "
                                  "`prefix` mode, where calculate_loss applies the cloze objective")
