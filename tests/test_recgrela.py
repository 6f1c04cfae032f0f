"""RecGRELA (models/recgrela.py) against explicit slow references, plus its properties.

The slow reference below is written from the reference code's equations (TBI805/RecGRELA `model/RecGRELA.py`, as docs/fidelity.md describes them)
and section 7 (the ablation switches: position_encoding rope / none / absolute / learnable,
activation, input_proj, local_shortcut, gate, drop_path, num_layers), with Python loops over
positions, heads and rotation pairs, in float64; it reads the model's parameters but none of
its functions. Every switch, causal and not, is checked against it.
"""
import math
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
from models.recgrela import Config, RecGRELA, apply_rope, causal_conv1d_fn, rope_tables
from recbench.external import authors_code as reference

torch.set_num_threads(1)

TINY = dict(hidden_size=8, num_heads=2, num_layers=2, chunk_size=3)


def tiny(n_items=13, seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    model = build_model("recgrela", n_items, **{**TINY, **overrides}).to(dtype).eval()
    with torch.no_grad():  # non-trivial biases, LN affine and positions: every term is exercised
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or name.startswith("position_"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def batch(n_items=13, B=2, L=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, n_items, (B, L), generator=g)
    seq_len = torch.tensor([L, 4])[:B]
    seq[1, 4:] = 0  # right padding, as the reference's RecBole batches
    return seq, seq_len


# --- the slow reference ----------------------------------------------------------------
@torch.no_grad()
def slow_forward(model: RecGRELA, item_seq: torch.Tensor, path_scale=None) -> torch.Tensor:
    """Every option's equations, one user, position, head and rotation pair at a time.
    path_scale[layer][b]: DropPath's multiplier of user b's GRELA branch (None: eval, 1)."""
    cfg = model.config
    D, H = cfg.hidden_size, cfg.num_heads
    hd = D // H
    B, L = item_seq.shape

    def lin(m, x):
        return m.weight @ x + m.bias

    def ln(m, x):
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return (x - mu) / math.sqrt(var + cfg.layer_norm_eps) * m.weight + m.bias

    def phi(x):  # ELU(x) + 1
        return torch.where(x > 0, x + 1, torch.exp(x))

    acts = {"silu": lambda x: x / (1 + torch.exp(-x)),
            "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
            "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x))}
    gate_act = acts[cfg.activation or "silu"]        # reference: SiLU gate, GELU MLP
    mlp_act = acts[cfg.activation or "gelu"]
    silu = acts["silu"]                              # the local shortcut's, in every variant

    def angle(pos, m):
        if cfg.position_encoding == "rope":          # pos * base^(-2m / D)
            return pos * cfg.rope_base ** (-m / (D // 2))
        return model.position_angles[pos, m].item()  # "learnable": the learned phase table

    def rotate(x, pos):
        if cfg.position_encoding not in ("rope", "learnable"):
            return x
        out = x.clone()
        for m in range(D // 2):
            c, s = math.cos(angle(pos, m)), math.sin(angle(pos, m))
            out[2 * m] = x[2 * m] * c - x[2 * m + 1] * s
            out[2 * m + 1] = x[2 * m] * s + x[2 * m + 1] * c
        return out

    def embed(b, i):
        e = model.item_embedding.weight[item_seq[b, i]]
        if cfg.position_encoding == "absolute":      # APE: P_i added to the item embedding
            e = e + model.position_embedding.weight[i]
        return ln(model.emb_norm, e)

    def mlp(blk, x):
        return lin(blk.mlp.fc2, mlp_act(lin(blk.mlp.fc1, x)))

    hidden = torch.zeros(B, L, D, dtype=torch.float64)
    for b in range(B):
        X = [embed(b, i) for i in range(L)]
        for layer, blk in enumerate(model.blocks):
            Hn = [ln(blk.norm1, X[i]) for i in range(L)]
            V = [lin(blk.in_proj, Hn[i]) if cfg.input_proj else Hn[i] for i in range(L)]
            QK = [lin(blk.rela.qk, V[i]) for i in range(L)]
            Q = [phi(qk[:D]) for qk in QK]
            K = [phi(qk[D:]) for qk in QK]
            Qr = [rotate(Q[i], i) for i in range(L)]
            Kr = [rotate(K[i], i) for i in range(L)]
            new_X = []
            for i in range(L):
                js = range(i + 1) if cfg.causal else range(L)
                y = torch.zeros(D, dtype=torch.float64)
                for h in range(H):
                    sl = slice(h * hd, (h + 1) * hd)
                    num = sum(torch.dot(Qr[i][sl], Kr[j][sl]) * V[j][sl] for j in js)
                    den = sum(torch.dot(Q[i][sl], K[j][sl]) for j in js)
                    n = len(js)
                    y[sl] = (num / n) / (den / n + cfg.attn_eps)
                if cfg.local_shortcut:
                    w = blk.rela.conv.weight[:, 0, :]           # (D, k); tap k-1 = current item
                    k = w.shape[1]
                    conv = blk.rela.conv.bias.clone()
                    for lag in range(k):
                        if i - lag >= 0:
                            conv = conv + w[:, k - 1 - lag] * V[i - lag]
                    y = y + silu(conv)
                if cfg.gate:
                    y = y * gate_act(lin(blk.act_proj, Hn[i]))
                Y = lin(blk.out_proj, y) * (1.0 if path_scale is None else path_scale[layer][b])
                if cfg.num_layers == 1:
                    new_X.append(mlp(blk, ln(blk.norm2, Y)))     # no residuals at all
                else:
                    mid = X[i] + Y
                    new_X.append(mid + mlp(blk, ln(blk.norm2, mid)))
            X = new_X
        hidden[b] = torch.stack(X)
    return hidden


VARIANTS = [
    {},
    {"position_encoding": "none"},
    {"position_encoding": "absolute"},
    {"position_encoding": "learnable"},
    {"activation": "silu"},
    {"activation": "gelu"},
    {"activation": "relu"},
    {"input_proj": False},
    {"local_shortcut": False},
    {"gate": False},
    {"num_layers": 1},
    {"position_encoding": "none", "local_shortcut": False, "gate": False, "input_proj": False},
]


def variant_id(v):
    return ",".join(f"{k}={x}" for k, x in v.items()) or "default"


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_forward_matches_slow_reference(causal, variant):
    model = tiny(causal=causal, **variant)
    seq, seq_len = batch()
    with torch.no_grad():
        got = model(seq, seq_len)
    assert (got - slow_forward(model, seq)).abs().max().item() < 1e-9


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 64])
def test_causal_chunking_does_not_change_the_result(chunk_size):
    model = tiny(causal=True, chunk_size=chunk_size)
    seq, seq_len = batch(L=9)
    with torch.no_grad():
        assert (model(seq, seq_len) - slow_forward(model, seq)).abs().max().item() < 1e-9


@pytest.mark.parametrize("drop_path", [0.0, 0.5])
@pytest.mark.parametrize("num_layers", [2, 1])
def test_drop_path_in_training_scales_whole_users_branches(drop_path, num_layers):
    """DropPath (timm, scale_by_keep): in training, user b's GRELA branch of each block is
    multiplied by Bernoulli(1 - p) / (1 - p), one draw per user and block, in block order
    (dropout 0: nothing else draws). drop_path = 0 ("w/o DropPath") is the identity."""
    model = tiny(num_layers=num_layers, dropout=0.0, drop_path=drop_path).train()
    seq, seq_len = batch(B=2)
    keep = 1.0 - drop_path
    torch.manual_seed(11)
    with torch.no_grad():
        got = model(seq, seq_len)
    torch.manual_seed(11)
    scale = [torch.empty(2, 1, 1, dtype=torch.float64).bernoulli_(keep).div_(keep).flatten().tolist()
             if drop_path else [1.0, 1.0] for _ in range(num_layers)]
    assert (got - slow_forward(model, seq, scale)).abs().max().item() < 1e-9
    if drop_path:   # the seed was chosen so that some branch is dropped and some kept
        flat = [x for layer in scale for x in layer]
        assert 0.0 in flat and 2.0 in flat


def test_one_layer_branch_has_no_residual_by_hand():
    """num_layers=1: hidden = MLP(LN2(DropPath(Y))) with no skip connection, as the reference."""
    model = tiny(num_layers=1)
    seq, seq_len = batch()
    blk = model.blocks[0]
    with torch.no_grad():
        x0 = model.emb_norm(model.item_embedding(seq))
        cos, sin = rope_tables(torch.arange(seq.shape[1]), 8, 10000.0, torch.float64)
        y = blk.mixer(x0, cos, sin)
        by_hand = blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(y))))
        with_residual = (x0 + y) + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x0 + y))))
        got = model(seq, seq_len)
    assert torch.allclose(got, by_hand, atol=1e-12)
    assert not torch.allclose(got, with_residual, atol=1e-3)


def test_local_shortcut_equals_reference_conv_with_its_cpu_bugs_fixed():
    """SiLU(Conv1d(padding=k-1)[..., :L]) transposed back: the reference's CUDA-path result."""
    model = tiny()
    rela = model.blocks[0].rela
    v = torch.randn(3, 11, 8, dtype=torch.float64)
    with torch.no_grad():
        want = F.silu(rela.conv(v.transpose(1, 2))[..., :11]).transpose(1, 2)
        assert (rela.local_shortcut(v) - want).abs().max().item() < 1e-12


# --- RoPE ------------------------------------------------------------------------------
def test_rope_dot_product_depends_only_on_offset():
    torch.manual_seed(0)
    D = 16
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    cos, sin = rope_tables(torch.arange(300), D, 10000.0, torch.float64)

    def dot(i, j):
        return torch.dot(apply_rope(q, cos[i], sin[i]), apply_rope(k, cos[j], sin[j])).item()

    for i, j in [(5, 2), (40, 0), (7, 7), (3, 9)]:
        for shift in (1, 13, 250):
            assert dot(i + shift, j + shift) == pytest.approx(dot(i, j), abs=1e-10)
    assert dot(5, 2) != pytest.approx(dot(6, 2), abs=1e-6)   # ...and it does depend on the offset
    # a rotation: norms are kept
    assert apply_rope(q, cos[123], sin[123]).norm().item() == pytest.approx(q.norm().item(), abs=1e-12)


def test_rope_pairs_and_frequencies_match_the_reference_formula():
    """Pair m = (2m, 2m+1) turns by pos * 10000^(-m / (D/2)), over the full D."""
    D, pos = 8, 3
    x = torch.zeros(D, dtype=torch.float64)
    x[2] = 1.0   # first coordinate of pair m = 1
    cos, sin = rope_tables(torch.tensor(pos), D, 10000.0, torch.float64)
    out = apply_rope(x, cos, sin)
    angle = pos * 10000 ** (-1 / 4)
    assert out[2].item() == pytest.approx(math.cos(angle), abs=1e-14)
    assert out[3].item() == pytest.approx(math.sin(angle), abs=1e-14)
    assert out[[0, 1, 4, 5, 6, 7]].abs().max().item() == 0.0


# --- causality -------------------------------------------------------------------------
def test_causal_variant_outputs_do_not_see_later_items_or_window_length():
    model = tiny(causal=True)
    assert model.causal is True
    seq, seq_len = batch(L=9)
    changed = seq.clone()
    changed[:, 5:] = torch.randint(1, 13, (2, 4))
    longer = torch.cat([seq, torch.zeros(2, 6, dtype=torch.long)], dim=1)   # more padding
    with torch.no_grad():
        a, b = model(seq, seq_len), model(changed, seq_len)
        c = model(longer, seq_len)
    assert (a[:, :5] - b[:, :5]).abs().max().item() < 1e-12
    assert (a[:, 5:] - b[:, 5:]).abs().max().item() > 1e-6
    assert (a - c[:, :9]).abs().max().item() < 1e-12


def test_reference_variant_is_non_causal_within_the_window_but_never_sees_the_target():
    model = tiny()
    assert model.causal is False and RecGRELA.causal is False
    seq, seq_len = batch(L=9)
    changed = seq.clone()
    changed[0, 7] = 1 + (seq[0, 7] % 12)
    with torch.no_grad():
        a, b = model(seq, seq_len), model(changed, seq_len)
    # documented reference behaviour: a later item changes the output at position 2
    assert (a[0, 2] - b[0, 2]).abs().max().item() > 1e-6
    # but a prefix example (first t items, right-padded) holds no later item, so the
    # prediction for item t+1 is the same whatever the rest of the sequence is
    t = 4
    prefix_a = torch.where(torch.arange(9) < t, seq, 0)
    prefix_b = torch.where(torch.arange(9) < t, changed, 0)
    with torch.no_grad():
        pa = model.full_sort_predict(prefix_a, torch.tensor([t, t]))
        pb = model.full_sort_predict(prefix_b, torch.tensor([t, t]))
    assert torch.equal(pa, pb)
    assert pa.shape == (2, 13)


def test_causal_sequence_loss_equals_mean_of_prefix_losses():
    """What lets the engine use its fast `sequence` mode for the causal variant."""
    model = tiny(causal=True)
    seq = torch.tensor([[3, 5, 7, 2, 9, 4]])
    inputs, targets = seq[:, :-1], seq[:, 1:]
    with torch.no_grad():
        fast = model.sequence_loss(inputs, torch.tensor([5]), targets)
        slow = torch.stack([
            model.calculate_loss(torch.where(torch.arange(5) < t, inputs, 0), torch.tensor([t]), targets[:, t - 1])
            for t in range(1, 6)]).mean()
    assert fast.item() == pytest.approx(slow.item(), abs=1e-12)


# --- streaming inference ---------------------------------------------------------------
def test_streaming_step_equals_full_forward_over_500_steps():
    torch.manual_seed(0)
    model = build_model("recgrela", 50, causal=True).eval()     # reference dims, float32
    B, L = 2, 500
    seq = torch.randint(1, 50, (B, L))
    with torch.no_grad():
        hidden = model(seq, torch.full((B,), L))                 # (B, L, D)
        scores = model.score(hidden)                             # (B, L, n_items)
        state = model.init_state(B)
        worst_h = worst_s = 0.0
        for t in range(L):
            state, h = model.step(state, seq[:, t])
            worst_h = max(worst_h, (h - hidden[:, t]).abs().max().item())
            worst_s = max(worst_s, (model.score(h) - scores[:, t]).abs().max().item())
    assert worst_h < 1e-5 and worst_s < 1e-5


@pytest.mark.parametrize("variant", [{"position_encoding": "absolute"}, {"position_encoding": "learnable"},
                                     {"position_encoding": "none", "input_proj": False, "activation": "relu"},
                                     {"num_layers": 1, "gate": False}], ids=variant_id)
def test_streaming_step_equals_full_forward_for_each_switch(variant):
    model = tiny(causal=True, **variant)
    seq, _ = batch(L=9)
    with torch.no_grad():
        hidden = model(seq, torch.full((2,), 9))                 # (B, L, D)
        state = model.init_state(2)
        for t in range(9):
            state, h = model.step(state, seq[:, t])
            assert (h - hidden[:, t]).abs().max().item() < 1e-12, t


def test_streaming_state_is_constant_size_and_reference_variant_refuses_it():
    model = tiny(causal=True)
    state = model.init_state(3)
    before = [{k: v.shape for k, v in st.items()} for st in state]
    for item in (1, 2, 3, 4, 5):
        state, _ = model.step(state, torch.full((3,), item))
    assert [{k: v.shape for k, v in st.items()} for st in state] == before
    with pytest.raises(ValueError, match="causal"):
        tiny().init_state(1)
    with pytest.raises(RuntimeError, match="eval"):
        model.train().step(state, torch.ones(3, dtype=torch.long))


# --- parameters, initialisation, switches ------------------------------------------------
def test_trainable_parameters_ml1m_reference_configuration():
    model = build_model("recgrela", 3417)     # 3,416 items + padding, as in the reference log
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 436_672


def test_ablation_switches_remove_their_parameters_and_change_the_function():
    D, layers, max_len = 64, 4, 200

    def n_params(**switch):
        return sum(p.numel() for p in build_model("recgrela", 3417, **switch).parameters())
    full = n_params()
    assert full - n_params(gate=False) == layers * (D * D + D)               # act_proj
    assert full - n_params(local_shortcut=False) == layers * (D * 4 + D)     # depthwise conv
    assert full - n_params(input_proj=False) == layers * (D * D + D)         # in_proj
    assert n_params(position_encoding="absolute") - full == max_len * D      # P
    assert n_params(position_encoding="learnable") - full == max_len * D // 2  # phases
    for same in ({"position_encoding": "none"}, {"activation": "relu"}, {"drop_path": 0.0}):
        assert n_params(**same) == full
    seq, seq_len = batch()
    with torch.no_grad():
        base = tiny()(seq, seq_len)
        for switch in ({"position_encoding": "none"}, {"position_encoding": "absolute"},
                       {"position_encoding": "learnable"}, {"activation": "silu"},
                       {"activation": "gelu"}, {"activation": "relu"}, {"input_proj": False},
                       {"local_shortcut": False}, {"gate": False}):
            assert (tiny(**switch)(seq, seq_len) - base).abs().max().item() > 1e-6, switch


def test_reference_activations_are_silu_gate_and_gelu_mlp():
    """activation=None is the reference: identical to the explicit names it stands for only
    in the right places (gate SiLU + MLP GELU is neither 'silu' nor 'gelu' throughout)."""
    seq, seq_len = batch()
    with torch.no_grad():
        ref = tiny()(seq, seq_len)
        for name in ("silu", "gelu"):
            assert (tiny(activation=name)(seq, seq_len) - ref).abs().max().item() > 1e-6
    blk = tiny().blocks[0]
    assert blk.gate_act is F.silu and blk.mlp.act is F.gelu


def test_learnable_positions_start_at_ropes_angles():
    """LPE = RoPE's rotation with learned angles: at init the table holds i * theta_m, so the
    untrained model equals the RoPE model (to the float32 rounding of the angles)."""
    torch.manual_seed(0)
    lpe = build_model("recgrela", 13, **TINY, position_encoding="learnable", max_len=20)
    i, m = torch.arange(20.0, dtype=torch.float64)[:, None], torch.arange(4, dtype=torch.float64)
    torch.testing.assert_close(lpe.position_angles.double(), i * 10000.0 ** (-m / 4),
                               rtol=1e-7, atol=0)
    torch.manual_seed(0)
    rope = build_model("recgrela", 13, **TINY, max_len=20)
    rope.load_state_dict({k: v for k, v in lpe.state_dict().items() if k != "position_angles"})
    seq, seq_len = batch()
    with torch.no_grad():
        assert (lpe.eval()(seq, seq_len) - rope.eval()(seq, seq_len)).abs().max().item() < 1e-5


def test_absolute_positions_are_added_to_the_item_embedding_and_trained():
    model = tiny(position_encoding="absolute", dropout=0.0).train()
    seq, seq_len = batch()
    with torch.no_grad():
        x0 = model.emb_norm(model.item_embedding(seq) + model.position_embedding.weight[:7])
    torch.testing.assert_close(model.embed(seq, torch.arange(7)), model.item_embedding(seq)
                               + model.position_embedding.weight[:7], rtol=0, atol=0)
    assert torch.equal(model.emb_norm(model.embed(seq, torch.arange(7))), x0)
    model.calculate_loss(seq, seq_len, torch.tensor([3, 4])).backward()
    assert model.position_embedding.weight.grad[:7].abs().min() > 0   # every window row learns


@pytest.mark.parametrize("encoding", ["absolute", "learnable"])
def test_position_tables_refuse_windows_past_max_len(encoding):
    model = tiny(position_encoding=encoding, max_len=6)
    seq, seq_len = batch(L=7)
    with pytest.raises(ValueError, match="max_len=6"):
        model(seq, seq_len)
    model(seq[:, :6], seq_len.clamp(max=6))                    # 6 positions fit
    tiny(max_len=6)(seq, seq_len)                              # RoPE has no table: any L


def test_initialisation_as_reference():
    torch.manual_seed(0)
    model = build_model("recgrela", 3417)
    emb = model.item_embedding.weight
    assert emb[0].abs().sum().item() > 0                    # padding row drawn N(0, 0.02) too
    assert emb.std().item() == pytest.approx(0.02, rel=0.05)
    blk = model.blocks[0]
    assert blk.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert blk.in_proj.bias.abs().sum().item() == 0
    assert torch.equal(blk.norm1.weight, torch.ones(64)) and blk.norm1.bias.abs().sum().item() == 0
    # Conv1d keeps PyTorch's default kaiming-uniform: U(-b, b), b = 1/sqrt(fan_in = kernel 4) = 0.5,
    # so std b / sqrt(3) (over the 4 blocks' 1,024 weights)
    conv = torch.cat([b.rela.conv.weight.flatten() for b in model.blocks])
    assert conv.abs().max().item() <= 0.5
    assert conv.std().item() == pytest.approx(0.5 / math.sqrt(3), rel=0.1)


def test_padding_row_is_trained_only_through_the_output_logits():
    """padding_idx freezes row 0 as an *input*; as in RecBole, column 0 is still a CE logit, so
    row 0's gradient is exactly sum_b dLoss/dlogit[b, 0] * hidden[b] (the scoring path alone)."""
    model = tiny()
    seq, seq_len = batch()
    target = torch.tensor([1, 2])
    model.calculate_loss(seq, seq_len, target).backward()
    with torch.no_grad():
        h = model.gather_last(model(seq, seq_len), seq_len)               # (B, D)
        probs = torch.softmax(h @ model.item_embedding.weight.T, dim=-1)  # (B, n_items)
        dlogit0 = (probs[:, 0] - (target == 0).double()) / len(target)
    assert (model.item_embedding.weight.grad[0] - dlogit0 @ h).abs().max().item() < 1e-12


@pytest.mark.parametrize("causal", [False, True])
def test_recompute_gives_identical_gradients(causal):
    """Activation recomputation is a memory option only: same loss and gradients, dropout on."""
    grads = []
    for recompute in (True, False):
        model = tiny(causal=causal, recompute=recompute, dropout=0.3, drop_path=0.3).train()
        seq, seq_len = batch()
        torch.manual_seed(7)
        loss = model.calculate_loss(seq, seq_len, torch.tensor([3, 4]))
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-13) for a, b in zip(*grads))



@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_layers", [2, 1])
def test_groups_of_users_and_recompute_give_the_same_gradients(causal, num_layers):
    """One user at a time (group_tokens = L) or three, with and without recomputation, equals
    the whole batch at once without it: users never interact inside a block. Dropout off,
    since the masks are drawn group by group."""
    g = torch.Generator().manual_seed(5)
    seq = torch.randint(1, 13, (5, 7), generator=g)
    seq_len = torch.tensor([7, 4, 7, 2, 6])
    for row, n in enumerate(seq_len):
        seq[row, n:] = 0
    target = torch.tensor([3, 4, 5, 6, 7])
    grads = []
    for settings in ({"group_tokens": 10**9, "recompute": False}, {"group_tokens": 7},
                     {"group_tokens": 3 * 7}, {"group_tokens": 7, "recompute": True},
                     {"group_tokens": 3 * 7, "recompute": True}, {"recompute": True}):
        model = tiny(causal=causal, num_layers=num_layers, dropout=0.0, drop_path=0.0,
                     **settings).train()
        loss = model.calculate_loss(seq, seq_len, target)
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    for other in grads[1:]:
        assert max((a - b).abs().max().item() for a, b in zip(grads[0], other)) < 1e-13


def test_cpu_groups_are_even_and_twice_as_long_under_bf16_autocast():
    """group_tokens caps a group's positions: 5 users of 7 positions under a cap of 21 go as
    3 + 2 users (as few groups as the cap allows, even sizes); under bf16 autocast the cap
    doubles (42: one group of 5); a cap under one user's length still passes one user."""
    seq = torch.randint(1, 13, (5, 7), generator=torch.Generator().manual_seed(0))
    seq_len = torch.full((5,), 7)
    sizes = []
    for cap, bf16, expected in ((21, False, [3, 2]), (21, True, [5]), (14, False, [2, 2, 1]),
                                (3, False, [1] * 5), (7 * 5, False, [5])):
        model = tiny(dtype=torch.float32, num_layers=2, group_tokens=cap).train()
        block = model.blocks[0]
        sizes.clear()
        original = block.block
        block.block = lambda x, cos, sin: (sizes.append(x.size(0)), original(x, cos, sin))[1]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.calculate_loss(seq, seq_len, torch.ones(5, dtype=torch.long))
        assert sizes == expected, (cap, bf16, sizes)


def test_bad_config_names_the_problem():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Config(hidden_size=10, num_heads=4)
    with pytest.raises(ValueError, match="no option"):
        build_model("recgrela", 10, hidden=64)
    with pytest.raises(ValueError, match="position_encoding must be one of"):
        Config(position_encoding="sinusoidal")
    with pytest.raises(ValueError, match="activation must be None"):
        Config(activation="swishy")
    with pytest.raises(ValueError, match="even"):
        Config(hidden_size=9, num_heads=3, position_encoding="learnable")
    Config(hidden_size=9, num_heads=3, position_encoding="absolute")   # no rotation pairs needed


# --- fast path -----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or causal_conv1d_fn is None,
                    reason="needs CUDA and the causal-conv1d package")
def test_causal_conv1d_fast_path_matches_pure_path():
    torch.manual_seed(0)
    model = build_model("recgrela", 100).cuda()
    rela = model.blocks[0].rela
    v = torch.randn(4, 200, 64, device="cuda")
    fast = rela.local_shortcut(v)
    rela.cfg.fast_kernels = False
    try:
        pure = rela.local_shortcut(v)
    finally:
        rela.cfg.fast_kernels = True
    assert (fast - pure).abs().max().item() < 1e-5


# --- the reference code itself (a checkout of TBI805/RecGRELA @ 608a39b: tests/reference_code.py)
REF_FILE = REFERENCE_DIR / "model" / "RecGRELA.py"


@pytest.mark.skipif(not REF_FILE.exists(), reason=f"reference checkout not found at {REF_FILE}")
@pytest.mark.parametrize("num_layers", [4, 1])
def test_same_outputs_as_the_reference_code_with_its_weights(monkeypatch, num_layers):
    """Import model/RecGRELA.py with stand-ins for RecBole's base class, timm's DropPath and the
    causal-conv1d CUDA kernel (a plain conv + SiLU: what the kernel computes), load its weights
    into ours and compare the read-out at len-1 (eval mode, float32)."""
    for name in ("timm", "timm.models"):
        stub_module(monkeypatch, name)
    stub_module(monkeypatch, "timm.models.layers", DropPath=lambda p: torch.nn.Identity())
    stub_module(monkeypatch, "causal_conv1d", causal_conv1d_fn=reference.causal_conv1d_fn)
    ref_module = import_reference_model(monkeypatch, "RecGRELA.py")

    L = 30
    cfg = {"hidden_size": 64, "loss_type": "CE", "num_layers": num_layers, "dropout_prob": 0.1,
           "drop_path": 0.1, "MAX_ITEM_LIST_LENGTH": L, "num_heads": 4}
    torch.manual_seed(0)
    ref = ref_module.RecGRELA(cfg, types.SimpleNamespace(n_items=101)).eval()
    ours = build_model("recgrela", 101, num_layers=num_layers).eval()
    renames = [("GRELA_block", "blocks"), ("LayerNorm1", "norm1"), ("LayerNorm2", "norm2"),
               ("attn.qk", "rela.qk"), ("attn.conv1d", "rela.conv"), ("LayerNorm.", "emb_norm.")]
    state = {}
    for key, value in ref.state_dict().items():
        if key.endswith("rope.rotations"):
            continue
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    assert largest_readout_difference(ref, ours, state, 101, L) < 1e-5
