"""EulerFormer (models/eulerformer.py): the encoder and the phase contrastive loss against a slow
float64 reference written here from the equations of the module docstring (one user, position,
head and pair at a time), the loss the model trains with, and, when the checkout is present,
the reference files `model/EulerFormer.py` + `model/layers/layers_euler.py` themselves with the
same weights (eval mode, and training mode with the same dropout masks)."""
import importlib.util
import math
import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from reference_code import (
    REFERENCE_DIR,
    RecBoleBase,
    import_reference_model,
    largest_readout_difference,
    stub_module,
)

from models import build_model
from models.eulerformer import EulerFormer, phase_contrastive

torch.set_num_threads(1)
f64 = torch.float64
TINY = dict(hidden_size=8, num_heads=2, inner_size=12, num_layers=2, max_len=9)


def tiny(n_items=13, seed=0, **overrides):
    torch.manual_seed(seed)
    model = build_model("eulerformer", n_items, **{**TINY, **overrides}).to(f64).eval()
    with torch.no_grad():  # weights far from their init (the phases phi, b, delta and w too)
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def batch(n_items=13, L=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, n_items, (3, L), generator=g)
    seq_len = torch.tensor([L, 4, 1])
    seq[torch.arange(L) >= seq_len[:, None]] = 0
    return seq, seq_len


# --- the slow reference ----------------------------------------------------------------
gelu = lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def lin(m, x):
    return m.weight @ x + m.bias


def ln(m, x):
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / torch.sqrt(var + m.eps) * m.weight + m.bias


def slow_contrastive(vs, w, tau, keep=None):
    """-mean_i log(exp(S_ii/tau) / (sum_j exp(S_ij/tau) + 1e-5)), S_ij = sum_m w_m cos(a_im - a~_jm);
    a~ = a * keep (keep: the dropout's multipliers, None = identity)."""
    a = [[math.atan2(v[2 * m + 1].item(), v[2 * m].item()) for m in range(len(w))] for v in vs]
    at = a if keep is None else [[a[i][m] * keep[i][m].item() for m in range(len(w))] for i in range(len(vs))]
    total = 0.0
    for i in range(len(vs)):
        S = [sum(w[m].item() * math.cos(a[i][m] - at[j][m]) for m in range(len(w))) / tau for j in range(len(vs))]
        total += -math.log(math.exp(S[i]) / (sum(math.exp(s) for s in S) + 1e-5))
    return total / len(vs)


@torch.no_grad()
def slow_forward(model: EulerFormer, item_seq):
    """Hidden states (B, L, D) and the per-user sum over layers of l(Q') + l(K') (B,), eval mode."""
    c = model.config
    D, H = c.hidden_size, c.num_heads
    dh = D // H
    hidden, aux = [], []
    for b in range(item_seq.size(0)):
        items = item_seq[b].tolist()
        L = len(items)
        x = []
        for t, s in enumerate(items):
            e = model.item_embedding.weight[s] + model.position_embedding.weight[t]
            r = e.clone()
            for m in range(D // 2):        # rotate pair m by the learned phase phi_{t,m}
                phi = model.rotary_embedding.weight[t, m]
                r[2 * m] = e[2 * m] * torch.cos(phi) - e[2 * m + 1] * torch.sin(phi)
                r[2 * m + 1] = e[2 * m] * torch.sin(phi) + e[2 * m + 1] * torch.cos(phi)
            x.append(ln(model.emb_norm, r))
        user_aux = 0.0
        for layer in model.layers:
            att = layer.attention

            def euler(v, t, bias):
                out = v.clone()
                for m in range(D // 2):
                    lam = math.hypot(v[2 * m].item(), v[2 * m + 1].item())
                    theta = (att.delta.item() * math.atan2(v[2 * m + 1].item(), v[2 * m].item())
                             + t * c.rope_base ** (-2 * m / D) + bias)
                    out[2 * m], out[2 * m + 1] = lam * math.cos(theta), lam * math.sin(theta)
                return out

            b_q = att.bias.item() if att.bias is not None else 0.0
            q = [euler(lin(att.query, x[t]), t, b_q) for t in range(L)]
            k = [euler(lin(att.key, x[t]), t, 0.0) for t in range(L)]
            v = [lin(att.value, x[t]) for t in range(L)]
            user_aux += (slow_contrastive(q, att.w, c.temperature)
                         + slow_contrastive(k, att.w, c.temperature))
            new = []
            for t in range(L):
                context = torch.zeros(D, dtype=f64)
                for h in range(H):
                    part = slice(h * dh, (h + 1) * dh)
                    keys = [j for j in range(t + 1) if items[j] != 0]    # causal, no padding keys
                    scores = torch.stack([q[t][part] @ k[j][part] / math.sqrt(dh) for j in keys])
                    p = torch.exp(scores - scores.max())
                    p = p / p.sum()
                    context[part] = sum(p[i] * v[j][part] for i, j in enumerate(keys))
                a = ln(att.norm, x[t] + lin(att.dense, context))
                f = layer.feed_forward
                new.append(ln(f.layer_norm, a + lin(f.w_2, gelu(lin(f.w_1, a)))))
            x = new
        hidden.append(torch.stack(x))
        aux.append(user_aux)
    return torch.stack(hidden), torch.tensor(aux, dtype=f64)


VARIANTS = [{}, {"euler_bias": False}, {"init_factor": 0.5, "temperature": 0.7}, {"num_heads": 1},
            {"num_layers": 1}]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_forward_and_contrastive_loss_match_slow_reference(variant):
    model = tiny(**variant)
    seq, seq_len = batch()
    want_hidden, want_aux = slow_forward(model, seq)
    with torch.no_grad():
        hidden, aux = model.encode(seq, with_aux=True)
        assert (model(seq, seq_len) - want_hidden).abs().max().item() < 1e-9
    assert (hidden - want_hidden).abs().max().item() < 1e-9
    assert (aux - want_aux).abs().max().item() < 1e-9


def test_phase_contrastive_with_dropped_phases_matches_slow_reference():
    """The positive view's phases dropped (zeroed) and the rest doubled, as Dropout(0.5) does."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 5, 6, generator=g, dtype=f64)
    w = torch.rand(3, generator=g, dtype=f64) + 0.5
    keep = torch.randint(0, 2, (2, 5, 3), generator=g).to(f64) * 2.0
    got = phase_contrastive(v, w, lambda a: a * keep, temperature=0.8)
    want = [slow_contrastive(list(v[b]), w, 0.8, keep[b]) for b in range(2)]
    assert (got - torch.tensor(want, dtype=f64)).abs().max().item() < 1e-9


def test_the_training_loss_is_ce_plus_the_weighted_contrastive_loss():
    model = tiny(contrastive_weight=0.3)
    seq, seq_len = batch()
    target = torch.tensor([3, 1, 12])
    hidden, aux = slow_forward(model, seq)
    logits = hidden[torch.arange(3), seq_len - 1] @ model.item_embedding.weight.T
    want = F.cross_entropy(logits, target, reduction="none") + 0.3 * aux            # per example
    with torch.no_grad():
        assert (model.calculate_loss(seq, seq_len, target, reduction="none") - want).abs().max() < 1e-9
        assert abs(model.calculate_loss(seq, seq_len, target) - want.mean()) < 1e-9
        assert abs(model.calculate_loss(seq, seq_len, target, reduction="sum") - want.sum()) < 1e-9
        # sequence mode: every position's CE term, plus the window's contrastive loss once
        targets = torch.where(seq > 0, torch.roll(seq, -1, 1), 0)
        has = targets > 0
        ce = F.cross_entropy(hidden[has] @ model.item_embedding.weight.T, targets[has], reduction="sum")
        assert abs(model.sequence_loss(seq, seq_len, targets, reduction="sum") - (ce + 0.3 * aux.sum())) < 1e-9
        off = tiny(contrastive_weight=0.0)
        plain = F.cross_entropy(off.full_sort_predict(seq, seq_len), target)
        assert abs(off.calculate_loss(seq, seq_len, target) - plain) < 1e-12


def test_causal_read_out_and_rope_angles_by_hand():
    """Later items never move hidden[:, t] (the declared causality); with delta = 1, b = 0 and
    no learned input phase, the Euler transform is RoPE: q'.k' depends on the offset only."""
    model = tiny()
    seq, seq_len = batch()
    changed = seq.clone()
    changed[0, 4:] = 1
    with torch.no_grad():
        torch.testing.assert_close(model(changed, seq_len)[0, :4], model(seq, seq_len)[0, :4],
                                   rtol=0, atol=1e-12)
    from models.eulerformer import euler_transform, position_angles
    alpha = position_angles(6, 8, 10000.0, "cpu", f64)
    q, k = torch.randn(1, 1, 8, dtype=f64).expand(1, 6, 8), torch.randn(1, 1, 8, dtype=f64).expand(1, 6, 8)
    one = torch.ones(1, dtype=f64)
    qr, kr = euler_transform(q, alpha, one, 0.0)[0], euler_transform(k, alpha, one, 0.0)[0]
    assert abs(qr[3] @ kr[1] - qr[5] @ kr[3]) < 1e-12 and abs(qr[2] @ kr[2] - q[0, 0] @ k[0, 0]) < 1e-12


def test_init_as_the_reference():
    model = build_model("eulerformer", 50)
    att = model.layers[0].attention
    assert torch.equal(model.rotary_embedding.weight, torch.zeros(200, 32))
    assert att.delta.item() == 1.0 and att.bias.item() == 0.0 and torch.equal(att.w, torch.ones(32))
    assert att.query.bias.abs().sum() == 0 and 0.015 < model.position_embedding.weight.std() < 0.025
    assert build_model("eulerformer", 50, euler_bias=False).layers[0].attention.bias is None
    assert not hasattr(build_model("eulerformer", 50, contrastive_weight=0.0).layers[0].attention, "w")


def test_trainable_parameters_ml1m_reference_configuration():
    model = build_model("eulerformer", 3417)   # 3,416 items + padding, max_len 200
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 338_052


def test_bad_options_are_named():
    for bad, named in (({"hidden_size": 63}, "even"), ({"num_heads": 3}, "multiple"),
                       ({"hidden_size": 12, "num_heads": 4}, "head size"), ({"temperature": 0}, "temperature"),
                       ({"hidden_act": "mish"}, "hidden_act")):
        with pytest.raises(ValueError, match=named):
            build_model("eulerformer", 5, **bad)


# --- the reference code itself (a checkout of TBI805/RecGRELA @ 608a39b: tests/reference_code.py)
REF_FILE = REFERENCE_DIR / "model" / "EulerFormer.py"
RENAMES = [(r"^LayerNorm\.", "emb_norm."), (r"^trm_encoder\.layer\.", "layers."),
           (r"\.multi_head_attention\.", ".attention."), (r"\.attention\.euler\.b$", ".attention.bias"),
           (r"\.attention\.euler\.delta$", ".attention.delta"), (r"\.attention\.LayerNorm\.", ".attention.norm."),
           (r"\.feed_forward\.dense_1\.", ".feed_forward.w_1."), (r"\.feed_forward\.dense_2\.", ".feed_forward.w_2."),
           (r"\.feed_forward\.LayerNorm\.", ".feed_forward.layer_norm.")]


def rename(key: str) -> str:
    """A reference parameter name -> ours."""
    for old, new in RENAMES:
        key = re.sub(old, new, key)
    return key


class RecBoleConfig(dict):
    """RecBole's Config as the reference reads it: config["key"] and config.key, None if absent."""

    def __getitem__(self, key):
        return self.get(key)

    __getattr__ = __getitem__


def get_attention_mask(self, item_seq):
    """RecBole 1.2's SequentialRecommender.get_attention_mask (causal, padding keys masked)."""
    mask = (item_seq != 0).unsqueeze(1).unsqueeze(2)                     # (B, 1, 1, L)
    mask = torch.tril(mask.expand((-1, -1, item_seq.size(-1), -1)))
    return torch.where(mask, 0.0, -10000.0)


def reference_pair(monkeypatch, hidden, num_layers, L, n_items=101):
    """The reference EulerFormer, ours, and the reference's weights under our names (its frozen
    angle tables `euler.alpha` left out: ours computes them)."""
    for name in ("recbole", "recbole.utils", "model", "model.layers"):
        stub_module(monkeypatch, name, FeatureType=None, FeatureSource=None)
    stub_module(monkeypatch, "turtle", forward=None)       # an unused import of layers_euler.py
    spec = importlib.util.spec_from_file_location("model.layers.layers_euler",
                                                  REFERENCE_DIR / "model" / "layers" / "layers_euler.py")
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    monkeypatch.setitem(sys.modules, "model.layers.layers_euler", layers)
    monkeypatch.setattr(RecBoleBase, "max_seq_length", L, raising=False)
    monkeypatch.setattr(RecBoleBase, "get_attention_mask", get_attention_mask, raising=False)
    ref_module = import_reference_model(monkeypatch, "EulerFormer.py")
    cfg = RecBoleConfig(n_layers=num_layers, n_heads=2, hidden_size=hidden, inner_size=4 * hidden,
                        hidden_dropout_prob=0.2, attn_dropout_prob=0.2, hidden_act="gelu",
                        layer_norm_eps=1e-12, initializer_range=0.02, loss_type="CE",
                        euler_bias=True, lamb=1e-5, tep=1.0, init_factor=1.0, MAX_ITEM_LIST_LENGTH=L)
    torch.manual_seed(0)
    ref = ref_module.EulerFormer(cfg, types.SimpleNamespace(n_items=n_items))
    model = build_model("eulerformer", n_items, hidden_size=hidden, num_layers=num_layers,
                        inner_size=4 * hidden, max_len=L)
    state = {rename(k): v for k, v in ref.state_dict().items() if not k.endswith("euler.alpha")}
    return ref, model, state


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
@pytest.mark.parametrize("num_layers", [2, 1])
def test_same_outputs_as_the_reference_code_with_its_weights(monkeypatch, num_layers):
    """Eval mode, float32, L = max_len = 30 (the reference's angle table needs the full window)."""
    ref, model, state = reference_pair(monkeypatch, 64, num_layers, 30)
    assert largest_readout_difference(ref.eval(), model.eval(), state, 101, 30) < 1e-5


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
def test_same_training_loss_and_gradients_as_the_reference_code(monkeypatch, bernoulli_dropout):
    """Training mode, the same seed: the dropout masks (the phase dropout of the contrastive
    views included) are drawn in the reference's order, so the loss (CE + 1e-5 * contrastive)
    and every gradient agree; the reference's frozen angle tables get none."""
    ref, model, state = reference_pair(monkeypatch, 16, 2, 20, n_items=41)
    model.load_state_dict(state)
    ref.train(), model.train()
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, 41, (5, 20), generator=g)
    seq_len = torch.tensor([20, 1, 7, 13, 19])
    seq[torch.arange(20) >= seq_len[:, None]] = 0
    target = torch.randint(1, 41, (5,), generator=g)
    ref.ITEM_SEQ, ref.ITEM_SEQ_LEN, ref.POS_ITEM_ID = "seq", "len", "target"
    torch.manual_seed(7)
    want = ref.calculate_loss({"seq": seq, "len": seq_len, "target": target})
    torch.manual_seed(7)
    got = model.calculate_loss(seq, seq_len, target)
    assert abs(got.item() - want.item()) < 1e-5
    want.backward(), got.backward()
    ours = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        if name.endswith("euler.alpha"):
            assert p.grad is None, "the reference adds alpha through .data: never trained"
            continue
        torch.testing.assert_close(ours[rename(name)].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
