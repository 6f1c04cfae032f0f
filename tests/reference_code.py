"""Import a model file of the RecGRELA reference repository (TBI805/RecGRELA) in a test, with
stand-ins for what it imports but the tests do not need (RecBole's base class and loss; the
caller adds its own for kernels). The checkout is found and checked against the pinned commit's
hashes by recbench.external.authors_code ($RECGRELA_REFERENCE, else resources/RecGRELA, else
../shared/ref/RecGRELA; CI sets the first); tests that use it skip without one."""
import importlib.util
import sys
import types
from pathlib import Path

import torch

from recbench.external.authors_code import candidates, find_checkout

REFERENCE_DIR = find_checkout() or candidates()[0]


class RecBoleBase(torch.nn.Module):
    """What the reference models use of RecBole's SequentialRecommender."""

    def __init__(self, config, dataset):
        super().__init__()
        self.n_items = dataset.n_items

    def gather_indexes(self, out, index):
        return out[torch.arange(out.shape[0]), index]


def stub_module(monkeypatch, name: str, **attrs) -> None:
    """Put a module `name` holding `attrs` into sys.modules for this test only."""
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def import_reference_model(monkeypatch, filename: str):
    """model/<filename> of the reference checkout as a module, RecBole stubbed."""
    for name in ("recbole", "recbole.model"):
        stub_module(monkeypatch, name)
    stub_module(monkeypatch, "recbole.model.abstract_recommender", SequentialRecommender=RecBoleBase)
    stub_module(monkeypatch, "recbole.model.loss", BPRLoss=object)
    spec = importlib.util.spec_from_file_location(f"reference_{Path(filename).stem.lower()}",
                                                  REFERENCE_DIR / "model" / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def largest_readout_difference(ref, ours, state: dict, n_items: int, L: int) -> float:
    """Load the reference's renamed `state` into ours (strict: every parameter maps one to
    one) and return the largest difference of the read-out at len-1, over right-padded
    sequences of several lengths (eval mode, no grad)."""
    ours.load_state_dict(state)
    seq = torch.randint(1, n_items, (6, L))
    seq_len = torch.tensor([L, 1, 5, 17, L - 1, 2])
    seq[torch.arange(L) >= seq_len[:, None]] = 0
    with torch.no_grad():
        want = ref.forward(seq, seq_len)
        got = ours.gather_last(ours(seq, seq_len), seq_len)
    return (got - want).abs().max().item()
