"""Equal-budget hyperparameter search: one Optuna study per (dataset, model).

Config `tuning` (config/schema.yaml): `trials` (the budget: the same for every model), `seed`,
`workers`, `max_len`, `train` (the trials' train settings), TPE's `sampler_startup_trials`,
MedianPruner's `pruner_warmup` and `pruner_startup_trials`, and `space`:
{model: {option: {low, high[, log][, step]} | {choices: [...]}}}, an option being a field of the
model's Config or the train setting lr / weight_decay. check_tuning() refuses, naming the key,
an unknown model or option, an empty range or empty choices, a value the model refuses.

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

import dataclasses
import datetime
import functools
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from models import REGISTRY, model_class
from recbench.plan.groups import TUNED, ConfigError, check_model_options, group_runs, model_defaults
from recbench.io import atomic_path, write_json_atomic

log = logging.getLogger("recbench.tuning.studies")

TRAIN_KEYS = ("lr", "weight_decay")          # train settings a space may search
OBJECTIVE = "ndcg@10"                        # validation metric maximised
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)
ROOT = "results/tuning"
RANGE_KEYS = {"low", "high", "log", "step"}
NOT_IDENTITY = ("trials", "workers")         # may change between reruns of one study
RUNTIME_TRAIN = ("device", "eval_batch_size", "restart_bad_checkpoint")   # and these train keys
UNOWNED_S = 60     # a RUNNING trial this old without its worker's name was left by a kill
LOCK_GRACE_S = 30  # a journal lock held this long is a killed worker's: Optuna releases it


@dataclass(frozen=True)
class Study:
    """One (dataset, model) search, as the tune rules get it (as_dict / from_dict)."""
    dataset: str
    model: str
    max_len: int
    seed: int
    trials: int
    workers: int
    space: dict
    overrides: dict          # model options every trial starts from (config model_overrides)
    train: dict              # train settings of every trial
    sampler_startup_trials: int
    pruner_startup_trials: int
    pruner_warmup: int

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}"

    @property
    def path(self) -> Path:
        return Path(ROOT) / self.dataset / self.model

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> "Study":
        return cls(**values)


# --- config checks (rules/common.smk, at parse time) --------------------------------------

def search_spaces(config: dict) -> dict:
    """config `tuning.space` without its nulls: a config file merged over config/config.yaml
    (Snakemake merges nested keys) removes an option, or a model's space, by setting it null."""
    return {model: {k: v for k, v in space.items() if v is not None}
            for model, space in config.get("tuning", {}).get("space", {}).items()
            if space is not None}


def check_tuning(config: dict, external=()) -> None:
    """Every search space of config `tuning.space`; a mistake raises ConfigError naming its key."""
    for model, space in search_spaces(config).items():
        check_space(model, space, external)


def check_space(model: str, space: dict, external=()) -> None:
    where = f"tuning.space.{model}"
    if model in external:
        raise ConfigError(f"config {where}: {model!r} is an external model; it takes no options")
    if model not in REGISTRY:
        raise ConfigError(f"config {where}: unknown model {model!r}; registered models "
                          f"(models/__init__.py): {sorted(REGISTRY)}")
    if not model_class(model).learned:
        raise ConfigError(f"config {where}: model {model!r} is not trained; nothing to tune")
    if not space:
        raise ConfigError(f"config {where}: empty search space")
    defaults = model_defaults(model)
    options = sorted(set(defaults) - {"max_len"})
    for name, spec in space.items():
        key = f"{where}.{name}"
        if name not in options and name not in TRAIN_KEYS:
            raise ConfigError(f"config {key}: unknown option; options of {model!r}: {options}, "
                              f"and the train settings {list(TRAIN_KEYS)}")
        default = 0.0 if name in TRAIN_KEYS else defaults[name]
        for value in _values(spec, key, default):
            if name in TRAIN_KEYS:
                from recbench.training.engine import train_settings
                try:
                    train_settings({name: value})
                except ValueError as err:
                    raise ConfigError(f"config {key}: {value!r} refused: {err}") from None
            else:      # one option at a time, the others at the model's defaults
                check_model_options(model, {name: value}, f"config {key}")


def _values(spec, key: str, default) -> list:
    """The values a spec can take at its ends (a range) or all of them (choices)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"config {key}: a range {{low, high[, log][, step]}} or "
                          f"{{choices: [...]}}, got {spec!r}")
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"}:
            raise ConfigError(f"config {key}: choices take no {sorted(set(spec) - {'choices'})}")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"config {key}: empty choices")
        bad = [c for c in choices if not isinstance(c, (type(None), bool, int, float, str))]
        if bad:     # what Optuna's suggest_categorical takes
            raise ConfigError(f"config {key}: choices are null, booleans, numbers or strings; "
                              f"got {bad}")
        return choices
    if set(spec) - RANGE_KEYS or not {"low", "high"} <= set(spec):
        raise ConfigError(f"config {key}: a range has low, high and optional log, step; got "
                          f"{sorted(spec)}")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise ConfigError(f"config {key}: the option is not a number (default {default!r}); "
                          "give choices")
    kind = int if isinstance(default, int) else float
    for part, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or (kind is int and not isinstance(value, int))):
            what = "an integer" if kind is int else "a number"
            raise ConfigError(f"config {key}.{part}: {value!r} is not {what}")
    if low >= high:
        raise ConfigError(f"config {key}: empty range (low {low} >= high {high})")
    if spec.get("log") and (low <= 0 or step is not None):
        raise ConfigError(f"config {key}: a log range needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"config {key}.step: must be > 0, got {step}")
    return [kind(low), kind(high)]


def expand_studies(config: dict, groups: dict) -> dict[tuple[str, str], Study]:
    """{(dataset, model): Study} for every (dataset, model) of a run of variant `tuned`."""
    tuning = config["tuning"]
    pairs = sorted({(run.dataset, run.model) for name in groups
                    for run in group_runs(groups, name) if run.variant == TUNED})
    studies = {}
    for dataset, model in pairs:
        train = config["train"] | config["train_by_dataset"].get(dataset, {}) | tuning["train"]
        from recbench.training.engine import train_settings
        try:
            settings = train_settings(train)
        except ValueError as err:
            raise ConfigError(f"config tuning.train ({dataset}): {err}") from None
        if settings.processes != 1:
            raise ConfigError("config tuning.train.processes: trials run in one process each "
                              f"(run more `tuning.workers` instead), got {settings.processes}")
        if int(OBJECTIVE.partition("@")[2]) not in settings.topk:
            raise ConfigError(f"config tuning.train.topk: the objective is validation "
                              f"{OBJECTIVE}, so topk needs 10; got {list(settings.topk)}")
        studies[dataset, model] = Study(
            dataset=dataset, model=model, max_len=int(tuning["max_len"] or config["max_lens"][0]),
            seed=int(tuning["seed"]), trials=int(tuning["trials"]),
            workers=int(tuning["workers"]), space=search_spaces(config)[model],
            overrides=dict(config["model_overrides"].get(model, {})), train=train,
            sampler_startup_trials=int(tuning["sampler_startup_trials"]),
            pruner_startup_trials=int(tuning["pruner_startup_trials"]),
            pruner_warmup=int(tuning["pruner_warmup"]))
    return studies


# --- the study ------------------------------------------------------------------------------

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
    identity["train"] = {k: v for k, v in identity["train"].items() if k not in RUNTIME_TRAIN}
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
        from recbench.training.engine import run_training

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
            result = run_training(self.data, run_dir, s.model, options, s.train | train,
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
    from recbench.training.batching import load_sequence_data
    from recbench.training.engine import train_settings

    t0 = time.perf_counter()
    found = open_study(study, worker)
    objective = None
    if len(counted(found)) < study.trials:
        data = load_sequence_data(dataset_dir)
        mode, negatives = train_settings(study.train).eval_mode, None
        if mode != "full":
            from recbench.evaluation.sampling import read_negatives
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


def write_table(bests: list[dict], md: str | Path, csv: str | Path, tex: str | Path) -> None:
    """The tuning table: one row per study (pandas: Markdown, CSV, LaTeX)."""
    import pandas as pd

    rows = [{"dataset": b["dataset"], "model": b["model"],
             f"best valid {OBJECTIVE}": round(b["best_value"], 4), "best trial": b["best_trial"],
             "complete": b["complete"], "pruned": b["pruned"], "failed": b["failed"],
             "budget": b["budget"], "wall time (s)": round(b["wall_seconds"], 1),
             "best options": ", ".join(f"{k}={_short(v)}" for k, v in b["params"].items())}
            for b in bests]
    frame = pd.DataFrame(rows)
    note = (f"\nEqual budget: {bests[0]['budget'] if bests else 0} trials (complete + pruned) "
            f"per model; TPE sampler, median pruning per epoch; objective validation "
            f"{OBJECTIVE}. Runs of variant `tuned` train with the best options; `default` is "
            "the reference config.\n")
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(frame.to_markdown(index=False) + "\n" + note)
    with atomic_path(tex) as tmp:
        tmp.write_text(frame.to_latex(index=False, escape=True))


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def plot_study(study: Study, history_png: str | Path, importances_png: str | Path) -> None:
    """Optuna's optimization history and parameter importances (matplotlib) as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from optuna.visualization.matplotlib import (plot_optimization_history,
                                                 plot_param_importances)

    found = open_study(study)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # PED-ANOVA: Optuna's own evaluator (the default fANOVA needs scikit-learn)
    importances = functools.partial(plot_param_importances,
                                    evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    history = "history of complete trials"
    for plot, path, title in ((plot_optimization_history, history_png, history),
                              (importances, importances_png, "parameter importances")):
        try:
            ax = plot(found)
            fig = ax.figure
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few complete trials
            fig, ax = plt.subplots()
            ax.text(0.5, 0.5, f"no {title}:\n{err}", ha="center", va="center", wrap=True)
            ax.set_axis_off()
        if plot is plot_optimization_history:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        fig.set_size_inches(8, 4.5)
        for loc in ("left", "right"):                    # Optuna's own title, replaced
            ax.set_title("", loc=loc)
        ax.set_title(f"{study.name}: {title} (valid {OBJECTIVE}, budget {study.trials} trials)",
                     fontsize=11)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
