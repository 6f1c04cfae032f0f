"""How the suite writes a model, dataset or metric for a reader: the paper's spelling
('recgrela' -> 'RecGRELA', 'ndcg@10' -> 'NDCG@10'), used by every table and figure."""
from __future__ import annotations

TITLES = {"hit@5": "HR@5", "ndcg@5": "NDCG@5", "mrr@5": "MRR@5", "hit@10": "HR@10",
          "ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "seconds_per_epoch": "s/epoch",
          "gpu_memory_gb": "memory (GB)",
          "linrec": "LinRec", "lrurec": "LRURec", "mamba4rec": "Mamba4Rec",
          "echomamba4rec": "EchoMamba4Rec", "eulerformer": "EulerFormer", "recblr": "RecBLR",
          "sigma": "SIGMA", "recgrela": "RecGRELA", "sasrec": "SASRec", "gru4rec": "GRU4Rec",
          "bert4rec": "BERT4Rec", "popularity": "Pop",
          "recbole-sasrec": "SASRec (RecBole)", "recbole-gru4rec": "GRU4Rec (RecBole)",
          "reference-recgrela": "RecGRELA (authors' code)",
          "reference-linrec": "LinRec (authors' code)",
          "reference-lrurec": "LRURec (authors' code)",
          "reference-eulerformer": "EulerFormer (authors' code)",
          "reference-recblr": "RecBLR (authors' code)",
          "ml-1m": "ML-1M", "ml-20m": "ML-20M", "ml-32m": "ML-32M", "lfm-1b": "LFM-1B",
          "netflix": "Netflix", "ml-100k": "ML-100K"}


def display_name(name) -> str:
    """The paper's spelling of a model, dataset or metric name ('recgrela' -> 'RecGRELA')."""
    return TITLES.get(name, str(name))
