"""RecBLR: the BD-LRU recurrence against an explicit loop, the reference's power-of-two phantom
steps, and (when a checkout is present) the reference file itself with the same weights."""
import math
import re
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from reference_code import (
    REFERENCE_DIR,
    import_reference_model,
    largest_readout_difference,
    stub_module,
)

from models import build_model
from models.recblr import BDLRU, Config
from recbench.external import authors_code as reference

torch.set_num_threads(1)


def slow_bdlru(layer: BDLRU, x: torch.Tensor, pad: int) -> torch.Tensor:
    """The layer's equations one user, one channel and one step at a time (float64)."""
    B, L, _ = x.shape
    u_all, z = layer.input(x).chunk(2, dim=-1)
    E = u_all.size(-1)
    w, b = layer.conv1d.weight[:, 0], layer.conv1d.bias                 # (E, k), (E,)
    k = w.size(1)
    u_all = torch.cat([x.new_zeros(B, pad, E), u_all], dim=1)           # phantom steps first
    out = x.new_zeros(B, L, E)
    for n in range(B):
        h = x.new_zeros(E)
        for t in range(pad + L):
            conv = b.clone()
            for j in range(k):                                          # tap j sees input t-(k-1)+j
                s = t - (k - 1) + j
                if s >= 0:
                    conv = conv + w[:, j] * u_all[n, s]
            u = F.silu(conv)
            r, i = layer.gates(u).chunk(2)
            for e in range(E):
                alpha = math.exp(-F.softplus(layer.Lambda[e]).item() * torch.sigmoid(r[e]).item())
                beta = math.sqrt(1 - alpha ** 2 + 1e-8) * torch.sigmoid(i[e]).item()
                h[e] = alpha * h[e] + beta * u[e]
            if t >= pad:
                out[n, t - pad] = h
    return layer.output(F.silu(z) * out)


@pytest.mark.parametrize("L, pad_to_power_of_two, phantom", [(5, True, 3), (5, False, 0), (8, True, 0)])
def test_bdlru_matches_an_explicit_loop(L, pad_to_power_of_two, phantom):
    torch.manual_seed(0)
    layer = BDLRU(Config(hidden_size=4, expand=2, pad_to_power_of_two=pad_to_power_of_two)).double()
    with torch.no_grad():
        layer.conv1d.bias.add_(0.5)             # a clearly non-zero bias: phantom steps matter
        layer.Lambda.mul_(30)                  # stronger decay than at init
    x = torch.randn(2, L, 4, dtype=torch.float64)
    with torch.no_grad():
        assert (layer(x) - slow_bdlru(layer, x, phantom)).abs().max().item() < 1e-12


def test_phantom_steps_change_the_output_unless_L_is_a_power_of_two():
    torch.manual_seed(0)
    model = build_model("recblr", 30).eval()
    seq = torch.randint(1, 30, (3, 64))
    with torch.no_grad():
        for L, differs in ((50, True), (64, False)):
            ref = model(seq[:, :L], None)
            for layer in model.layers:
                layer.bdlru.pad_to_power_of_two = False
            plain = model(seq[:, :L], None)
            for layer in model.layers:
                layer.bdlru.pad_to_power_of_two = True
            assert ((ref - plain).abs().max().item() > 1e-4) == differs


REF_FILE = REFERENCE_DIR / "model" / "RecBLR.py"


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
def test_same_outputs_as_the_reference_code_with_its_weights(monkeypatch):
    """Import model/RecBLR.py with stand-ins for RecBole's base class and the Triton scan (a
    loop computing h_t = a_t h_{t-1} + x_t on [B, E, L]), load its weights into ours and compare
    the read-out at len-1 (eval mode, float32, L=50: 14 phantom steps)."""
    stub_module(monkeypatch, "parallel_scan", parallel_scan=reference.parallel_scan)
    stub_module(monkeypatch, "einops", rearrange=None)        # used by the CUDA branch only
    monkeypatch.setitem(sys.modules, "causal_conv1d", None)   # its pure conv path
    ref_module = import_reference_model(monkeypatch, "RecBLR.py")

    L = 50
    cfg = {"hidden_size": 64, "loss_type": "CE", "num_layers": 2, "dropout_prob": 0.2,
           "expand": 2, "d_conv": 4}
    torch.manual_seed(0)
    ref = ref_module.RecBLR(cfg, types.SimpleNamespace(n_items=101)).eval()
    ours = build_model("recblr", 101).eval()
    renames = [(r"^layer_norm\.", "emb_norm."), (r"^recurrent_layers\.(\d+)\.layer_norm", r"layers.\1.norm"),
               (r"^recurrent_layers", "layers"), (r"behavior_modeling", "bdlru")]
    state = {}
    for key, value in ref.state_dict().items():
        for old, new in renames:
            key = re.sub(old, new, key)
        state[key] = value
    assert largest_readout_difference(ref, ours, state, 101, L) < 1e-5


def test_default_never_sees_later_items_but_depends_on_the_window_length():
    """With the phantom steps, later items still never reach position t; only the number of
    padded steps (the window length) does, which is why the default is not declared causal."""
    torch.manual_seed(0)
    model = build_model("recblr", 30).eval()
    seq = torch.randint(1, 30, (2, 12))
    changed = seq.clone()
    changed[:, 7:] = torch.randint(1, 30, (2, 5))
    with torch.no_grad():
        assert torch.equal(model(seq, None)[:, :7], model(changed, None)[:, :7])
        assert (model(seq[:, :7], None) - model(seq, None)[:, :7]).abs().max().item() > 1e-4
