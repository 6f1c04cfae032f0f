"""The model contract (models/base.py) as plain checks: tests/test_model_contract.py runs them on
every registered model and on the variants whose promises differ from their model's default.

Each check is a plain function taking a `build(seed) -> model` callable, so that
tests/test_adding_a_model.py runs the very same checks on its example model.

Promises checked:
  - Config is a dataclass whose defaults build the model; `causal`, `padding_invariant` and
    `learned` are bools;
  - forward -> (B, L, D) with D the width of the tied output embeddings; full_sort_predict ->
    (B, n_items);
  - one loss backward reaches every trainable parameter (dropout off);
  - state_dict save/load gives identical scores;
  - padding: a model declaring `padding_invariant` (default = `causal`) gives the same
    prediction and hidden states at real positions with more right padding; one declaring it
    False must really change its prediction (the reference LinRec and RecGRELA attend over the
    padded tail; RecBLR's phantom steps count the window length);
  - causality: a model declaring `causal = True` keeps hidden[:, :t+1] when items after t
    change, and equals the hidden states of the window cut after t; one declaring False must
    really break one of the two (for at least one input).
So a declaration that is false fails either way. Models are shrunk through build_model
overrides (TINY) so the whole file runs in seconds.
"""
from __future__ import annotations

import dataclasses
import io

import torch

from models import REGISTRY, build_model, model_class
from models.base import SequentialRecommender

N_ITEMS = 40        # ids 0..39, 0 = padding
B, L, EXTRA = 6, 8, 4
MAX_LEN = L + EXTRA

# Applied to whichever of these fields a model's Config has: small and fast, still non-trivial.
TINY = {"hidden_size": 16, "embedding_size": 16, "inner_size": 32, "d_state": 4,
        "max_len": MAX_LEN}
# Per-model adjustments on top of TINY.
TINY_BY_MODEL = {"gru4rec": {"hidden_size": 24}}   # keep d_h != d_emb so `dense` is exercised

# Named variants: options that change a promise (causal), or create other parameters.
VARIANTS = {
    "linrec+causal": ("linrec", {"causal": True}),
    "recblr+no_phantom_steps": ("recblr", {"pad_to_power_of_two": False}),
    "recgrela+causal": ("recgrela", {"causal": True}),
    "recgrela+absolute": ("recgrela", {"position_encoding": "absolute"}),
    "recgrela+absolute+causal": ("recgrela", {"position_encoding": "absolute", "causal": True}),
    "recgrela+learnable": ("recgrela", {"position_encoding": "learnable"}),
    "recgrela+learnable+causal": ("recgrela", {"position_encoding": "learnable", "causal": True}),
    "eulerformer+no_contrastive": ("eulerformer", {"contrastive_weight": 0.0, "euler_bias": False}),
    "recgrela+ablated": ("recgrela", {"position_encoding": "none", "input_proj": False,
                                      "gate": False, "local_shortcut": False, "drop_path": 0.0,
                                      "activation": "relu"}),
}
# The shipped registry, fixed at import: models registered by other test files are not included.
MODELS = sorted(REGISTRY) + sorted(VARIANTS)
# The promise checks run in float64: a kept promise holds to rounding (KEPT), a broken one
# moves some output by more than LEAK, far above float64 rounding even for tiny weights.
KEPT, LEAK = 1e-10, 1e-8


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
    for promise in ("causal", "padding_invariant", "learned"):
        assert isinstance(getattr(model, promise), bool), f"{promise} must be a bool"


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
    """More right padding: nothing changes if promised; else some prediction must change."""
    model = fitted(build(0)).double().eval()
    item_seq, seq_len, _ = make_batch(model.n_items)
    longer = torch.cat([item_seq, item_seq.new_zeros(B, EXTRA)], dim=1)     # (B, L + EXTRA)
    with torch.no_grad():
        short_scores = model.full_sort_predict(item_seq, seq_len)
        long_scores = model.full_sort_predict(longer, seq_len)
        if not model.padding_invariant:
            moved = (long_scores - short_scores).abs().max().item()
            assert moved > LEAK, (f"declares padding_invariant=False, but {EXTRA} more padding "
                                  f"columns moved no prediction by more than {LEAK} ({moved:.2g})")
            return
        torch.testing.assert_close(long_scores, short_scores, atol=KEPT, rtol=KEPT)
        real = item_seq != 0
        torch.testing.assert_close(model(longer, seq_len)[:, :L][real],
                                   model(item_seq, seq_len)[real], atol=KEPT, rtol=KEPT)


def causality_leaks(model) -> dict[str, float]:
    """The two ways hidden[:, :t+1] can depend on more than items 0..t, for t = 0, L/2, L-2:
    the largest change when the items after t change, and the largest difference from the
    hidden states of the window cut after t (the window length)."""
    g = torch.Generator().manual_seed(2)
    item_seq = torch.randint(1, model.n_items, (B, L), generator=g)
    full = torch.full((B,), L)
    leaks = {"later items": 0.0, "window cut": 0.0}
    with torch.no_grad():
        hidden = model(item_seq, full)
        for t in (0, L // 2, L - 2):
            changed = item_seq.clone()
            changed[:, t + 1:] = torch.randint(1, model.n_items, (B, L - t - 1), generator=g)
            moved = (model(changed, full)[:, : t + 1] - hidden[:, : t + 1]).abs().max().item()
            cut = model(item_seq[:, : t + 1], torch.full((B,), t + 1))
            differs = (cut - hidden[:, : t + 1]).abs().max().item()
            leaks["later items"] = max(leaks["later items"], moved)
            leaks["window cut"] = max(leaks["window cut"], differs)
    return leaks


def check_causality(build):
    """Causal: no leak beyond rounding. Not causal: some leak must exist."""
    model = fitted(build(0)).double().eval()
    leaks = causality_leaks(model)
    if model.causal:
        assert max(leaks.values()) <= KEPT, (
            f"declares causal=True, but hidden[:, :t+1] moves: {leaks}")
    else:
        assert max(leaks.values()) > LEAK, (f"declares causal=False, but neither later items nor "
                                            f"the window length move hidden[:, :t+1]: {leaks}")


# every check, in the order the guide lists them (tests/test_adding_a_model.py runs this tuple)
CHECKS = (check_declarations, check_shapes, check_gradients, check_save_load,
          check_padding_invariance, check_causality)
