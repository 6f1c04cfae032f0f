"""SIGMA (models/sigma.py): every option against a slow float64 reference written here from the
equations of the module docstring (one user, one position at a time, the Mamba block, the
conv and the GRU as explicit loops), the option semantics, and, when the checkout is present,
the reference file `model/SIGMA.py` itself with the same weights (eval and training mode)."""
import math
import types

import pytest
import torch
from reference_code import (
    REFERENCE_DIR,
    import_reference_model,
    largest_readout_difference,
    stub_module,
)
from slow_reference import lin, ln, sigmoid, silu, slow_mamba, softplus

from models import build_model
from models.mamba4rec import MambaBlock
from models.sigma import SIGMA, pf_flip

torch.set_num_threads(1)
f64 = torch.float64
TINY = dict(hidden_size=8, d_state=3, num_layers=2, chunk_size=2)


def tiny(n_items=13, seed=0, **overrides):
    torch.manual_seed(seed)
    model = build_model("sigma", n_items, **{**TINY, **overrides}).to(f64).eval()
    with torch.no_grad():  # weights far from their small init, biases and LN affine non-trivial:
        for p in model.parameters():   # every branch moves the output well above rounding
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


def slow_gru(gru, xs):
    """PyTorch's GRU equations without biases, one step at a time."""
    W_r, W_z, W_n = gru.weight_ih_l0.chunk(3)
    U_r, U_z, U_n = gru.weight_hh_l0.chunk(3)
    h, out = torch.zeros(gru.hidden_size, dtype=f64), []
    for x in xs:
        r = sigmoid(W_r @ x + U_r @ h)
        z = sigmoid(W_z @ x + U_z @ h)
        n = torch.tanh(W_n @ x + r * (U_n @ h))
        h = (1 - z) * n + z * h
        out.append(h)
    return out


@torch.no_grad()
def slow_forward(model: SIGMA, item_seq, seq_len):
    c = model.config
    hidden = []
    for b in range(item_seq.size(0)):
        L = item_seq.size(1)
        x = [ln(model.emb_norm, model.item_embedding.weight[s]) for s in item_seq[b]]
        if c.keep_last is None:
            n = min(c.flip_len, L)
        else:
            n = max(int(seq_len[b]) - c.keep_last, 0)
        order = list(range(n - 1, -1, -1)) + list(range(n, L))         # flipped position t <- order[t]
        for layer in model.layers:
            g = layer.gmamba
            xf = [x[i] for i in order]
            m, mf = slow_mamba(g.mamba, x), slow_mamba(g.mamba, xf)
            for t in range(L):
                g1 = lin(g.gate_si, silu(x[t] + lin(g.dense1, x[t]))) + lin(g.gate_sig, sigmoid(x[t] + lin(g.dense1, x[t])))
                h2 = xf[t] + lin(g.dense2, xf[t])
                g2 = lin(g.gate_si, silu(h2)) + lin(g.gate_sig, sigmoid(g1 if c.flipped_gate == "reference" else h2))
                m[t], mf[t] = m[t] * g1 + m[t], mf[t] * g2 + mf[t]
            if c.unflip_output:
                mf = [mf[i] for i in order]                            # the flip is an involution
            W = g.conv1d.weight                                        # (d, d, 3), padding 1
            conv = [g.conv1d.bias + sum(W[:, :, j] @ x[t - 1 + j] for j in range(3) if 0 <= t - 1 + j < L)
                    for t in range(L)]
            r = slow_gru(g.gru, conv)
            w = g.combining_weights
            if c.mix == "softmax":
                w = torch.exp(w) / torch.exp(w).sum()
            new = []
            for t in range(L):
                y = lin(g.projection, w[2] * m[t] + w[1] * mf[t] + w[0] * r[t])
                h = ln(layer.norm, y + x[t] if c.num_layers > 1 else y)
                f = layer.ffn
                new.append(ln(f.layer_norm, h + lin(f.w_2, gelu(lin(f.w_1, h)))))
            x = new
        hidden.append(torch.stack(x))
    return torch.stack(hidden)                                          # (B, L, d)


VARIANTS = [{}, {"flip_len": 3}, {"keep_last": 2}, {"keep_last": 2, "unflip_output": True},
            {"flip_len": 3, "unflip_output": True}, {"flipped_gate": "own"}, {"mix": "softmax"},
            {"num_layers": 1}, {"flip_len": 0}]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_forward_matches_slow_reference(variant):
    model = tiny(**variant)
    seq, seq_len = batch()
    with torch.no_grad():
        got = model(seq, seq_len)
    assert (got - slow_forward(model, seq, seq_len)).abs().max().item() < 1e-9


def test_partial_flip_by_hand():
    x = torch.arange(6, dtype=f64).view(1, 6, 1).repeat(2, 1, 1)          # positions 0..5
    seq_len = torch.tensor([6, 3])
    cfg = lambda **o: build_model("sigma", 5, **TINY, **o).config
    assert pf_flip(x, seq_len, cfg(flip_len=4))[:, :, 0].tolist() == [[3, 2, 1, 0, 4, 5]] * 2
    assert pf_flip(x, seq_len, cfg(flip_len=45))[0, :, 0].tolist() == [5, 4, 3, 2, 1, 0]
    # keep_last r: per user, the real items but the last r reversed, padding (>= seq_len) in place
    assert pf_flip(x, seq_len, cfg(keep_last=2))[:, :, 0].tolist() == [[3, 2, 1, 0, 4, 5],
                                                                     [0, 1, 2, 3, 4, 5]]
    assert pf_flip(x, seq_len, cfg(keep_last=1))[1, :, 0].tolist() == [1, 0, 2, 3, 4, 5]
    for c in (cfg(flip_len=4), cfg(keep_last=2)):                     # its own inverse
        assert torch.equal(pf_flip(pf_flip(x, seq_len, c), seq_len, c), x)


def test_gate_dropout_is_its_own_literal_and_the_mix_starts_at_the_reference_values():
    model = build_model("sigma", 20, dropout=0.5)
    block = model.layers[0].gmamba
    assert block.gate_dropout.p == 0.2 and model.layers[0].dropout.p == 0.5
    assert block.combining_weights.tolist() == pytest.approx([0.1, 0.1, 0.8])
    # RecBole's re-init reaches the Mamba blocks' dt bias, not the GRU nor the convs
    assert torch.equal(block.mamba.dt_proj.bias, torch.zeros_like(block.mamba.dt_proj.bias))
    assert block.dense1.bias.abs().sum() == 0 and block.conv1d.bias.abs().sum() > 0
    own = build_model("sigma", 20, init="mamba_ssm").layers[0].gmamba.mamba
    assert own.dt_proj.bias.abs().min() > 0


def test_bidirectional_read_out_sees_later_items_and_the_window_length():
    """The documented non-causality: the item after t moves hidden[:, t]; so does padding."""
    model = tiny()
    seq, seq_len = batch()
    changed = seq.clone()
    changed[0, 3] = (seq[0, 3] % 12) + 1
    longer = torch.cat([seq, torch.zeros(3, 4, dtype=seq.dtype)], dim=1)
    with torch.no_grad():
        base = model(seq, seq_len)
        assert (model(changed, seq_len)[0, 2] - base[0, 2]).abs().max() > 1e-6
        assert (model(longer, seq_len)[1, 3] - base[1, 3]).abs().max() > 1e-6


def test_trainable_parameters_ml1m_reference_configuration():
    model = build_model("sigma", 3417)     # 3,416 items + padding, hidden 64, 2 layers
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 478_534


def test_bad_options_are_named():
    for bad in ({"mix": "mean"}, {"flipped_gate": "h2"}, {"init": "xavier"}, {"keep_last": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_model("sigma", 5, **bad)


# --- the mamba_ssm kernels (CUDA only) --------------------------------------------------
def _kernels_missing() -> str | None:
    if not torch.cuda.is_available():
        return "needs CUDA"
    from models import mamba4rec
    if mamba4rec.selective_scan_fn is None:
        return f"needs an importable mamba_ssm ({mamba4rec.KERNEL_IMPORT_ERROR})"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_kernels_missing() is not None, reason=str(_kernels_missing()))
def test_kernel_path_matches_pure_path_on_cuda():
    torch.manual_seed(0)
    model = build_model("sigma", 50).cuda().eval()
    seq = torch.randint(1, 50, (4, 60), device="cuda")
    seq_len = torch.tensor([60, 10, 44, 1], device="cuda")
    seq[torch.arange(60, device="cuda") >= seq_len[:, None]] = 0
    with torch.no_grad():
        fast = model(seq, seq_len)
        for m in model.modules():
            if isinstance(m, MambaBlock):
                m.use_kernels = False
        pure = model(seq, seq_len)
    torch.testing.assert_close(fast, pure, rtol=1e-3, atol=1e-4)


# --- the reference code itself (a checkout of TBI805/RecGRELA @ 608a39b: tests/reference_code.py)
REF_FILE = REFERENCE_DIR / "model" / "SIGMA.py"
RENAMES = [("mamba_layers", "layers"), ("selective_gate_si.1", "gate_si"),
           ("selective_gate_sig.1", "gate_sig"), ("ffn.LayerNorm", "ffn.layer_norm"),
           (".LayerNorm.", ".norm.")]


def rename(key: str) -> str:
    """A reference parameter name -> ours."""
    if key.startswith("LayerNorm."):
        return "emb_norm." + key[len("LayerNorm."):]
    for old, new in RENAMES:
        key = key.replace(old, new)
    return key


def reference_pair(monkeypatch, hidden, num_layers, n_items=101, **ours):
    """The reference SIGMA (mamba_ssm.Mamba stood in for by our pure-PyTorch MambaBlock, the same
    parameter names), ours, and the reference's weights under our names."""
    def mamba(d_model, d_state, d_conv, expand):
        return MambaBlock(types.SimpleNamespace(hidden_size=d_model, d_state=d_state, d_conv=d_conv,
                                                expand=expand, chunk_size=0, use_kernels=False))
    stub_module(monkeypatch, "mamba_ssm", Mamba=mamba)
    ref_module = import_reference_model(monkeypatch, "SIGMA.py")
    cfg = {"hidden_size": hidden, "loss_type": "CE", "num_layers": num_layers, "dropout_prob": 0.2,
           "d_state": 32, "d_conv": 4, "expand": 2}
    torch.manual_seed(0)
    ref = ref_module.SIGMA(cfg, types.SimpleNamespace(n_items=n_items))
    model = build_model("sigma", n_items, hidden_size=hidden, num_layers=num_layers, **ours)
    return ref, model, {rename(k): v for k, v in ref.state_dict().items()}


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
@pytest.mark.parametrize("num_layers", [2, 1])
def test_same_outputs_as_the_reference_code_with_its_weights(monkeypatch, num_layers):
    """Eval mode, float32, L = 50: the literal flip of the first 45 positions leaves 5 in place."""
    ref, model, state = reference_pair(monkeypatch, 64, num_layers)
    assert largest_readout_difference(ref.eval(), model.eval(), state, 101, 50) < 1e-5


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
def test_same_training_loss_and_gradients_as_the_reference_code(monkeypatch, bernoulli_dropout):
    """Training mode, the same seed: the dropout masks are drawn in the reference's order, so
    the CE loss and every gradient agree."""
    ref, model, state = reference_pair(monkeypatch, 16, 2, n_items=41)
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
        torch.testing.assert_close(ours[rename(name)].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
