"""The model contract (models/base.py) on every registered model and on the variants whose
promises differ from their model's default: the checks themselves live in
tests/model_contract.py, so that tests/test_adding_a_model.py runs the very same ones."""
from __future__ import annotations

import pytest
import torch
from model_contract import (
    CHECKS,
    MODELS,
    N_ITEMS,
    builder,
    check_causality,
    check_declarations,
    check_gradients,
    check_padding_invariance,
    check_save_load,
    check_shapes,
    make_batch,
)

from models import REGISTRY, build_model


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
def test_padding_declaration_holds(name):
    check_padding_invariance(builder(name))


@pytest.mark.parametrize("name", MODELS)
def test_causal_declaration_holds(name):
    check_causality(builder(name))


def test_every_registered_model_and_both_promises_are_covered():
    """The parametrisation above really reaches each model and each kind of declaration."""
    built = {name: builder(name)() for name in MODELS}
    shipped = {name for name, target in REGISTRY.items() if target.startswith("models.")}
    assert shipped <= set(MODELS)
    for promise in ("causal", "padding_invariant"):
        assert {getattr(m, promise) for m in built.values()} == {True, False}, promise


@pytest.mark.parametrize("claim", ["causal", "padding_invariant"])
def test_a_false_declaration_fails(claim):
    """The reference LinRec (non-causal, reads the padded tail) passes with its own declarations
    and fails when it claims to be causal or padding invariant."""
    build = builder("linrec")
    check = {"causal": check_causality, "padding_invariant": check_padding_invariance}[claim]
    check(build)

    def lying(seed=0):
        model = build(seed)
        if claim == "causal":
            model.causal = True                 # LinRec sets it per instance, from its Config
        else:                                   # a property in models/base.py: subclass it
            model.__class__ = type("LyingLinRec", (type(model),), {"padding_invariant": True})
        return model
    with pytest.raises(AssertionError):
        check(lying)


@pytest.mark.parametrize("toy", ["toy_causal", "toy_noncausal"])
def test_the_engine_tests_toy_models_keep_the_contract(toy, monkeypatch):
    """tests/toy_models.py stands in for real models in the engine tests: its declarations
    must be as true as theirs."""
    monkeypatch.setitem(REGISTRY, toy, f"toy_models:{'ToyCausal' if toy == 'toy_causal' else 'ToyNonCausal'}")
    for check in CHECKS:
        check(builder(toy))


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
