"""recbench.tuning.studies and rules/tune.smk: an equal-budget Optuna study per (dataset, model) on
tiny data (toy model, 2 epochs): the same config and seed give the same best trial; a trial
that raises, or a worker killed with SIGKILL, loses no finished trial and its rerun fills the
budget; two worker processes on one study use the budget exactly; the per-epoch hook prunes;
config mistakes fail `snakemake -n` naming the key; a tuned run trains with the best options."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import toy_models
import yaml
from optuna.trial import TrialState
from toy_models import toy_data, write_processed

from recbench.plan.groups import ConfigError
from recbench.training import engine
from recbench.tuning import worker as tuning
from recbench.tuning.studies import Study, check_space
from recbench.tuning.worker import best_of, open_study, run_worker

toy_models.register()
TESTS = Path(__file__).parent
ROOT = TESTS.parent
TINY = TESTS / "workflow" / "tiny.yaml"
TRAIN = {"epochs": 2, "stopping_step": 5, "batch_size": 64, "eval_batch_size": 64,
         "device": "cpu"}
SPACE = {"lr": {"low": 1e-3, "high": 3e-2, "log": True}, "hidden_size": {"choices": [4, 8, 16]},
         "dropout": {"low": 0.0, "high": 0.5}}


def study(trials=4, workers=1, overrides=None, **changes) -> Study:
    values = dict(dataset="toy", model="toy_causal", max_len=20, seed=3, trials=trials,
                  workers=workers, space=SPACE, overrides=overrides or {}, train=TRAIN,
                  sampler_startup_trials=2, pruner_startup_trials=2, pruner_warmup=0)
    return Study(**(values | changes))


@pytest.fixture
def dataset(tmp_path, monkeypatch) -> Path:
    """A processed toy dataset; the working directory is tmp_path (studies live under it)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "toy"
    write_processed(folder, toy_data())
    return folder


def states(s: Study) -> dict:
    found = open_study(s)
    return {t.number: t.state for t in found.get_trials(deepcopy=False)}


def used(s: Study) -> int:
    return sum(state in tuning.COUNTED for state in states(s).values())


# --- one worker ------------------------------------------------------------------------------

def test_same_config_and_seed_give_the_same_best_trial(dataset, tmp_path):
    bests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        os.chdir(tmp_path / name)          # monkeypatch (fixture) restores the first cwd
        s = study()
        run_worker(s, dataset, 0, "worker.json")
        best = best_of(s)
        assert best["complete"] + best["pruned"] == 4 == best["budget"]
        bests.append(best)
    a, b = bests
    assert (a["best_trial"], a["params"], a["best_value"]) == (
        b["best_trial"], b["params"], b["best_value"])
    assert set(a["params"]) == set(SPACE) and 0 < a["best_value"] <= 1
    assert a["model_options"] == {k: a["params"][k] for k in ("hidden_size", "dropout")}
    assert a["train_settings"] == {"lr": a["params"]["lr"]}
    # a rerun of the finished study's worker has nothing to do
    again = run_worker(s, dataset, 0, "again.json")
    assert again["trials_run"] == [] and used(s) == 4


def test_a_trial_that_raises_keeps_the_finished_trials_and_the_rerun_fills_the_budget(
        dataset, monkeypatch):
    s = study(trials=4)
    calls = []
    real = engine.run_training

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("node lost in the middle of trial 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run_training", failing)
    with pytest.raises(RuntimeError, match="node lost"):
        run_worker(s, dataset, 0, "worker.json")
    before = open_study(s).get_trials(deepcopy=False)
    assert [t.state for t in before] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    monkeypatch.setattr(engine, "run_training", real)
    run_worker(s, dataset, 0, "worker.json")
    after = open_study(s).get_trials(deepcopy=False)
    assert [(t.number, t.params, t.value) for t in after[:2]] == [
        (t.number, t.params, t.value) for t in before[:2]]         # finished trials kept
    assert used(s) == 4 and after[2].state == TrialState.FAIL       # FAIL not counted
    assert best_of(s)["failed"] == 1


def test_the_epoch_hook_prunes_and_a_diverged_trial_is_pruned(dataset, monkeypatch):
    # the engine calls on_epoch after every epoch; raising there ends the run
    seen = []
    with pytest.raises(optuna.TrialPruned):
        def hook(epoch, valid):
            seen.append((epoch, sorted(valid)))
            raise optuna.TrialPruned("stop")
        engine.run_training(toy_data(), "run", "toy_causal", {}, TRAIN, dataset="toy",
                            max_len=20, seed=3, on_epoch=hook)
    assert seen == [(0, sorted(f"{m}@{k}" for k in (5, 10) for m in ("hit", "ndcg", "mrr")))]
    # Optuna's pruner decides after each reported epoch (forced here for trial 1)
    with monkeypatch.context() as patch:
        patch.setattr(optuna.trial.Trial, "should_prune", lambda self: self.number == 1)
        s = study(trials=3)
        run_worker(s, dataset, 0, "worker.json")
    trials = open_study(s).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED,
                                         TrialState.COMPLETE]
    assert list(trials[1].intermediate_values) == [0]                # pruned after epoch 0
    assert list(trials[0].intermediate_values) == [0, 1]
    assert not (s.path / "trials" / "1" / "checkpoint").exists()     # scratch cleaned
    # a trial that diverges (toy option nan_after_calls) is pruned with its reason
    s = study(trials=2, dataset="diverging", space=SPACE | {"nan_after_calls": {"choices": [0]}})
    run_worker(s, dataset, 0, "worker.json")
    trials = open_study(s).get_trials(deepcopy=False)
    assert all(t.state == TrialState.PRUNED and "non-finite" in t.user_attrs["reason"]
               for t in trials) and len(trials) == 2
    with pytest.raises(ValueError, match="all 2 trials were pruned"):
        best_of(s)


# --- several workers, killed workers -----------------------------------------------------------

WORKER = """
import json, sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import toy_models; toy_models.register()
from recbench.tuning.studies import Study
from recbench.tuning.worker import run_worker
print(json.dumps(run_worker(Study(**json.loads({spec!r})), {data!r}, {worker}, {out!r})))
"""


def worker(s: Study, data: Path, i: int, cwd: Path) -> subprocess.Popen:
    code = WORKER.format(tests=str(TESTS), spec=json.dumps(s.as_dict()), data=str(data),
                         worker=i, out=f"worker{i}.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_workers_share_one_study_and_use_the_budget_exactly(dataset, tmp_path):
    s = study(trials=6, workers=2, overrides={"sleep": 0.02})
    procs = [worker(s, dataset, i, tmp_path) for i in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    found = open_study(s).get_trials(deepcopy=False)
    counted = [t for t in found if t.state in tuning.COUNTED]
    assert len(counted) == 6                                      # exactly the budget
    assert {t.user_attrs["worker"] for t in counted} == {0, 1}     # both took trials
    assert all(t.user_attrs.get("surplus") for t in found if t.state == TrialState.FAIL)
    # a worker's summary counts the study's finished trials when that worker stops: one that
    # stops on a surplus slot can do so while the other's last trial still runs (seen under
    # load: 5), so only the worker that stops last must have seen the whole budget
    seen = [json.loads((tmp_path / f"worker{i}.json").read_text())["counted"] for i in range(2)]
    assert max(seen) == 6


def test_a_worker_killed_with_sigkill_resumes_and_keeps_its_finished_trials(dataset, tmp_path):
    s = study(trials=3, overrides={"sleep": 0.02}, train=TRAIN | {"epochs": 4})
    proc = worker(s, dataset, 0, tmp_path)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:   # kill in the second trial, after the first finished
            found = states(s) if (s.path / "journal.log").exists() else {}
            if found.get(1) == TrialState.RUNNING:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = open_study(s).get_trials(deepcopy=False)
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    run_worker(s, dataset, 0, "worker0.json")                    # the rerun of worker 0
    after = open_study(s).get_trials(deepcopy=False)
    assert (after[0].params, after[0].value) == (before[0].params, before[0].value)
    assert after[1].state == TrialState.FAIL and "stopped" in after[1].user_attrs["reason"]
    assert used(s) == 3 and best_of(s)["failed"] == 1


def test_the_journal_lock_of_a_killed_worker_is_released(dataset, monkeypatch):
    s = study(trials=2)
    run_worker(s, dataset, 0, "worker.json")
    journal = (s.path / "journal.log").resolve()
    lock = Path(f"{journal}.lock")
    os.symlink(journal, lock)                 # what a worker killed inside append_logs leaves
    monkeypatch.setattr(tuning, "LOCK_GRACE_S", 3)
    t0 = time.time()
    run_worker(study(trials=3), dataset, 0, "worker.json")
    assert used(s) == 3 and not lock.exists() and time.time() - t0 < 60


def test_a_slot_held_by_another_worker_is_not_taken_and_a_dead_workers_trial_is_freed(
        dataset):
    s = study(trials=2, workers=2)
    found = open_study(s)
    done = found.ask()
    found.tell(done, 0.1)
    held = found.ask()                            # worker 1 runs the last slot
    held.set_user_attr("worker", 1)
    run_worker(s, dataset, 0, "worker0.json")     # worker 0 finds the budget taken
    trials = open_study(s).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING,
                                         TrialState.FAIL]
    assert trials[2].user_attrs["surplus"] and trials[2].params == {}
    # worker 1 was killed: its rerun marks its trial FAIL and runs the last slot itself
    summary = run_worker(s, dataset, 1, "worker1.json")
    assert summary["trials_run"] == [3] and used(s) == 2
    assert open_study(s).get_trials(deepcopy=False)[1].state == TrialState.FAIL


def test_another_config_for_an_existing_study_is_refused(dataset):
    run_worker(study(trials=2), dataset, 0, "worker.json")
    run_worker(study(trials=3), dataset, 0, "worker.json")      # a larger budget continues
    assert used(study()) == 3
    with pytest.raises(ValueError, match=r"another tuning config \(\['seed'\]"):
        run_worker(study(trials=3, seed=4), dataset, 0, "worker.json")


# --- config checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("space, message", [
    ({"dropoutt": {"low": 0.0, "high": 0.5}}, "tuning.space.toy_causal.dropoutt: unknown option"),
    ({"dropout": {"low": 0.5, "high": 0.1}}, "tuning.space.toy_causal.dropout: empty range"),
    ({"dropout": {"low": 0.5, "high": 0.5}}, "tuning.space.toy_causal.dropout: empty range"),
    ({"hidden_size": {"choices": []}}, "tuning.space.toy_causal.hidden_size: empty choices"),
    ({"hidden_size": {"low": 4, "high": 8.5}}, "tuning.space.toy_causal.hidden_size.high"),
    ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "tuning.space.toy_causal.lr: a log range"),
    ({}, "tuning.space.toy_causal: empty search space"),
])
def test_bad_search_space_is_refused_naming_the_key(space, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_space("toy_causal", space)


# --- the workflow ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clone(tmp_path_factory, copy_workflow) -> Path:
    workdir = tmp_path_factory.mktemp("clone")
    copy_workflow(workdir)
    return workdir


def tuned_config(**tuning_changes) -> dict:
    config = yaml.safe_load(TINY.read_text())
    config["run_groups"] = ["tuned"]
    config["groups"] = {"tuned": {"datasets": ["tiny"], "models": ["gru4rec"],
                                  "overrides": [{}, {"tuned": True}]}}
    config["tuning"] = {"trials": 2, "seed": 1, "sampler_startup_trials": 1,
                        "pruner_startup_trials": 1, "pruner_warmup": 0} | tuning_changes
    return config


def snakemake(clone: Path, tmp_path: Path, config: dict, *args: str):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", str(path)]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=600)


GRU_SPACE = {"lr": {"low": 1e-3, "high": 1e-2, "log": True}, "dropout": {"low": 0.0, "high": 0.5}}


@pytest.mark.parametrize("option, spec, message", [
    ("dropoutt", {"low": 0.0, "high": 0.5}, "tuning.space.gru4rec.dropoutt: unknown option"),
    ("dropout", {"low": 0.4, "high": 0.2}, "tuning.space.gru4rec.dropout: empty range"),
    ("hidden_size", {"choices": []}, "tuning.space.gru4rec.hidden_size: empty choices"),
])
def test_config_error_in_a_search_space_fails_the_dry_run_naming_the_key(
        clone, tmp_path, option, spec, message):
    done = snakemake(clone, tmp_path, tuned_config(space={"gru4rec": {option: spec}}), "-n")
    assert done.returncode != 0
    assert message in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]


def test_tuned_variant_needs_a_search_space(clone, tmp_path):
    config = tuned_config()
    config["groups"]["tuned"]["models"] = ["popularity"]
    done = snakemake(clone, tmp_path, config, "-n")
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "groups.tuned.overrides" in said and "search space" in said, said[-2000:]


def test_tuned_runs_train_with_the_best_options_of_their_study(clone, tmp_path):
    # null removes an option of config/config.yaml's gru4rec space (Snakemake merges configs)
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    space = {k: None for k in shipped["tuning"]["space"]["gru4rec"]} | GRU_SPACE
    config = tuned_config(space={"gru4rec": space}, train={"epochs": 1})
    targets = ("reports/tables/tuned.md", "reports/tables/tuning.md")
    dry = snakemake(clone, tmp_path, config, *targets, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    for rule in ("tune_worker", "tune", "tuning_table"):
        assert f"rule {rule}:" in dry.stdout
    done = snakemake(clone, tmp_path, config, *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((clone / "results/tuning/tiny/gru4rec/best.json").read_text())
    assert best["complete"] + best["pruned"] == 2 and set(best["params"]) == set(GRU_SPACE)
    tuned = json.loads((clone / "results/tiny/gru4rec/tuned/L20/seed1/metrics.json").read_text())
    ref = json.loads((clone / "results/tiny/gru4rec/default/L20/seed1/metrics.json").read_text())
    assert tuned["config"]["hyperparameters"]["source"] == "tuned"
    assert ref["config"]["hyperparameters"] == {"source": "reference"}
    assert tuned["config"]["model_config"]["dropout"] == best["params"]["dropout"]
    assert tuned["config"]["train"]["lr"] == best["params"]["lr"]
    assert tuned["config"]["train"]["epochs"] == 2                 # the group's, not the trials'
    table = (clone / "reports/tables/tuning.md").read_text()
    assert "gru4rec" in table and "tuned" in (clone / "reports/tables/tuned.md").read_text()
    for plot in ("history", "importances"):
        assert (clone / f"reports/figures/tuning/tiny/gru4rec_{plot}.png").stat().st_size > 5000
    again = snakemake(clone, tmp_path, config, *targets, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_tuning_table_has_an_html_page_for_the_report(tmp_path):
    from recbench.tuning.report import write_tuning_table

    best = {"dataset": "ml-1m", "model": "sasrec", "best_value": 0.123456, "best_trial": 3,
            "complete": 3, "pruned": 1, "failed": 0, "budget": 4, "wall_seconds": 12.34,
            "params": {"lr": 0.00123, "num_layers": 2}}
    out = {e: tmp_path / f"tuning.{e}" for e in ("md", "csv", "tex", "html")}
    write_tuning_table([best], out["md"], out["csv"], out["tex"], out["html"])
    page = out["html"].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<td>sasrec</td>" in page
    assert "<td>0.1235</td>" in page and "lr=0.00123, num_layers=2" in page
    assert "Equal budget: 4 trials" in page
