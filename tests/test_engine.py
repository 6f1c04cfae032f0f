"""recbench.training.engine: protocol, prefix/sequence equivalence, resume after SIGKILL, safe and bad
checkpoints, determinism, divergence and out-of-memory handling, the run identity in
metrics.json, sampled evaluation, settings from config/schema.yaml; on tiny in-memory data."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import toy_models
import yaml
from toy_models import toy_data, write_processed

from recbench.data import sampling
from recbench.data.batching import Batches, SequenceData, make_split
from recbench.training import engine
from recbench.training.checkpoint import CheckpointError, set_rng_state
from recbench.training.engine import build_for_run, early_stopping, run_training, train_and_evaluate
from recbench.training.settings import TrainSettings, train_settings

toy_models.register()
TESTS = Path(__file__).parent
SCHEMA = yaml.safe_load((TESTS.parent / "config" / "schema.yaml").read_text())


FAST = {"epochs": 4, "stopping_step": 10, "batch_size": 64, "eval_batch_size": 16,
        "device": "cpu"}
IDENTITY = {"dataset": "toy", "max_len": 20, "seed": 3}


def run(data, run_dir, model="toy_causal", overrides=None, cfg=FAST, **identity):
    return run_training(data, run_dir, model, overrides or {}, cfg, **(IDENTITY | identity))


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
    real_fit = engine._Run._fit

    def fit_then_stop_script(*args):
        out = real_fit(*args)
        in_loop["on"] = False
        return out

    monkeypatch.setattr(engine._Run, "_fit", fit_then_stop_script)
    res = run(toy_data(), tmp_path, cfg={**FAST, "epochs": 20, "stopping_step": 2})
    # epochs 0, 1 improve; 2 does not; 3 ties the best (counts as improvement); 4, 5, 6 do
    # not: cur_step 3 > stopping_step 2 after epoch 6, so 7 epochs ran and 0.9 is never seen.
    assert (res["best_epoch"], res["epochs_run"]) == (3, 7)


# --- outputs and the results contract -------------------------------------------------------

def test_run_outputs_identity_and_best_weights_are_restored(tmp_path):
    data = toy_data()
    res = run(data, tmp_path / "anywhere", overrides={"hidden_size": 6}, variant="hidden_size=6")
    out = tmp_path / "anywhere"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    # identity from the arguments, not from the folder's name
    assert {k: on_disk[k] for k in ("dataset", "model", "variant", "overrides", "max_len",
                                    "seed", "status", "reason", "eval_mode")} == {
        "dataset": "toy", "model": "toy_causal", "variant": "hidden_size=6",
        "overrides": {"hidden_size": 6}, "max_len": 20, "seed": 3, "status": "ok",
        "reason": None, "eval_mode": "full"}
    assert on_disk["run"] == "toy/toy_causal/hidden_size=6/L20/seed3"
    assert set(res["test"]) == {"hit@5", "ndcg@5", "mrr@5", "hit@10", "ndcg@10", "mrr@10"}
    assert res["epochs_run"] == 4 and res["config"]["model_config"]["max_len"] == 20
    assert res["config"]["train"] == {**{k: v["default"] for k, v in
                                         SCHEMA["properties"]["train"]["properties"].items()},
                                      **FAST}
    assert res["n_params"] == sum(p.numel() for p in
                                  build_for_run("toy_causal", 30, 20, {"hidden_size": 6})
                                  .parameters())
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 4 and list(history["epoch"]) == [0, 1, 2, 3]
    # The restored best weights re-evaluate to exactly the best epoch's logged valid metrics.
    best = history.iloc[res["best_epoch"]]
    assert res["valid"]["ndcg@10"] == pytest.approx(best["valid_ndcg@10"], abs=1e-12)
    assert best["valid_ndcg@10"] == history["valid_ndcg@10"].max()
    ranks = pd.read_parquet(out / "test_ranks.parquet")
    split = make_split(data, 20)
    assert list(ranks["user_id"]) == [f"user{u}" for u in split.test_user]
    assert ranks["rank"].between(1, data.n_items - 1).all()
    assert (out / "checkpoint" / "last.pt").exists()
    assert not list(out.glob(".*.tmp*"))


def test_finished_run_is_never_retrained(tmp_path, monkeypatch):
    first = run(toy_data(), tmp_path)
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(engine._Run, "_fit", lambda *a: pytest.fail("retrained a finished run"))
    again = run(toy_data(), tmp_path)
    assert again == json.loads(json.dumps(first))
    assert (tmp_path / "metrics.json").stat().st_mtime_ns == stamp


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    data = toy_data()
    a = run(data, tmp_path / "a")
    b = run(data, tmp_path / "b")
    run(data, tmp_path / "c", seed=4)
    ha, hb, hc = (pd.read_csv(tmp_path / r / "history.csv") for r in "abc")
    assert a["test"] == b["test"] and a["valid"] == b["valid"]
    assert ha["loss"].tolist() == hb["loss"].tolist()
    assert ha["loss"].tolist() != hc["loss"].tolist()


def test_training_on_cpu_flushes_subnormal_floats(tmp_path):
    """A run sets the CPU to treat subnormals as zero (recbench/runtime.py flush_subnormals: they
    slowed Mamba-family steps 2-3x); 1e-30 * 1e-10 is a subnormal float32 otherwise."""
    def product():
        return (torch.tensor([1e-30]) * torch.tensor([1e-10])).item()

    torch.set_flush_denormal(False)
    try:
        assert product() > 0                                       # a subnormal, kept
        run(toy_data(), tmp_path, cfg=FAST | {"epochs": 1})
        assert product() == 0.0                                    # flushed after a run
    finally:
        torch.set_flush_denormal(False)


def test_sequence_mode_trains_and_refuses_non_causal_models(tmp_path):
    res = run(toy_data(), tmp_path / "seq", cfg={**FAST, "mode": "sequence"})
    assert res["n_train_examples"] == 40                  # one window per user here
    with pytest.raises(ValueError, match="'toy_noncausal' is not causal"):
        run(toy_data(), tmp_path / "nc", "toy_noncausal", cfg={**FAST, "mode": "sequence"})


def test_non_finite_loss_stops_the_run_without_metrics(tmp_path):
    data = toy_data()
    per_epoch = -(-len(make_split(data, 20).train_pos) // FAST["batch_size"])
    with pytest.raises(FloatingPointError,
                       match=r"toy/toy_causal/nan/L20/seed3: non-finite training loss .* epoch 1"):
        run(data, tmp_path / "x", overrides={"nan_after_calls": per_epoch}, variant="nan")
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_popularity_is_fitted_on_training_target_counts(tmp_path):
    # RecBole split: user0 [1,2,3,4,5]: train targets 2, 3; valid 4; test 5.
    #                user1 [2,3,3,4,1]: train targets 3, 3; valid 4; test 1.
    #                user2 [5,3,2,1]:   train target 3;     valid 2; test 1.
    # Training-target counts: item 3 -> 4, item 2 -> 1, items 1, 4, 5 -> 0.
    data = SequenceData.from_lists([[1, 2, 3, 4, 5], [2, 3, 3, 4, 1], [5, 3, 2, 1]], n_items=6)
    res = run(data, tmp_path, "popularity", cfg={**FAST, "topk": [1, 2, 5],
                                                 "valid_metric": "ndcg@5"})
    # Zero-count targets tie with every candidate -> pessimistic rank 5 of 5; item 2 is beaten
    # by item 3 only -> rank 2.
    assert pd.read_parquet(tmp_path / "test_ranks.parquet")["rank"].tolist() == [5, 5, 5]
    assert pd.read_parquet(tmp_path / "valid_ranks.parquet")["rank"].tolist() == [5, 5, 2]
    assert res["valid"]["hit@2"] == pytest.approx(1 / 3)
    assert res["epochs_run"] == 0 and res["best_epoch"] is None


# --- out of memory ------------------------------------------------------------------------

def _raise(err):
    def fail(*args, **kwargs):
        raise err
    return fail


@pytest.mark.parametrize("where,err", [
    ("train_epoch", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n"
                                           "(GPU 0; 80 GiB total capacity)")),
    ("train_epoch", RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                 "can't allocate memory: you tried to allocate 8 GB")),
    ("evaluate", MemoryError("Unable to allocate 3.2 GiB for an array")),
])
def test_out_of_memory_writes_status_oom_and_returns(tmp_path, monkeypatch, where, err):
    monkeypatch.setattr(engine, where, _raise(err))
    res = run(toy_data(), tmp_path, cfg={**FAST, "batch_size": 32})
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    first_line = str(err).splitlines()[0]
    assert res["status"] == "oom" and res["reason"] == (
        f"{first_line} (max_len=20, batch_size=32, eval_batch_size=16, mode=prefix)")
    assert (res["valid"], res["test"], res["dataset"], res["model"], res["seed"]) == (
        {}, {}, "toy", "toy_causal", 3)
    history = pd.read_csv(tmp_path / "history.csv")
    assert len(history) == 0 and "valid_ndcg@10" in history.columns
    for which in ("valid", "test"):
        ranks = pd.read_parquet(tmp_path / f"{which}_ranks.parquet")
        assert len(ranks) == 0 and list(ranks.columns) == ["user_id", "rank"]
    # finished: a rerun does not retrain
    monkeypatch.setattr(engine._Run, "_fit", lambda *a: pytest.fail("retrained an OOM run"))
    assert run(toy_data(), tmp_path) == on_disk


def test_other_errors_still_raise(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "train_epoch", _raise(RuntimeError("index out of range")))
    with pytest.raises(RuntimeError, match="index out of range"):
        run(toy_data(), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


# --- settings from config/schema.yaml -----------------------------------------------------

def test_train_settings_come_from_the_schema():
    props = SCHEMA["properties"]["train"]["properties"]
    fields = dataclasses.fields(TrainSettings)
    # one source of truth: every schema key is a setting, none has a default of its own
    assert {f.name for f in fields} == set(props)
    assert all(f.default is dataclasses.MISSING for f in fields)
    defaults = train_settings({})
    for f in fields:
        want = props[f.name]["default"]
        assert getattr(defaults, f.name) == (tuple(want) if f.name == "topk" else want), f.name
    assert train_settings({"lr": 1}).lr == 1.0
    with pytest.raises(ValueError, match="threads"):    # a runtime knob: profiles/, not config
        train_settings({"threads": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.lr = 0.1


@pytest.mark.parametrize("values,message", [
    ({"lr_rate": 1}, r"train: Additional properties .*'lr_rate' was unexpected.*known keys"),
    ({"max_len": 50}, r"'max_len' was unexpected.*\['max_len'\]: arguments of "
                      r"train_and_evaluate"),             # run identity, not a setting
    ({"mode": "window"}, r"train\.mode: 'window' is not one of \['prefix', 'sequence'\]"),
    ({"batch_size": "big"}, r"train\.batch_size: 'big' is not of type 'integer'"),
    ({"epochs": 0}, r"train\.epochs: 0 is less than the minimum of 1"),
    ({"device": "gpu"}, r"train\.device: 'gpu' does not match"),
    ({"eval_mode": "uni50"}, r"train\.eval_mode: 'uni50' is not one of"),
    ({"valid_metric": "ndcg@20"}, r"train\.valid_metric 'ndcg@20' cuts at k=20, which is not "
                                  r"one of train\.topk \[5, 10\]"),
    ({"valid_metric": "auc"}, r"train\.valid_metric: 'auc' does not match"),
    ({"topk": [5, 5]}, r"train\.topk: .* non-unique"),
    ({"precision": "fp16"}, r"train\.precision: 'fp16' is not one of \['fp32', 'bf16'\]"),
    ({"compile": 1}, r"train\.compile: 1 is not of type 'boolean'"),
])
def test_train_settings_errors_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        train_settings(values)


def test_model_max_len_override_conflicts_with_the_run():
    with pytest.raises(ValueError, match="conflicts with the run's max_len"):
        build_for_run("toy_causal", 10, 20, {"max_len": 30})


# --- resume and checkpoints -----------------------------------------------------------------

def test_resume_from_a_checkpoint_with_a_larger_epoch_cap(tmp_path):
    """A run cut at epoch 2 (metrics removed, as Snakemake does before a rerun) continues from
    its checkpoint to the same result as an uninterrupted run; a changed setting is refused."""
    data = toy_data()
    whole = run(data, tmp_path / "whole")
    run(data, tmp_path / "cut", cfg={**FAST, "epochs": 2})
    (tmp_path / "cut" / "metrics.json").unlink()
    with pytest.raises(ValueError, match=r"different configuration \(\['train.lr'\] differ\)"):
        run(data, tmp_path / "cut", cfg={**FAST, "lr": 0.01})
    with pytest.raises(ValueError, match=r"different configuration \(\['seed'\] differ\)"):
        run(data, tmp_path / "cut", seed=4)
    resumed = run(data, tmp_path / "cut", cfg={**FAST, "restart_bad_checkpoint": True})
    assert (resumed["valid"], resumed["test"], resumed["epochs_run"]) == (
        whole["valid"], whole["test"], whole["epochs_run"])
    cols = ["epoch", "loss", "valid_ndcg@10"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut" / "history.csv")[cols],
                                  pd.read_csv(tmp_path / "whole" / "history.csv")[cols])


def test_checkpoint_holds_only_tensors_and_plain_values(tmp_path):
    run(toy_data(), tmp_path, cfg={**FAST, "epochs": 1})
    ckpt = torch.load(tmp_path / "checkpoint" / "last.pt", weights_only=True)
    rng = ckpt["rng"]
    assert isinstance(rng["numpy"]["keys"], torch.Tensor) and len(rng["numpy"]["keys"]) == 624
    assert isinstance(rng["python"]["internal"], list) and len(rng["python"]["internal"]) == 625
    # the stored states restore the generators exactly
    import random
    random.seed(99), np.random.seed(99)
    set_rng_state(rng, torch.device("cpu"))
    a = (random.random(), np.random.random_sample(), torch.rand(()).item())
    set_rng_state(rng, torch.device("cpu"))
    assert (random.random(), np.random.random_sample(), torch.rand(()).item()) == a


class _Payload:
    """Unpickling this object would create `marker` (what a malicious last.pt could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_checkpoints(tmp_path):
    """(kind, writer) pairs: each writer puts a bad last.pt at the given path."""
    good = tmp_path / "good"
    run(toy_data(), good, cfg={**FAST, "epochs": 1})
    blob = (good / "checkpoint" / "last.pt").read_bytes()
    return {
        "pickled code": lambda p, marker: torch.save({"epoch": 0, "x": _Payload(marker)}, p),
        "truncated": lambda p, marker: p.write_bytes(blob[:len(blob) // 2]),
        "wrong contents": lambda p, marker: torch.save({"weights": torch.zeros(3)}, p),
    }


@pytest.mark.parametrize("kind,what", [
    ("pickled code", r"refused by torch.load\(weights_only=True\): Unsupported global"),
    ("truncated", r"(OSError|RuntimeError): "),
    ("wrong contents", r"not a run checkpoint: no \['epoch', 'early_stopped'"),
])
def test_bad_checkpoint_is_refused_or_restarted_on_request(tmp_path, kind, what):
    writers = _bad_checkpoints(tmp_path)
    marker = tmp_path / "payload_ran"
    if kind == "pickled code":   # the payload is real: a plain unpickle runs it
        torch.save(_Payload(marker), tmp_path / "probe.pt")
        torch.load(tmp_path / "probe.pt", weights_only=False)
        assert marker.exists()
        marker.unlink()
    ckpt = tmp_path / "run" / "checkpoint" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    writers[kind](ckpt, marker)

    with pytest.raises(CheckpointError, match=rf"checkpoint {ckpt} cannot be resumed from "
                                              rf"\({what}.*restart_bad_checkpoint: true"):
        run(toy_data(), tmp_path / "run")
    assert not marker.exists() and not (tmp_path / "run" / "metrics.json").exists()

    res = run(toy_data(), tmp_path / "run", cfg={**FAST, "restart_bad_checkpoint": True})
    fresh = run(toy_data(), tmp_path / "fresh")
    assert res["status"] == "ok" and res["epochs_run"] == 4
    assert (res["valid"], res["test"]) == (fresh["valid"], fresh["test"])
    assert (ckpt.parent / "last.pt.bad").exists() and not marker.exists()


# --- sampled evaluation ---------------------------------------------------------------------

def test_sampled_evaluation_ranks_among_the_stored_candidates(tmp_path):
    """Popularity scores are the training-target counts, so each rank among the target and
    its negatives can be counted by hand: 1 + #{negatives with count >= the target's}."""
    data = toy_data(n_users=60, n_items=140)
    neg = {s: sampling.draw_negatives(data, s, "uni100", seed=5) for s in ("valid", "test")}
    res = run(data, tmp_path, "popularity", cfg={**FAST, "eval_mode": "uni100"}, negatives=neg)
    split = make_split(data, 20)
    counts = np.bincount(data.items[split.train_pos], minlength=data.n_items)
    for which, pos in (("valid", split.valid_pos), ("test", split.test_pos)):
        want = [1 + sum(counts[j] >= counts[data.items[p]] for j in row)
                for p, row in zip(pos, neg[which])]
        got = pd.read_parquet(tmp_path / f"{which}_ranks.parquet")["rank"].tolist()
        assert got == want and max(got) <= 101
    assert res["eval_mode"] == "uni100" and res["config"]["train"]["eval_mode"] == "uni100"
    with pytest.raises(ValueError, match="'uni100' needs the stored negatives"):
        run(data, tmp_path / "none", "popularity", cfg={**FAST, "eval_mode": "uni100"})


def test_sampled_evaluation_from_the_dataset_folder(tmp_path):
    data = toy_data(n_users=60, n_items=140)
    write_processed(tmp_path / "toy", data)
    cfg = {**FAST, "epochs": 2, "eval_mode": "pop100"}
    with pytest.raises(FileNotFoundError, match=r"toy/negatives_pop100\.parquet: missing"):
        train_and_evaluate(tmp_path / "toy", tmp_path / "r", "toy_causal", {}, cfg,
                           max_len=20, seed=3)
    sampling.write_negatives(tmp_path / "toy", "pop100", seed=0)
    a = train_and_evaluate(tmp_path / "toy", tmp_path / "a", "toy_causal", {}, cfg,
                           max_len=20, seed=3)
    b = run(data, tmp_path / "b", cfg=cfg,
            negatives={s: sampling.draw_negatives(data, s, "pop100", seed=0)
                       for s in ("valid", "test")})
    assert a["dataset"] == "toy" and a["test"] == b["test"] and a["valid"] == b["valid"]
    ranks = pd.read_parquet(tmp_path / "a" / "test_ranks.parquet")["rank"]
    assert ranks.between(1, 101).all()


# --- resume after SIGKILL -----------------------------------------------------------------

RUNNER = """
import json, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import toy_models; toy_models.register()
from toy_models import toy_data, write_processed
from recbench.training.engine import run_training
res = run_training(toy_data(), {run!r}, "toy_causal", {{"sleep": {sleep}}}, {fast},
                   dataset="toy", max_len=20, seed=3)
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

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_runner(run_dir, 0.02), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ckpt = run_dir / "checkpoint" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] >= 2:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "the run finished before it was killed"
    killed_after = torch.load(ckpt, weights_only=True)["epoch"]
    assert 2 <= killed_after < 7

    resumed = subprocess.run(_runner(run_dir, 0.02), capture_output=True, text=True,
                             env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole.stdout.splitlines()[-1])
    h_whole = pd.read_csv(tmp_path / "whole" / "history.csv")
    h_resumed = pd.read_csv(run_dir / "history.csv")
    cols = [c for c in h_whole if not c.endswith("seconds")]
    pd.testing.assert_frame_equal(h_resumed[cols], h_whole[cols], check_exact=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_is_repeatable_and_device_auto_picks_cuda(tmp_path):
    cfg = {**FAST, "device": "auto"}
    a = run(toy_data(), tmp_path / "a", cfg=cfg)
    b = run(toy_data(), tmp_path / "b", cfg=cfg)
    assert a["device"].startswith("cuda") and a["peak_memory_kind"] == "cuda_max_allocated"
    assert a["test"] == b["test"] and a["valid"] == b["valid"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_resumes_from_its_checkpoint(tmp_path):
    """A CUDA run stopped after 2 epochs and continued to 3 equals a 3-epoch run (the RNG
    states in the checkpoint are CPU tensors whatever the device; weights_only load)."""
    cfg = {**FAST, "device": "cuda", "stopping_step": 100}
    run(toy_data(), tmp_path / "r", cfg={**cfg, "epochs": 2})
    (tmp_path / "r" / "metrics.json").unlink()
    resumed = run(toy_data(), tmp_path / "r", cfg={**cfg, "epochs": 3})
    whole = run(toy_data(), tmp_path / "w", cfg={**cfg, "epochs": 3})
    assert resumed["epochs_run"] == whole["epochs_run"] == 3
    assert resumed["test"] == whole["test"] and resumed["valid"] == whole["valid"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_out_of_memory_is_a_status(tmp_path):
    """A real CUDA OOM (a batch far beyond the device's memory) ends as status 'oom'."""
    free, _ = torch.cuda.mem_get_info()
    n_items = int(free // 4 // 256) + 1      # the [B, n_items] float scores of one batch alone
    data = toy_data(n_users=300, n_items=n_items, max_len=8)
    res = run(data, tmp_path, overrides={"hidden_size": 4},
              cfg={**FAST, "device": "cuda", "batch_size": 256, "epochs": 1})
    assert res["status"] == "oom" and "out of memory" in res["reason"].lower()
    assert torch.cuda.memory_allocated() < free // 2


ML100K = Path(os.environ.get("RECBENCH_DATA_MIRROR") or TESTS.parents[1] / "shared" / "data") \
    / "ml-100k" / "ml-100k.inter"


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.skipif(not ML100K.exists(), reason=f"no {ML100K}")
def test_ml100k_causal_model_beats_popularity(tmp_path):
    """A small causal model (GRU4Rec, fast sequence mode, few epochs) must beat the popularity
    ranking on ML-100K test NDCG@10 under the full protocol (minutes on 2 CPU cores)."""
    from recbench.data.preprocess import preprocess
    from recbench.data.protocol import InterFilter
    from recbench.training.engine import train_and_evaluate

    preprocess(ML100K, "atomic", tmp_path / "ml-100k", InterFilter(user_min=5, item_min=5),
               "float32_minmax")
    cfg = {"mode": "sequence", "batch_size": 128, "epochs": 6, "device": "cpu"}
    pop = train_and_evaluate(tmp_path / "ml-100k", tmp_path / "pop", "popularity", {}, cfg,
                             max_len=50, seed=2020)
    gru = train_and_evaluate(tmp_path / "ml-100k", tmp_path / "gru", "gru4rec", {}, cfg,
                             max_len=50, seed=2020)
    assert pop["n_test_users"] == gru["n_test_users"] == 943
    assert gru["test"]["ndcg@10"] > pop["test"]["ndcg@10"]


# --- precision and compilation (train.precision, train.compile) ---------------------------

PRECISION_TRAIN = {"epochs": 2, "stopping_step": 5, "batch_size": 16, "eval_batch_size": 64}


def test_bf16_autocast_trains_in_bfloat16_and_says_so(tmp_path, monkeypatch):
    """bf16: the model's matmuls run in bfloat16 in training (seen inside forward) and in
    float32 in evaluation (bf16 scores tie), the result is recorded, and the loss stays finite;
    fp32 runs see float32 throughout."""
    seen = []
    real = toy_models.ToyCausal.forward

    def spy(self, item_seq, seq_len):
        hidden = real(self, item_seq, seq_len)
        seen.append(("train" if self.training else "eval", hidden.dtype))
        return hidden

    monkeypatch.setattr(toy_models.ToyCausal, "forward", spy)
    runs = {}
    for precision in ("fp32", "bf16"):
        seen.clear()
        runs[precision] = run_training(toy_data(), tmp_path / precision, "toy_causal", {},
                                       PRECISION_TRAIN | {"precision": precision},
                                       dataset="toy", max_len=8, seed=3)
        trained = torch.float32 if precision == "fp32" else torch.bfloat16
        assert set(seen) == {("train", trained), ("eval", torch.float32)}
    for precision, result in runs.items():
        assert result["status"] == "ok" and result["config"]["train"]["precision"] == precision
        assert np.isfinite(pd.read_csv(tmp_path / precision / "history.csv")["loss"]).all()


def test_a_checkpoint_from_before_precision_resumes_as_fp32():
    """Checkpoints written before train.precision existed were fp32: they still resume."""
    from recbench.training.checkpoint import trajectory_keys

    resolved = {"model": "m", "model_config": {}, "max_len": 8, "seed": 1,
                "train": {"lr": 0.001, "processes": 1, "precision": "fp32", "compile": False}}
    old = {**resolved, "train": {"lr": 0.001}}
    assert trajectory_keys(old) == trajectory_keys(resolved)
    bf16 = {**resolved, "train": {**resolved["train"], "precision": "bf16"}}
    assert trajectory_keys(bf16) != trajectory_keys(resolved)


@pytest.mark.slow
def test_compiled_training_step_follows_the_uncompiled_trajectory(tmp_path):
    """train.compile without dropout: the same losses and metrics as an uncompiled run (float
    tolerance), the compilation timed apart from the epochs. (With dropout, Inductor draws its
    own masks: the same distribution, another trajectory.) Slow: torch.compile builds C++."""
    options = {"dropout": 0.0}
    plain = run_training(toy_data(), tmp_path / "plain", "toy_causal", options, PRECISION_TRAIN,
                         dataset="toy", max_len=8, seed=3)
    compiled = run_training(toy_data(), tmp_path / "compiled", "toy_causal", options,
                            PRECISION_TRAIN | {"compile": True}, dataset="toy", max_len=8, seed=3)
    assert plain["compile_seconds"] == 0.0 and compiled["compile_seconds"] > 0
    losses = [pd.read_csv(tmp_path / name / "history.csv")["loss"] for name in ("plain", "compiled")]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    for metric, value in plain["test"].items():
        assert compiled["test"][metric] == pytest.approx(value, abs=1e-6), metric
