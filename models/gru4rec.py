"""GRU4Rec: a recurrent next-item recommender, as RecBole 1.2.1 defines it.

Papers: B. Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
ICLR 2016; Y. K. Tan et al., "Improved Recurrent Neural Networks for Session-based
Recommendations", DLRS 2016 (the variant RecBole implements: full-softmax CE on every prefix,
i.e. data augmentation, no session-parallel mini-batches).
Reference code: RecBole 1.2.1 `sequential_recommender/gru4rec.py`, `properties/model/GRU4Rec.yaml`.

Symbols -> variables (GRU equations, no biases as in RecBole's `nn.GRU(bias=False)`):
    e_t = E[x_t]                                   emb      (B, L, d_emb)   E = self.item_embedding
    r_t = sigma(W_ir e_t + W_hr h_{t-1})           \
    z_t = sigma(W_iz e_t + W_hz h_{t-1})            } inside self.gru (weight_ih_l*, weight_hh_l*
    n_t = tanh(W_in e_t + r_t * (W_hn h_{t-1}))     }  stack [W_r; W_z; W_n] row-wise)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}          /  h_0 = 0
    o_t = W_o h_t + b_o                            self.dense, back to d_emb for tied scoring
    score(i | x_<=t) = o_t . E[i]                  base.score

Dropout (0.3) acts on the input embeddings only, as in RecBole.

Config fields <- RecBole's `GRU4Rec.yaml` keys: embedding_size, hidden_size, num_layers (the
same keys; hidden_size is the GRU state here, the model width is embedding_size);
dropout <- dropout_prob.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import Dropout, SequentialRecommender


@dataclass
class Config:
    embedding_size: int = 64     # d_emb: item embedding and output size (tied scoring)
    hidden_size: int = 128       # d_h: GRU state size
    num_layers: int = 1
    dropout: float = 0.3         # on the input embeddings


class GRU4Rec(SequentialRecommender):
    Config = Config
    causal = True   # a left-to-right recurrence: h_t sees x_1..x_t only

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        c = config
        self.item_embedding = nn.Embedding(n_items, c.embedding_size, padding_idx=0)
        self.emb_dropout = Dropout(c.dropout)
        self.gru = nn.GRU(c.embedding_size, c.hidden_size, num_layers=c.num_layers,
                          bias=False, batch_first=True)
        self.dense = nn.Linear(c.hidden_size, c.embedding_size)
        self._init_weights()

    def _init_weights(self):
        # RecBole: xavier_normal_ on the whole embedding (the padding row too, so it is not
        # zero; it never reaches a real position's state and its score column is masked),
        # xavier_uniform_ on the FIRST GRU layer's weights only (it names weight_*_l0);
        # deeper GRU layers and the dense layer keep PyTorch's default init.
        nn.init.xavier_normal_(self.item_embedding.weight)
        nn.init.xavier_uniform_(self.gru.weight_hh_l0)
        nn.init.xavier_uniform_(self.gru.weight_ih_l0)

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        emb = self.emb_dropout(self.item_embedding(item_seq))     # (B, L, d_emb)
        # The whole padded window runs through the GRU (as RecBole, no packing): states
        # after seq_len - 1 are never read, and earlier ones do not depend on them.
        states, _ = self.gru(emb)                                   # (B, L, d_h)
        return self.dense(states)                                   # (B, L, d_emb)
