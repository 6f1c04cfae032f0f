"""recbench/external/authors_code.py: the authors' checkout found, checked against the pinned commit's
hashes, imported with CPU stand-ins that leave nothing behind, and run under our contract."""
import shutil
import sys

import pytest
import torch

from recbench.external import authors_code as reference

CHECKOUT = reference.find_checkout()
needs_checkout = pytest.mark.skipif(CHECKOUT is None,
                                    reason=f"no reference checkout in {reference.candidates()}")


def test_manifest_pins_every_model_file_and_config():
    files = reference.manifest()
    for cls in {**reference.MODELS, **reference.NEEDS_CUDA}.values():
        assert f"model/{cls}.py" in files and f"config/{cls}.yaml" in files
    assert all(len(digest) == 64 for digest in files.values())


@needs_checkout
def test_a_changed_or_missing_file_is_refused_naming_it(tmp_path):
    copy = tmp_path / "RecGRELA"
    shutil.copytree(CHECKOUT, copy)
    assert reference.verify(copy) == copy
    target = copy / "model" / "RecGRELA.py"
    target.chmod(0o644)
    target.write_text(target.read_text().replace("1e-6", "1e-5"))
    with pytest.raises(reference.ReferenceError, match="model/RecGRELA.py: sha256 differs"):
        reference.verify(copy)
    (copy / "config" / "LinRec.yaml").chmod(0o644)
    (copy / "config" / "LinRec.yaml").unlink()
    target.write_bytes((CHECKOUT / "model" / "RecGRELA.py").read_bytes())
    with pytest.raises(reference.ReferenceError, match="config/LinRec.yaml is missing"):
        reference.verify(copy)


@needs_checkout
def test_reference_configs_read_as_recbole_reads_them():
    """`layer_norm_eps: 1e-12` is a float for RecBole (a string for plain YAML 1.1); the data
    and training keys are the suite's, not model options."""
    options = reference.reference_options(CHECKOUT, "LinRec")
    assert options["layer_norm_eps"] == 1e-12 and options["hidden_size"] == 128
    assert not set(options) & {"train_batch_size", "MAX_ITEM_LIST_LENGTH", "dataset", "epochs"}
    assert reference.reference_options(CHECKOUT, "RecGRELA") == {
        "hidden_size": 64, "num_heads": 4, "num_layers": 4, "dropout_prob": 0.1,
        "drop_path": 0.1, "loss_type": "CE"}


def test_stand_in_conv_is_a_causal_depthwise_conv_with_silu():
    """Checked by hand against the definition: y_t = silu(b + sum_k w_k x_{t-K+1+k})."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 7), torch.randn(3, 4), torch.randn(3)
    y = reference.causal_conv1d_fn(x, w, b, activation="silu")
    padded = torch.cat([torch.zeros(2, 3, 3), x], dim=-1)
    for t in range(7):
        want = torch.nn.functional.silu(b + (padded[..., t:t + 4] * w).sum(-1))
        torch.testing.assert_close(y[..., t], want)
    assert torch.equal(reference.causal_conv1d_fn(x[..., :3], w, b),           # causal: a
                       reference.causal_conv1d_fn(x, w, b)[..., :3])           # prefix is fixed


@needs_checkout
@pytest.mark.parametrize("name", sorted(reference.MODELS))
def test_each_reference_model_trains_under_our_contract_and_leaves_no_stand_in(name):
    before = set(sys.modules)
    torch.manual_seed(0)
    model = reference.ReferenceModel(name, 41, 20)
    assert not {m for m in set(sys.modules) - before
                if m.split(".")[0] in ("model", "parallel_scan", "causal_conv1d", "timm")}
    seq = torch.randint(1, 41, (3, 20))
    seq_len = torch.tensor([20, 1, 9])
    seq[torch.arange(20) >= seq_len[:, None]] = 0
    loss = model.calculate_loss(seq, seq_len, torch.randint(1, 41, (3,)))
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - torch.log(torch.tensor(41.0)).item()) < 1.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.full_sort_predict(seq, seq_len).shape == (3, 41)
