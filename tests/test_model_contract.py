"""The model contract (models/base.py), checked on every registered model.

Each check is a plain function taking a `build(seed) -> model` callable, so that
tests/test_adding_a_model.py runs the very same checks on its example model.

Promises checked:
  - Config is a dataclass whose defaults build the model; `causal` is a bool;
  - forward -> (B, L, D) with D the width of the tied output embeddings; full_sort_predict ->
    (B, n_items);
  - one loss backward reaches every trainable parameter (dropout off);
  - state_dict save/load gives identical scores;
  - padding: more right padding changes neither the prediction nor the hidden states at real
    positions, for models that promise it (`padding_invariant`, default = `causal`; the
    reference LinRec and RecGRELA attend over the padded tail, so they do not);
  - causality (`causal = True`): hidden[:, :t+1] is unchanged when items after t change, and
    equals the hidden states of the window cut after t.
Models are shrunk through build_model overrides (TINY) so the whole file runs in seconds.
"""
from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from models import REGISTRY, build_model, model_class
from models.base import SequentialRecommender

N_ITEMS = 40        # ids 0..39, 0 = padding
B, L, EXTRA = 6, 8, 4
MAX_LEN = L + EXTRA

# Applied to whichever of these fields a model's Config has: small and fast, still non-trivial.
TINY = {"hidden_size": 16, "embedding_size": 16, "d_model": 16, "inner_size": 32,
        "d_state": 4, "max_len": MAX_LEN}
# Per-model adjustments on top of TINY.
TINY_BY_MODEL = {"gru4rec": {"hidden_size": 24}}   # keep d_h != d_emb so `dense` is exercised

# Named variants whose promises differ from their model's default (causal options).
VARIANTS = {"recgrela+causal": ("recgrela", {"causal": True}),
            "linrec+causal": ("linrec", {"causal": True}),
            "recblr+no_phantom_steps": ("recblr", {"pad_to_power_of_two": False})}
# Snapshot: models registered later by other tests are not included.
MODELS = sorted(REGISTRY) + sorted(VARIANTS)
ATOL, RTOL = 1e-5, 1e-4


def tiny_overrides(case: str) -> dict:
    name, variant = VARIANTS.get(case, (case, {}))
    fields = {f.name for f in dataclasses.fields(model_class(name).Config)}
    over = {k: v for k, v in TINY.items() if k in fields}
    over.update(TINY_BY_MODEL.get(name, {}))
    return over | variant


def builder(case: str, n_items: int = N_ITEMS):
    name = VARIANTS.get(case, (case,))[0]

    def build(seed: int = 0) -> SequentialRecommender:
        torch.manual_seed(seed)
        return build_model(name, n_items, **tiny_overrides(case))
    return build


def make_batch(n_items: int = N_ITEMS, batch: int = B, length: int = L, seed: int = 0):
    """Right-padded windows with lengths from 1 to `length` (both ends included)."""
    g = torch.Generator().manual_seed(seed)
    seq_len = torch.randint(1, length + 1, (batch,), generator=g)
    seq_len[0], seq_len[-1] = 1, length
    item_seq = torch.randint(1, n_items, (batch, length), generator=g)
    item_seq[torch.arange(length)[None, :] >= seq_len[:, None]] = 0
    target = torch.randint(1, n_items, (batch,), generator=g)
    return item_seq, seq_len, target


def fitted(model: SequentialRecommender) -> SequentialRecommender:
    """Non-learned models (Popularity) get distinct counts so their scores mean something."""
    if not model.learned:
        model.fit(torch.randperm(model.n_items, generator=torch.Generator().manual_seed(1)))
    return model


# --- the checks ------------------------------------------------------------------------------
def check_declarations(build):
    model = build(0)
    assert isinstance(model, SequentialRecommender)
    assert dataclasses.is_dataclass(model.Config), "Config must be a @dataclass"
    model.Config()                                   # every field has a (reference) default
    assert isinstance(model.causal, bool) and isinstance(model.learned, bool)


def check_shapes(build):
    model = fitted(build(0)).eval()
    item_seq, seq_len, _ = make_batch(model.n_items)
    with torch.no_grad():
        hidden = model(item_seq, seq_len)
        scores = model.full_sort_predict(item_seq, seq_len)
    assert hidden.shape[:2] == (B, L) and hidden.dim() == 3
    if model.learned:
        assert hidden.shape[2] == model.output_item_embeddings().shape[1]
        assert model.output_item_embeddings().shape[0] == model.n_items
    assert scores.shape == (B, model.n_items)
    assert torch.isfinite(scores).all()


def check_gradients(build):
    model = build(0)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not model.learned:
        assert not params, "a non-learned model must not expose trainable parameters"
        return
    model.eval()                                     # dropout off: no parameter is masked out
    item_seq, seq_len, target = make_batch(model.n_items, batch=16)
    torch.manual_seed(0)
    model.calculate_loss(item_seq, seq_len, target).backward()
    missing = [n for n, p in params.items() if p.grad is None or not p.grad.abs().gt(0).any()]
    assert not missing, f"no gradient reaches {missing}"


def check_save_load(build):
    model = fitted(build(0)).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = build(1).eval()                          # other seed: other initial weights
    clone.load_state_dict(torch.load(buffer))
    item_seq, seq_len, _ = make_batch(model.n_items)
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(item_seq, seq_len),
                           clone.full_sort_predict(item_seq, seq_len))


def check_padding_invariance(build):
    model = fitted(build(0)).eval()
    item_seq, seq_len, _ = make_batch(model.n_items)
    longer = torch.cat([item_seq, item_seq.new_zeros(B, EXTRA)], dim=1)     # (B, L + EXTRA)
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(longer, seq_len),
                                   model.full_sort_predict(item_seq, seq_len), atol=ATOL, rtol=RTOL)
        real = item_seq != 0
        torch.testing.assert_close(model(longer, seq_len)[:, :L][real],
                                   model(item_seq, seq_len)[real], atol=ATOL, rtol=RTOL)


def check_causality(build):
    model = fitted(build(0)).eval()
    g = torch.Generator().manual_seed(2)
    item_seq = torch.randint(1, model.n_items, (B, L), generator=g)
    full = torch.full((B,), L)
    with torch.no_grad():
        hidden = model(item_seq, full)
        for t in (0, L // 2, L - 2):
            changed = item_seq.clone()
            changed[:, t + 1:] = torch.randint(1, model.n_items, (B, L - t - 1), generator=g)
            torch.testing.assert_close(model(changed, full)[:, : t + 1], hidden[:, : t + 1],
                                       atol=ATOL, rtol=RTOL, msg=f"future items leak into t <= {t}")
            cut = model(item_seq[:, : t + 1], torch.full((B,), t + 1))
            torch.testing.assert_close(cut, hidden[:, : t + 1], atol=ATOL, rtol=RTOL,
                                       msg=f"the window cut after {t} encodes differently")


# --- parametrised over the registry ---------------------------------------------------------
@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODELS)
def test_declarations(name):
    check_declarations(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name):
    check_shapes(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name):
    check_gradients(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name):
    check_save_load(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_padding_invariance(name):
    if not builder(name)().padding_invariant:
        pytest.skip(f"{name} does not promise padding invariance (it reads the padded tail)")
    check_padding_invariance(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_causality(name):
    if not builder(name)().causal:
        pytest.skip(f"{name} is not causal")
    check_causality(builder(name))


def test_popularity_scores_are_the_fitted_counts():
    model = build_model("popularity", 6)
    counts = torch.tensor([0, 5, 0, 2, 9, 1])
    model.fit(counts)
    item_seq, seq_len, _ = make_batch(6, batch=3, length=4)
    expected = torch.tensor([[0.0, 5, 0, 2, 9, 1]] * 3)
    assert torch.equal(model.full_sort_predict(item_seq, seq_len), expected)
    with pytest.raises(ValueError, match="shape"):
        model.fit(torch.tensor([1, 2, 3]))
    with pytest.raises(RuntimeError, match="not trained by gradient"):
        model.calculate_loss(item_seq, seq_len, torch.tensor([1, 2, 3]))


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="no_such_option"):
        build_model("sasrec", N_ITEMS, no_such_option=1)
