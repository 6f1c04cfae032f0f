"""recbench.engine: protocol, prefix/sequence equivalence, resume after SIGKILL, determinism,
divergence handling, early stopping and outputs, on tiny in-memory data."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import toy_models
from toy_models import toy_data
from recbench import engine
from recbench.batching import Batches, SequenceData, make_split
from recbench.engine import TrainConfig, build_for_run, early_stopping, run_training

toy_models.register()
TESTS = Path(__file__).parent


FAST = {"max_len": 20, "epochs": 4, "stopping_step": 10, "batch_size": 64, "eval_batch_size": 16,
        "device": "cpu", "progress": False, "seed": 3}


# --- equations ----------------------------------------------------------------------------

@pytest.mark.parametrize("model_name,equal", [("toy_causal", True), ("toy_noncausal", False)])
def test_prefix_and_sequence_losses_and_gradients_agree_for_causal_models(model_name, equal):
    torch.manual_seed(0)
    data = toy_data(n_users=12, max_len=10)
    max_len = 12                                   # every training sequence fits one window
    split = make_split(data, max_len)
    batches = Batches(data, split, max_len)
    model = build_for_run(model_name, data.n_items, max_len, {"hidden_size": 6}).double().eval()

    def loss_and_grads(mode):
        model.zero_grad()
        g = torch.Generator().manual_seed(0)
        (batch,) = list(batches.train(mode, batch_size=10_000, generator=g))
        fn = model.calculate_loss if mode == "prefix" else model.sequence_loss
        loss = fn(*batch, reduction="sum")
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_p, grads_p = loss_and_grads("prefix")
    loss_s, grads_s = loss_and_grads("sequence")
    assert batches.n_train("prefix") > batches.n_train("sequence")    # fewer, longer examples
    if equal:
        torch.testing.assert_close(loss_s, loss_p, rtol=1e-12, atol=1e-10)
        for gs, gp in zip(grads_s, grads_p):
            torch.testing.assert_close(gs, gp, rtol=1e-10, atol=1e-12)
    else:   # the non-causal model sees the future in sequence mode: the test has teeth
        assert not torch.allclose(loss_s, loss_p)


def test_early_stopping_follows_recbole_on_a_scripted_score_sequence():
    scores = [0.10, 0.20, 0.20, 0.15, 0.19, 0.18, 0.30]
    best, cur, best_epoch, stopped_at = -float("inf"), 0, None, None
    for epoch, s in enumerate(scores):
        best, cur, stop, improved = early_stopping(s, best, cur, stopping_step=2)
        if improved:
            best_epoch = epoch
        if stop:
            stopped_at = epoch
            break
    # a tie (0.20 at epoch 2) is an improvement; 3 = stopping_step + 1 epochs without one stop
    assert (best_epoch, stopped_at, best) == (2, 5, 0.20)


def test_early_stopping_inside_the_loop(tmp_path, monkeypatch):
    """Scripted valid scores through the real loop: the run stops stopping_step + 1 epochs
    after the best epoch and reports that epoch."""
    script = iter([0.1, 0.3, 0.2, 0.3, 0.25, 0.1, 0.2, 0.9])
    real = engine.metrics_from_ranks
    in_loop = {"on": True}

    def scripted(ranks, ks):
        out = real(ranks, ks)
        if in_loop["on"]:
            out["ndcg@10"] = next(script)
        return out

    monkeypatch.setattr(engine, "metrics_from_ranks", scripted)
    real_fit = engine._fit

    def fit_then_stop_script(*args):
        out = real_fit(*args)
        in_loop["on"] = False
        return out

    monkeypatch.setattr(engine, "_fit", fit_then_stop_script)
    res = run_training(toy_data(), tmp_path, "toy_causal", {},
                       {**FAST, "epochs": 20, "stopping_step": 2})
    # epochs 0, 1 improve; 2 does not; 3 ties the best (counts as improvement); 4, 5, 6 do
    # not: cur_step 3 > stopping_step 2 after epoch 6, so 7 epochs ran and 0.9 is never seen.
    assert (res["best_epoch"], res["epochs_run"]) == (3, 7)


def test_run_outputs_and_best_weights_are_restored(tmp_path):
    data = toy_data()
    res = run_training(data, tmp_path / "run", "toy_causal", {}, FAST)
    run = tmp_path / "run"
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["test"] == res["test"] and set(res["test"]) == {
        "hit@5", "ndcg@5", "mrr@5", "hit@10", "ndcg@10", "mrr@10"}
    assert res["epochs_run"] == 4 and res["config"]["model_config"]["max_len"] == 20
    assert res["n_params"] == sum(p.numel()
                                  for p in build_for_run("toy_causal", 30, 20).parameters())
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 4 and list(history["epoch"]) == [0, 1, 2, 3]
    # The restored best weights re-evaluate to exactly the best epoch's logged valid metrics.
    best = history.iloc[res["best_epoch"]]
    assert res["valid"]["ndcg@10"] == pytest.approx(best["valid_ndcg@10"], abs=1e-12)
    assert best["valid_ndcg@10"] == history["valid_ndcg@10"].max()
    ranks = pd.read_parquet(run / "test_ranks.parquet")
    split = make_split(data, 20)
    assert list(ranks["user_id"]) == [f"user{u}" for u in split.test_user]
    assert ranks["rank"].between(1, data.n_items - 1).all()
    assert (run / "checkpoint" / "last.pt").exists()
    assert not list(run.glob(".*.tmp*"))


def test_finished_run_is_never_retrained(tmp_path, monkeypatch):
    first = run_training(toy_data(), tmp_path, "toy_causal", {}, FAST)
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(engine, "_fit", lambda *a: pytest.fail("retrained a finished run"))
    again = run_training(toy_data(), tmp_path, "toy_causal", {}, FAST)
    assert again == first and (tmp_path / "metrics.json").stat().st_mtime_ns == stamp


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    data = toy_data()
    a = run_training(data, tmp_path / "a", "toy_causal", {}, FAST)
    b = run_training(data, tmp_path / "b", "toy_causal", {}, FAST)
    run_training(data, tmp_path / "c", "toy_causal", {}, {**FAST, "seed": 4})
    ha, hb, hc = (pd.read_csv(tmp_path / r / "history.csv") for r in "abc")
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert ha["loss"].tolist() == hb["loss"].tolist()
    assert ha["loss"].tolist() != hc["loss"].tolist()


def test_sequence_mode_trains_and_refuses_non_causal_models(tmp_path):
    res = run_training(toy_data(), tmp_path / "seq", "toy_causal", {}, {**FAST, "mode": "sequence"})
    assert res["n_train_examples"] == 40                  # one window per user here
    with pytest.raises(ValueError, match="'toy_noncausal' is not causal"):
        run_training(toy_data(), tmp_path / "nc", "toy_noncausal", {}, {**FAST, "mode": "sequence"})


def test_non_finite_loss_stops_the_run_without_metrics(tmp_path):
    data = toy_data()
    per_epoch = -(-len(make_split(data, 20).train_pos) // FAST["batch_size"])
    with pytest.raises(FloatingPointError, match=r"run/x: non-finite training loss .* at epoch 1"):
        run_training(data, tmp_path / "run" / "x", "toy_causal",
                     {"nan_after_calls": per_epoch}, FAST)
    assert not (tmp_path / "run" / "x" / "metrics.json").exists()


def test_popularity_is_fitted_on_training_target_counts(tmp_path):
    # RecBole split: user0 [1,2,3,4,5]: train targets 2, 3; valid 4; test 5.
    #                user1 [2,3,3,4,1]: train targets 3, 3; valid 4; test 1.
    #                user2 [5,3,2,1]:   train target 3;     valid 2; test 1.
    # Training-target counts: item 3 -> 4, item 2 -> 1, items 1, 4, 5 -> 0.
    data = SequenceData.from_lists([[1, 2, 3, 4, 5], [2, 3, 3, 4, 1], [5, 3, 2, 1]], n_items=6)
    res = run_training(data, tmp_path, "popularity", {},
                       {**FAST, "topk": [1, 2, 5], "valid_metric": "ndcg@5"})
    # Zero-count targets tie with every candidate -> pessimistic rank 5 of 5; item 2 is beaten
    # by item 3 only -> rank 2.
    assert pd.read_parquet(tmp_path / "test_ranks.parquet")["rank"].tolist() == [5, 5, 5]
    assert pd.read_parquet(tmp_path / "valid_ranks.parquet")["rank"].tolist() == [5, 5, 2]
    assert res["valid"]["hit@2"] == pytest.approx(1 / 3)
    assert res["epochs_run"] == 0 and res["best_epoch"] is None


def test_train_config_validation():
    assert TrainConfig.from_dict({}).batch_size == 2048
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_rate'\]"):
        TrainConfig.from_dict({"lr_rate": 1})
    with pytest.raises(ValueError, match="'mode' must be one of"):
        TrainConfig.from_dict({"mode": "window"})
    with pytest.raises(ValueError, match="'valid_metric'"):
        TrainConfig.from_dict({"valid_metric": "ndcg@20"})
    with pytest.raises(ValueError, match="'batch_size' must be an integer"):
        TrainConfig.from_dict({"batch_size": "big"})
    with pytest.raises(ValueError, match="conflicts with the run's max_len"):
        build_for_run("toy_causal", 10, 20, {"max_len": 30})


def test_resume_from_a_checkpoint_with_a_larger_epoch_cap(tmp_path):
    """A run cut at epoch 2 (metrics removed, as Snakemake does before a rerun) continues from
    its checkpoint to the same result as an uninterrupted run; a changed setting is refused."""
    data = toy_data()
    whole = run_training(data, tmp_path / "whole", "toy_causal", {}, FAST)
    run_training(data, tmp_path / "cut", "toy_causal", {}, {**FAST, "epochs": 2})
    (tmp_path / "cut" / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"different configuration \(\['train.lr'\] differ\)"):
        run_training(data, tmp_path / "cut", "toy_causal", {}, {**FAST, "lr": 0.01})
    resumed = run_training(data, tmp_path / "cut", "toy_causal", {}, FAST)
    assert (resumed["valid"], resumed["test"], resumed["epochs_run"]) == (
        whole["valid"], whole["test"], whole["epochs_run"])
    cols = ["epoch", "loss", "valid_ndcg@10"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv")[cols],
                                  pd.read_csv(tmp_path / "whole" / "history.csv")[cols])


# --- resume after SIGKILL -----------------------------------------------------------------

RUNNER = """
import json, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import toy_models; toy_models.register()
from toy_models import toy_data
from recbench.engine import run_training
res = run_training(toy_data(), {run!r}, "toy_causal", {{"sleep": {sleep}}}, {fast})
print(json.dumps({{k: res[k] for k in ("valid", "test", "best_epoch", "epochs_run")}}))
"""


def _runner(run_dir, sleep):
    code = RUNNER.format(tests=str(TESTS), run=str(run_dir), sleep=sleep,
                         fast={**FAST, "epochs": 8})
    return [sys.executable, "-c", code]


def test_resume_after_sigkill_gives_the_same_metrics(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    whole = subprocess.run(_runner(tmp_path / "whole", 0.0), capture_output=True, text=True,
                           env=env, timeout=300)
    assert whole.returncode == 0, whole.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen(_runner(run, 0.02), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ckpt = run / "checkpoint" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if ckpt.exists() and torch.load(ckpt, weights_only=False)["epoch"] >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists(), "the run finished before it was killed"
    killed_after = torch.load(ckpt, weights_only=False)["epoch"]
    assert 2 <= killed_after < 7

    resumed = subprocess.run(_runner(run, 0.02), capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole.stdout.splitlines()[-1])
    h_whole = pd.read_csv(tmp_path / "whole" / "history.csv")
    h_resumed = pd.read_csv(run / "history.csv")
    cols = [c for c in h_whole if not c.endswith("seconds")]
    pd.testing.assert_frame_equal(h_resumed[cols], h_whole[cols], check_exact=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_is_repeatable_and_device_auto_picks_cuda(tmp_path):
    cfg = {**FAST, "device": "auto"}
    a = run_training(toy_data(), tmp_path / "a", "toy_causal", {}, cfg)
    b = run_training(toy_data(), tmp_path / "b", "toy_causal", {}, cfg)
    assert a["device"].startswith("cuda") and a["peak_memory_kind"] == "cuda_max_allocated"
    assert a["test"] == b["test"] and a["valid"] == b["valid"]



@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_resumes_from_its_checkpoint(tmp_path):
    """A CUDA run stopped after 2 epochs and continued to 3 equals a 3-epoch run (the RNG
    states in the checkpoint are CPU tensors whatever the device)."""
    cfg = {**FAST, "device": "cuda", "stopping_step": 100}
    run_training(toy_data(), tmp_path / "r", "toy_causal", {}, {**cfg, "epochs": 2})
    (tmp_path / "r" / "metrics.json").unlink()
    resumed = run_training(toy_data(), tmp_path / "r", "toy_causal", {}, {**cfg, "epochs": 3})
    whole = run_training(toy_data(), tmp_path / "w", "toy_causal", {}, {**cfg, "epochs": 3})
    assert resumed["epochs_run"] == whole["epochs_run"] == 3
    assert resumed["test"] == whole["test"] and resumed["valid"] == whole["valid"]


ML100K = Path(os.environ.get("RECBENCH_DATA_MIRROR") or TESTS.parents[1] / "shared" / "data") \
    / "ml-100k" / "ml-100k.inter"


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not ML100K.exists(), reason=f"no {ML100K}")
def test_ml100k_causal_model_beats_popularity(tmp_path):
    """A small causal model (GRU4Rec, fast sequence mode, few epochs) must beat the popularity
    ranking on ML-100K test NDCG@10 under the full protocol (minutes on 2 CPU cores)."""
    from recbench.data import InterFilter, preprocess
    from recbench.engine import train_and_evaluate

    preprocess(ML100K, "atomic", tmp_path / "ml-100k", InterFilter(user_min=5, item_min=5),
               "float32_minmax")
    cfg = {"max_len": 50, "mode": "sequence", "batch_size": 128, "epochs": 6, "device": "cpu",
           "progress": False}
    pop = train_and_evaluate(tmp_path / "ml-100k", tmp_path / "pop", "popularity", {}, cfg)
    gru = train_and_evaluate(tmp_path / "ml-100k", tmp_path / "gru", "gru4rec", {}, cfg)
    assert pop["n_test_users"] == gru["n_test_users"] == 943
    assert gru["test"]["ndcg@10"] > pop["test"]["ndcg@10"]
