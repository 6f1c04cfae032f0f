"""How the suite writes a model, dataset or metric for a reader: the paper's spelling
('recgrela' -> 'RecGRELA', 'ndcg@10' -> 'NDCG@10'), used by every table and figure.

A model may declare its own display name: a model file by a `display_name` class attribute,
an external model by the `display_name:` key of its entry (config/external_models.yaml or the
config's `external_model_registry`). The reporting layer never imports a model: the workflow
(recbench/workflow.py `model_info`) hands the names to each reporting rule as params, and its
script passes them to `declare` before drawing or writing anything."""
from __future__ import annotations

from collections.abc import Mapping

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

_DECLARED: dict[str, str] = {}      # model -> its declared display name (or its own name)


def declare(models: Mapping[str, Mapping | str | None]) -> None:
    """The workflow's models, each with what it declares: {model: {"display_name": ...}} (the
    params of a reporting rule), or {model: name}. Replaces what was declared before. Their
    names are used by `display_name`; the set of them by the figures' colours
    (recbench/reporting/style.py)."""
    _DECLARED.clear()
    for model, info in models.items():
        name = info.get("display_name") if isinstance(info, Mapping) else info
        _DECLARED[str(model)] = str(name) if name else ""


def declared_models() -> list[str]:
    return sorted(_DECLARED)


def display_name(name) -> str:
    """The paper's spelling of a model, dataset or metric name ('recgrela' -> 'RecGRELA'); a
    model's declared display name first."""
    return _DECLARED.get(name) or TITLES.get(name, str(name))
