"""Name -> model class registry. Adding a model = one file here + one line below
(see docs/adding_a_model.md). Entries are imported lazily so that a model whose optional
GPU kernels are missing never breaks the others."""
from __future__ import annotations

import dataclasses
import importlib

from models.base import SequentialRecommender

REGISTRY: dict[str, str] = {
    "popularity": "models.popularity:Popularity",
    "gru4rec": "models.gru4rec:GRU4Rec",
    "sasrec": "models.sasrec:SASRec",
    "bert4rec": "models.bert4rec:BERT4Rec",
    "linrec": "models.linrec:LinRec",
    "lrurec": "models.lrurec:LRURec",
    "mamba4rec": "models.mamba4rec:Mamba4Rec",
    "recgrela": "models.recgrela:RecGRELA",
    "recblr": "models.recblr:RecBLR",
    "echomamba4rec": "models.echomamba4rec:EchoMamba4Rec",
    "eulerformer": "models.eulerformer:EulerFormer",
    "sigma": "models.sigma:SIGMA",
}


def register(name: str, target: str) -> None:
    """Register 'package.module:ClassName' under `name` (used by plugins and tests)."""
    REGISTRY[name] = target


def model_class(name: str) -> type[SequentialRecommender]:
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(REGISTRY)}")
    module_name, class_name = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, n_items: int, **overrides) -> SequentialRecommender:
    """Build model `name` for `n_items` ids (padding included) with config overrides."""
    cls = model_class(name)
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {unknown}; its options: {sorted(known)}")
    return cls(n_items, cls.Config(**overrides))
