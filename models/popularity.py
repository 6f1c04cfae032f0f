"""Popularity: recommend the items seen most often in training (the non-learned floor).

Reference: RecBole 1.2.1 `general_recommender/pop.py` (class Pop). Pop counts the item of
every training interaction it is shown and scores each item by `count / max_count` for every
user alike. Under the sequential leave-one-out protocol the training interactions are the
training targets (every prefix's next item), so the engine passes their counts to `fit`.

Symbols -> variables:
    c_i  (training count of item i)   self.item_counts[i]
    s(u, i) = c_i                     full_sort_predict(...)[u, i]

Scores are the raw counts: dividing by the maximum, as RecBole does, changes no ranking.
Column 0 (padding) holds whatever count it was given; the evaluator masks it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.base import SequentialRecommender


@dataclass
class Config:
    """Popularity has no hyperparameters."""


class Popularity(SequentialRecommender):
    Config = Config
    causal = True          # uses no item of the sequence at all
    learned = False        # fitted from counts, never by an optimiser

    def __init__(self, n_items: int, config: Config):
        super().__init__(n_items, config)
        # A buffer, not a parameter: saved in state_dict, invisible to the optimiser.
        self.register_buffer("item_counts", torch.zeros(n_items, dtype=torch.long))

    def fit(self, item_counts: torch.Tensor) -> "Popularity":
        """Store training counts: item_counts [n_items] long, index = item id (0 = padding)."""
        item_counts = torch.as_tensor(item_counts)
        if item_counts.shape != (self.n_items,):
            raise ValueError(f"Popularity.fit: item_counts has shape {tuple(item_counts.shape)}, "
                             f"expected ({self.n_items},): one count per item id, padding included")
        if item_counts.dtype.is_floating_point or item_counts.dtype == torch.bool:
            raise ValueError("Popularity.fit: item_counts must be integer counts, "
                             f"got {item_counts.dtype}")
        if (item_counts < 0).any():
            raise ValueError("Popularity.fit: item_counts has negative entries")
        self.item_counts.copy_(item_counts.to(self.item_counts.device))
        return self

    def forward(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        # No encoder: a [B, L, 1] zero "hidden state" keeps the contract's shape rule.
        return torch.zeros(*item_seq.shape, 1, device=item_seq.device)

    def full_sort_predict(self, item_seq: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
        """The same count vector for every user: [B, n_items] float."""
        scores = self.item_counts.to(torch.float32)                       # (n_items,)
        return scores.unsqueeze(0).expand(item_seq.size(0), -1)           # (B, n_items)

    def calculate_loss(self, item_seq, seq_len, target, reduction: str = "mean"):
        raise RuntimeError("Popularity is not trained by gradient (learned = False): "
                           "call fit(item_counts) with the training target counts instead")

    def sequence_loss(self, item_seq, seq_len, targets, reduction: str = "mean"):
        return self.calculate_loss(item_seq, seq_len, targets, reduction)
