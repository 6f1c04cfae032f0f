"""One worker of a study (rule tune_worker), and what a finished study gives (rule tune).

A study lives in results/tuning/{dataset}/{model}/ (Study.path):
    journal.log       optuna.storages.JournalStorage(JournalFileBackend): every trial, shared
                      by the workers (a file lock; the folder must be on a shared file system)
    trials/{number}/  the trial's run folder (the engine's outputs; its checkpoint removed)
    workers/{i}.json  what worker i did (rule tune_worker)
    best.json         the best trial's options (rule tune): the runs of variant `tuned`

A trial is one run of the engine (recbench.training.engine.run_training) at the study's max_len and seed
with the sampled options. Objective: validation NDCG@10 of its best-validation weights
(maximised). After each epoch the engine's `on_epoch` hook reports that epoch's validation
NDCG@10 and MedianPruner may stop the trial (PRUNED). A trial that runs out of memory, diverges,
or whose combination of options the model refuses is PRUNED too, its reason in user attr
"reason": a property of its options, so it spends budget like any trial.

Budget: exactly `trials` trials COMPLETE or PRUNED, with any number of workers.
- optuna's MaxTrialsCallback(trials, states=(COMPLETE, PRUNED)) stops a worker once they exist;
- a trial first takes a slot: if COMPLETE, PRUNED and RUNNING trials with smaller numbers fill
  the budget already (another worker holds the last slot), it becomes FAIL with user attr
  "surplus" before any option is sampled, and its worker stops;
- a killed worker leaves its trial RUNNING (a journal has no heartbeat). The rerun of the same
  worker index marks it FAIL before it starts (Snakemake never runs one job twice at once), and
  any worker marks FAIL the RUNNING trials of indices no longer configured, or without a worker
  index after UNOWNED_S seconds (killed before the trial's first step). FAIL trials are never
  counted, so their slot is spent again; every finished trial is in the journal already.
A rerun of a finished study's workers has nothing to do. The sampler is seeded from (seed,
worker, trials in the study when the worker starts): one worker on a fresh study gives the same
trials, best options and value every time.
"""
from __future__ import annotations

import datetime
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from models import model_class
from recbench.data.batching import load_sequence_data
from recbench.data.sampling import read_negatives
from recbench.io import write_json_atomic
from recbench.plan.groups import TUNED, model_defaults
from recbench.training import engine  # engine.run_training: tests replace it
from recbench.training.settings import identifying, train_settings
from recbench.tuning.studies import OBJECTIVE, TRAIN_KEYS, Study

log = logging.getLogger("recbench.tuning.worker")

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
NOT_IDENTITY = ("trials", "workers")         # may change between reruns of one study
RUNTIME_TRAIN = ("device", "eval_batch_size", "restart_bad_checkpoint")   # and these train keys
UNOWNED_S = 60     # a RUNNING trial this old without its worker's name was left by a kill
LOCK_GRACE_S = 30  # a journal lock held this long is a killed worker's: Optuna releases it


def storage(study: Study) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    study.path.mkdir(parents=True, exist_ok=True)
    # an absolute path: the lock is a symlink to the journal, and Optuna releases a dead
    # worker's lock after its grace period only if that link resolves (a relative one dangles)
    path = str((study.path / "journal.log").resolve())
    lock = JournalFileSymlinkLock(path, grace_period=LOCK_GRACE_S)
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=lock))


def _identity(study: Study) -> dict:
    """What a study's trials depend on: stored in the study, checked by every later worker."""
    identity = {k: v for k, v in study.as_dict().items() if k not in NOT_IDENTITY}
    identity["train"] = {k: v for k, v in identifying(identity["train"]).items()
                         if k not in RUNTIME_TRAIN}
    return identity


def open_study(study: Study, worker: int | None = None) -> optuna.Study:
    """The study in its journal (created on first use), checked to be this config's. Given a
    worker index: its stale trials marked FAIL, and a sampler and pruner for that worker."""
    store = storage(study)
    found = optuna.create_study(study_name=study.name, storage=store, direction="maximize",
                                load_if_exists=True)
    identity = _identity(study)
    if "config" not in found.user_attrs:
        found.set_user_attr("config", identity)
    elif found.user_attrs["config"] != identity:
        before = found.user_attrs["config"]
        diff = sorted(k for k in identity if before.get(k) != identity[k])
        raise ValueError(f"study {study.path}: made with another tuning config ({diff} differ); "
                         "delete the folder to start a new study")
    if worker is None:
        return found
    study_id = store.get_study_id_from_name(study.name)
    now = datetime.datetime.now()
    for trial in found.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")     # set as the trial's first step
        if owner == worker or (owner is None and (now - trial.datetime_start).total_seconds()
                               > UNOWNED_S) or (owner is not None and owner >= study.workers):
            trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            store.set_trial_user_attr(trial_id, "reason", f"worker {owner} stopped during the "
                                      f"trial; marked FAIL by worker {worker}")
            store.set_trial_state_values(trial_id, TrialState.FAIL)
            log.warning("%s: trial %d of a stopped worker %s marked FAIL", study.name,
                        trial.number, owner)
    started = len(found.get_trials(deepcopy=False))
    seed = int(np.random.SeedSequence([study.seed, worker, started]).generate_state(1)[0])
    return optuna.load_study(
        study_name=study.name, storage=store,
        sampler=optuna.samplers.TPESampler(seed=seed,
                                           n_startup_trials=study.sampler_startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=study.pruner_startup_trials,
                                           n_warmup_steps=study.pruner_warmup))


def counted(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=COUNTED)


def suggest(trial: optuna.Trial, name: str, spec: dict, default):
    if "choices" in spec:
        return trial.suggest_categorical(name, spec["choices"])
    if isinstance(default, int) and not isinstance(default, bool):
        return trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step") or 1,
                                 log=bool(spec.get("log")))
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                               step=spec.get("step"), log=bool(spec.get("log")))


def split_params(params: dict) -> tuple[dict, dict]:
    """(model options, train settings) of a trial's parameters."""
    return ({k: v for k, v in params.items() if k not in TRAIN_KEYS},
            {k: v for k, v in params.items() if k in TRAIN_KEYS})


class Surplus(Exception):
    """The budget is held by other workers' trials: this trial is not run."""


class _Objective:
    def __init__(self, study: Study, data, negatives, worker: int):
        self.study, self.data, self.negatives, self.worker = study, data, negatives, worker
        self.defaults = model_defaults(study.model) | {k: 0.0 for k in TRAIN_KEYS}
        self.run = []                 # trial numbers this worker ran

    def __call__(self, trial: optuna.Trial) -> float:

        s = self.study
        trial.set_user_attr("worker", self.worker)
        ahead = [t for t in trial.study.get_trials(deepcopy=False,
                                                   states=COUNTED + (TrialState.RUNNING,))
                 if t.number < trial.number]
        if len(ahead) >= s.trials:
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise Surplus(f"the {s.trials} trials of the budget are taken")
        self.run.append(trial.number)
        params = {n: suggest(trial, n, spec, self.defaults[n]) for n, spec in s.space.items()}
        options, train = split_params(params)
        options = s.overrides | options

        def report(epoch: int, valid: dict) -> None:
            trial.report(valid[OBJECTIVE], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: valid {OBJECTIVE} "
                                         f"{valid[OBJECTIVE]:.4f} below the median")

        def pruned(reason: str):
            trial.set_user_attr("reason", reason)
            return optuna.TrialPruned(reason)

        try:
            model_class(s.model).Config(**options)
        except (TypeError, ValueError) as err:
            raise pruned(f"options refused by the model: {err}") from None
        run_dir = s.path / "trials" / str(trial.number)
        try:
            result = engine.run_training(self.data, run_dir, s.model, options, s.train | train,
                                  dataset=s.dataset, max_len=s.max_len, seed=s.seed,
                                  variant=f"trial{trial.number}", negatives=self.negatives,
                                  on_epoch=report,
                                  hyperparameters={"source": "trial", "study": str(s.path),
                                                   "trial": trial.number, "params": params})
        except FloatingPointError as err:            # diverged (too large a learning rate)
            raise pruned(str(err)) from None
        finally:
            shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
        if result["status"] != "ok":
            raise pruned(f"{result['status']}: {result['reason']}")
        return float(result["valid"][OBJECTIVE])


def run_worker(study: Study, dataset_dir: str | Path, worker: int, out: str | Path) -> dict:
    """Worker `worker` of a study: trials until the budget is used; writes `out` (JSON)."""

    t0 = time.perf_counter()
    found = open_study(study, worker)
    objective = None
    if len(counted(found)) < study.trials:
        data = load_sequence_data(dataset_dir)
        mode, negatives = train_settings(study.train).eval_mode, None
        if mode != "full":
            negatives = read_negatives(Path(dataset_dir), mode, data)
        objective = _Objective(study, data, negatives, worker)
        found.optimize(objective, catch=(Surplus,), gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(study.trials, states=COUNTED)])
    summary = {"study": study.name, "worker": worker,
               "trials_run": objective.run if objective else [],
               "counted": len(counted(found)), "budget": study.trials,
               "seconds": time.perf_counter() - t0}
    write_json_atomic(summary, out)
    return summary


# --- results ------------------------------------------------------------------------------

def best_of(study: Study) -> dict:
    """best.json: the best of the budget's trials, the counts and the times; an unfinished
    study (a worker still to rerun) is an error."""
    found = open_study(study)
    trials = found.get_trials(deepcopy=False)
    budget = sorted(counted(found), key=lambda t: t.number)[:study.trials]
    if len(budget) < study.trials:
        raise ValueError(f"study {study.path}: {len(budget)} of {study.trials} trials finished; "
                         "rerun the workflow (its tune_worker jobs continue the study)")
    complete = [t for t in budget if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"study {study.path}: all {len(budget)} trials were pruned (reasons: "
                         f"{sorted({t.user_attrs.get('reason', 'median') for t in budget})})")
    best = max(complete, key=lambda t: (t.value, -t.number))
    options, train = split_params(best.params)
    starts = [t.datetime_start for t in budget if t.datetime_start]
    ends = [t.datetime_complete for t in budget if t.datetime_complete]
    return {
        "study": study.name, "path": str(study.path), "dataset": study.dataset,
        "model": study.model, "objective": f"valid {OBJECTIVE} (max)", "max_len": study.max_len,
        "seed": study.seed, "budget": study.trials, "workers": study.workers,
        "best_trial": best.number, "best_value": best.value, "params": best.params,
        "model_options": options, "train_settings": train,
        "complete": len(complete), "pruned": len(budget) - len(complete),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "wall_seconds": (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0,
        "trial_seconds": sum((t.datetime_complete - t.datetime_start).total_seconds()
                             for t in budget if t.datetime_start and t.datetime_complete),
    }


def tuned_run(best_path: str | Path, overrides: dict, train: dict) -> tuple[dict, dict, dict]:
    """A `tuned` run's (model options, train settings, metrics.json `config.hyperparameters`)
    from its study's best.json, over the run's own options and settings."""
    best = json.loads(Path(best_path).read_text())
    return (dict(overrides) | best["model_options"], dict(train) | best["train_settings"],
            {"source": TUNED, "study": best["path"], "trial": best["best_trial"],
             "value": best["best_value"], "params": best["params"]})

