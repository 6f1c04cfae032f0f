"""RecBole 1.2.1's own SASRec / GRU4Rec training step, measured by recbench.cost.measure (not a test).

The issue's RecBole figures were taken with an unknown harness. This script measures RecBole's
model classes under exactly the conventions of our benchmarks (`profile_step`: batch of
full-length random sequences, peak RSS growth from just before the model is built, mean of
the timed steps after a warm-up), one cell per process, so the two columns compare like with
like. It needs RecBole importable (`pip install --no-deps recbole==1.2.1 colorlog colorama`);
torch.utils.tensorboard is stubbed, since RecBole imports it only for logging.

    python benchmarks/recbole_step.py --model sasrec --max-len 50 [--batch-size 256]
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import register  # noqa: E402
from recbench.cost.measure import profile_cell  # noqa: E402

# The settings of our baselines' defaults (the reference configs, TBI805/RecGRELA `config/*.yaml`), CE loss,
# under RecBole's own keys (our Config names differ: num_layers <- n_layers, dropout <-
# hidden_dropout_prob / dropout_prob, ...; each model's docstring maps them).
RECBOLE_CONFIG = {
    "sasrec": dict(n_layers=2, n_heads=2, hidden_size=64, inner_size=256, hidden_dropout_prob=0.2,
                   attn_dropout_prob=0.2, hidden_act="gelu", layer_norm_eps=1e-12,
                   initializer_range=0.02),
    "gru4rec": dict(embedding_size=64, hidden_size=128, num_layers=1, dropout_prob=0.3),
}


def recbole_adapter(name: str, max_len: int):
    """A class with our contract (n_items, Config) wrapping RecBole's model `name`."""
    sys.modules.setdefault("torch.utils.tensorboard",
                           types.SimpleNamespace(SummaryWriter=object))  # logging only
    if name == "sasrec":
        from recbole.model.sequential_recommender.sasrec import SASRec as RecBoleModel
    else:
        from recbole.model.sequential_recommender.gru4rec import GRU4Rec as RecBoleModel

    @dataclass
    class Config:
        pass

    class Dataset:
        def __init__(self, n_items):
            self.n_items = n_items

        def num(self, field):
            return self.n_items

    class Adapter(torch.nn.Module):
        learned, causal = True, True

        def __init__(self, n_items, config):
            super().__init__()
            settings = dict(RECBOLE_CONFIG[name], USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id",
                            LIST_SUFFIX="_list", ITEM_LIST_LENGTH_FIELD="item_length",
                            NEG_PREFIX="neg_", MAX_ITEM_LIST_LENGTH=max_len, device="cpu",
                            loss_type="CE")
            self.inner = RecBoleModel(settings, Dataset(n_items))

        def calculate_loss(self, item_seq, seq_len, target):
            # RecBole's calculate_loss reads these keys from its Interaction; a dict serves
            return self.inner.calculate_loss({"item_id_list": item_seq, "item_length": seq_len,
                                              "item_id": target})

        def full_sort_predict(self, item_seq, seq_len):
            return self.inner.full_sort_predict({"item_id_list": item_seq,
                                                 "item_length": seq_len})

    Adapter.Config = Config
    return Adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECBOLE_CONFIG), required=True)
    parser.add_argument("--max-len", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    module = types.ModuleType("recbole_adapter")
    module.Adapter = recbole_adapter(args.model, args.max_len)
    sys.modules["recbole_adapter"] = module
    register(f"recbole_{args.model}", "recbole_adapter:Adapter")
    result = profile_cell(f"recbole_{args.model}", args.max_len, args.batch_size, steps=args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
