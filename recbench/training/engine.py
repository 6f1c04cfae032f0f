"""The training and evaluation engine every model shares (RecBole's protocol).

One run = (dataset, model, variant, max_len, seed) -> one results folder:

    1. split   RecBole leave-one-out (recbench/training/batching.py); prefix or sequence examples.
    2. train   Adam(lr, weight_decay), CE over all items, shuffled batches; the shuffle of
               epoch e comes from a generator seeded by (seed, e), so resuming needs no shuffle
               state. Non-learned models (Popularity) get `fit(training target counts)`.
    3. valid   every epoch; RecBole's early stopping on `valid_metric`: a score >= the best so
               far is an improvement (a tie moves the best epoch later); stop once
               `stopping_step + 1` consecutive epochs have not improved.
    4. test    the best-validation weights, per-user ranks saved.
   Ranking (valid and test): among all items (`eval_mode: full`, the paper's), or among the
   target and its 100 stored negatives (`uni100` / `pop100`, recbench/evaluation/sampling.py).

Settings: config/schema.yaml's `train` section holds every default and bound; `train_settings`
validates a dict against it (filling defaults, as snakemake's validate does) into a frozen
`TrainSettings`. max_len and seed are the run's identity and come as arguments.

Resumable: after every epoch `checkpoint/last.pt` (model, optimiser, RNG states as tensors and
plain numbers, early-stopping state, best weights, history) is written atomically and read back
with `torch.load(weights_only=True)`, which runs no pickled code. It is not a Snakemake output,
so Snakemake never deletes it; a rerun after a kill continues from the last finished epoch and
ends with the same metrics as an uninterrupted run. A checkpoint that cannot be loaded stops
the job naming its path and what failed, unless `restart_bad_checkpoint: true`.

Outputs (each written to a temporary name, then renamed): metrics.json, history.csv,
test_ranks.parquet, valid_ranks.parquet; metrics.json last: if it exists the run is finished and
is never retrained. metrics.json carries the run's identity (dataset, model, variant, overrides,
max_len, seed) and `status`: "ok", or "oom" when training or evaluation ran out of memory; an
OOM run writes its files with no metrics (empty history and ranks) and returns normally, so that
a workflow goes on and the tables can say "out of memory". Any other error raises.

Data-parallel (`train.processes: N > 1`, launched by recbench/training/distributed.py with torchrun): the
same loop on every rank, each training on its shard of every global batch; rank 0 validates,
checkpoints, tests and writes, and the others return None (see that module's docstring).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import gc
import json
import logging
import math
import os
import platform
import random
import re
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import numpy as np
import torch
import yaml

from models import build_model, model_class
from recbench.training.batching import Batches, SequenceData, load_sequence_data, make_split
from recbench.training.distributed import Group, batch_loss, current
from recbench.io import atomic_path
from recbench.evaluation.metrics import metrics_from_ranks, sampled_target_ranks, target_ranks

log = logging.getLogger("recbench.training.engine")

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
# Settings that may change between a kill and the rerun without changing the trajectory.
NOT_TRAJECTORY = ("epochs", "eval_batch_size", "restart_bad_checkpoint")
CHECKPOINT_KEYS = ("epoch", "early_stopped", "resolved", "model", "optimizer", "rng", "best",
                   "cur_step", "best_epoch", "best_state", "history")


# --- settings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainSettings:
    """Validated `train` settings; config/schema.yaml documents each one and holds its default."""
    mode: str
    epochs: int
    stopping_step: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    device: str
    valid_metric: str
    topk: tuple
    eval_mode: str
    processes: int
    restart_bad_checkpoint: bool


@functools.lru_cache(maxsize=1)
def train_schema() -> dict:
    """The `train` sub-schema of config/schema.yaml."""
    return yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["train"]


def _filling_defaults(validator_class):
    """`validator_class` that also sets each missing property's default (the extension
    snakemake.utils.validate(..., set_default=True) uses)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if validator.is_type(instance, "object"):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


_Validator = _filling_defaults(jsonschema.Draft202012Validator)


def train_settings(values: dict | None) -> TrainSettings:
    """Validate `values` against the train schema (defaults filled) -> TrainSettings.
    Every problem raises one ValueError naming the key (`train.batch_size: ...`)."""
    values = copy.deepcopy(dict(values or {}))
    schema = train_schema()
    errors = sorted(_Validator(schema).iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        def describe(err):
            key = ".".join(["train", *map(str, err.absolute_path)])
            known = f"; known keys: {sorted(schema['properties'])}" \
                if err.validator == "additionalProperties" else ""
            return f"{key}: {err.message}{known}"
        moved = sorted({"max_len", "seed", "progress"} & set(values))
        hint = (f" ({moved}: arguments of train_and_evaluate, the run's identity and a runtime "
                "switch, not train settings)") if moved else ""
        raise ValueError("train config: " + "; ".join(describe(e) for e in errors) + hint)
    # the one cross-field rule the schema cannot say
    k = int(values["valid_metric"].partition("@")[2])
    if k not in values["topk"]:
        raise ValueError(f"train config: train.valid_metric {values['valid_metric']!r} cuts at "
                         f"k={k}, which is not one of train.topk {values['topk']}")
    values.update(topk=tuple(values["topk"]), lr=float(values["lr"]),
                  weight_decay=float(values["weight_decay"]))
    return TrainSettings(**values)


def resolved_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available")
    return torch.device(name)


# --- pieces -------------------------------------------------------------------------------

def build_for_run(model_name: str, n_items: int, max_len: int, overrides: dict | None = None):
    """Build a model for a run: models whose Config has a `max_len` field (position
    embeddings sized by the window) get the run's max_len."""
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(model_class(model_name).Config)}
    if "max_len" in fields:
        if overrides.get("max_len", max_len) != max_len:
            raise ValueError(f"model {model_name!r}: override max_len={overrides['max_len']} "
                             f"conflicts with the run's max_len={max_len}")
        overrides["max_len"] = max_len
    return build_model(model_name, n_items, **overrides)


def early_stopping(value: float, best: float, cur_step: int, stopping_step: int):
    """RecBole 1.2.1 `early_stopping` (bigger is better) -> (best, cur_step, stop, improved)."""
    if value >= best:
        return value, 0, False, True
    cur_step += 1
    return best, cur_step, cur_step > stopping_step, False


def seed_everything(seed: int) -> None:
    """RecBole's init_seed with reproducibility=True."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle of epoch `epoch` depends on (seed, epoch) only."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def train_epoch(model, optimizer, batches: Batches, mode: str, batch_size: int,
                generator: torch.Generator, group: Group = Group(),
                loss_of=None) -> tuple[float, int]:
    """One pass over the shuffled training examples -> (sum of batch-mean losses, n batches).

    The sum of batch means is RecBole's logged "train loss". Under DDP (`group.world` > 1,
    `loss_of` = recbench.training.distributed.batch_loss's wrapper) each rank trains on its shard of
    every global batch, its loss weighted by its share of the batch's terms times the number
    of ranks: DDP's average of the gradients is then the global batch mean's gradient."""
    model.train()
    loss_of = loss_of or batch_loss(model, mode, group, batches.device)
    total = torch.zeros((), dtype=torch.float64, device=batches.device)
    n_batches = 0
    for batch in batches.train(mode, batch_size, generator):
        batch, share = group.shard(batch)                  # (batch, 1.0) with one process
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(*batch)
        (loss if group.world == 1 else loss * (share * group.world)).backward()
        optimizer.step()
        total += loss.detach() * share      # stays on the device: no sync per step
        n_batches += 1
    return group.sum(total).item(), n_batches


@torch.no_grad()
def evaluate(model, batches: Batches, which: str, batch_size: int,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
    """Per-user 1-based target ranks [U] (CPU) over the `valid` or `test` split: among all
    items, or, given negatives [U, n] (rows in the split's user order), among 1 + n candidates."""
    model.eval()
    ranks, lo = [], 0
    for seq, seq_len, target in batches.evaluation(which, batch_size):
        scores = model.full_sort_predict(seq, seq_len).float()             # (B, n_items)
        if negatives is None:
            ranks.append(target_ranks(scores, target).cpu())
        else:
            ranks.append(sampled_target_ranks(scores, target, negatives[lo:lo + len(target)]).cpu())
        lo += len(target)
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


# --- RNG states that torch.load(weights_only=True) reads: tensors and plain numbers ---------

def _rng_state(device: torch.device) -> dict:
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()               # ("MT19937", ...)
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "internal": list(internal),
                        "gauss_next": gauss_next}}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


# --- checkpoints ----------------------------------------------------------------------------

class CheckpointError(RuntimeError):
    """checkpoint/last.pt exists but cannot be resumed from."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what
        super().__init__(f"checkpoint {path} cannot be resumed from ({what}); delete it, or set "
                         "train.restart_bad_checkpoint: true to train this run from scratch")


def _what_failed(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:     # torch's refusal: the useful part is deep inside
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split(". Please use")[0]
        return f"refused by torch.load(weights_only=True): {text}"
    return f"{type(err).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


def _load_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, onto the CPU (the RNG states must stay CPU tensors;
    load_state_dict moves weights and optimiser state to the model's device)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # refused, truncated, not a torch file: the file is the problem
        raise CheckpointError(path, _what_failed(err)) from err
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) \
        else list(CHECKPOINT_KEYS)
    if missing:
        raise CheckpointError(path, f"not a run checkpoint: no {missing}")
    return ckpt


def _trajectory_keys(resolved: dict) -> dict:
    """Flattened settings a checkpoint's trajectory depends on: all but NOT_TRAJECTORY."""
    flat = {k: v for k, v in resolved.items() if k not in ("train", "model_config")}
    flat.update({f"model_config.{k}": v for k, v in resolved["model_config"].items()})
    flat.update({f"train.{k}": v for k, v in resolved["train"].items()
                 if k not in NOT_TRAJECTORY})
    flat.setdefault("train.processes", 1)       # checkpoints from before the key: one process
    return flat


# --- memory -------------------------------------------------------------------------------

_CPU_ALLOC_FAILED = re.compile(r"(can't|cannot|could not|unable to) allocate", re.IGNORECASE)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and bool(_CPU_ALLOC_FAILED.search(str(err))))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0


# --- the run ------------------------------------------------------------------------------

def run_training(data: SequenceData, run_dir: str | Path, model_name: str,
                 overrides: dict | None = None, train_cfg: dict | None = None, *,
                 dataset: str, max_len: int, seed: int, variant: str = "default",
                 progress: bool = False, negatives: dict | None = None,
                 on_epoch=None, hyperparameters: dict | None = None) -> dict:
    """Train, validate and test one run on in-memory `data`; returns metrics.json's content.

    `negatives` ({"valid", "test"}: int arrays [users of the split, n], recbench.evaluation.sampling's
    order) is needed when train.eval_mode is not `full`. `on_epoch(epoch, valid metrics)` is
    called after each finished (checkpointed) epoch on rank 0; an exception it raises ends the
    run (recbench/tuning/studies.py prunes a trial so). `hyperparameters` says where the options came
    from; it lands in metrics.json's `config.hyperparameters` ({"source": "reference"} if
    omitted; {"source": "tuned", ...} for a tuned run)."""
    run_dir = Path(run_dir)
    identity = {"dataset": dataset, "model": model_name, "variant": variant,
                "overrides": dict(overrides or {}), "max_len": int(max_len), "seed": int(seed)}
    run_name = f"{dataset}/{model_name}/{variant}/L{max_len}/seed{seed}"
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        log.info("%s: finished already (%s exists); not retrained", run_name, metrics_path)
        return json.loads(metrics_path.read_text())
    cfg = train_settings(train_cfg)
    group = current()
    if cfg.processes != group.world:
        raise ValueError(f"{run_name}: train.processes is {cfg.processes} but this process is one "
                         f"of {group.world}; launch the run with recbench.training.distributed.launch "
                         "(the train rule does)")
    if (cfg.eval_mode == "full") != (negatives is None):
        raise ValueError(f"{run_name}: train.eval_mode {cfg.eval_mode!r} "
                         + ("needs the stored negatives" if negatives is None
                            else "ranks all items; negatives were given"))
    hooks = {"on_epoch": on_epoch, "hyperparameters": hyperparameters or {"source": "reference"}}
    run = _Run(data, run_dir, identity, run_name, cfg, progress, negatives, **hooks)
    try:
        return run.execute()
    except CheckpointError as bad:
        if not cfg.restart_bad_checkpoint:
            raise
        aside = bad.path.with_name(bad.path.name + ".bad")
        log.warning("%s: %s; train.restart_bad_checkpoint is true: moved to %s, training from "
                    "scratch", run_name, bad.what, aside)
        if group.main:
            os.replace(bad.path, aside)
        group.barrier()                         # no rank looks for last.pt before it is moved
        return _Run(data, run_dir, identity, run_name, cfg, progress, negatives,
                    **hooks).execute()


def train_and_evaluate(dataset_dir: str | Path, run_dir: str | Path, model_name: str,
                       overrides: dict | None = None, train_cfg: dict | None = None, *,
                       max_len: int, seed: int, variant: str = "default",
                       progress: bool = False, hyperparameters: dict | None = None) -> dict:
    """Public entry: one run on a processed dataset directory, data/processed/{dataset}/
    (sequences.parquet, stats.json, and negatives_{mode}.parquet for sampled evaluation)."""
    dataset_dir, run_dir = Path(dataset_dir), Path(run_dir)
    if (run_dir / "metrics.json").exists():
        log.info("%s: finished already; not retrained", run_dir)
        return json.loads((run_dir / "metrics.json").read_text())
    cfg = train_settings(train_cfg)              # a config mistake fails before the data loads
    data = load_sequence_data(dataset_dir)
    negatives = None
    if cfg.eval_mode != "full":
        from recbench.evaluation.sampling import read_negatives
        negatives = read_negatives(dataset_dir, cfg.eval_mode, data)
    return run_training(data, run_dir, model_name, overrides, train_cfg, dataset=dataset_dir.name,
                        max_len=max_len, seed=seed, variant=variant, progress=progress,
                        negatives=negatives, hyperparameters=hyperparameters)


class _Run:
    """One attempt at a run (a bad checkpoint with restart_bad_checkpoint makes a second)."""

    def __init__(self, data, run_dir, identity, run_name, cfg: TrainSettings, progress,
                 negatives, on_epoch=None, hyperparameters=None):
        self.data, self.run_dir, self.identity, self.name = data, run_dir, identity, run_name
        self.cfg, self.progress, self.negatives = cfg, progress, negatives
        self.on_epoch, self.hyperparameters = on_epoch, hyperparameters
        self.max_len, self.seed = identity["max_len"], identity["seed"]
        self.group = current()
        self.device = self.group.device(resolved_device(cfg.device))
        self.train_resolved = {**dataclasses.asdict(cfg), "topk": list(cfg.topk)}
        self.model_config = None       # known once the model is built

    def execute(self) -> dict:
        cfg, data = self.cfg, self.data
        seed_everything(self.seed)
        split = make_split(data, self.max_len)
        if len(split.train_pos) == 0 or len(split.valid_pos) == 0 or len(split.test_pos) == 0:
            raise ValueError(f"{self.name}: the split is empty (train {len(split.train_pos)}, "
                             f"valid {len(split.valid_pos)}, test {len(split.test_pos)} examples); "
                             "users need >= 4 items to give a valid target")
        self.split = split
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            return self._train_and_test()
        except Exception as err:   # noqa: BLE001  (only memory errors are handled)
            if isinstance(err, CheckpointError) or not is_out_of_memory(err):
                raise
            if self.group.world > 1:     # the ranks cannot agree on a status: the job fails
                raise
            text = str(err).strip()
            reason = (f"{text.splitlines()[0] if text else type(err).__name__} (max_len="
                      f"{self.max_len}, batch_size={cfg.batch_size}, eval_batch_size="
                      f"{cfg.eval_batch_size}, mode={cfg.mode})")
        # Outside the except block: the traceback's frames (and their tensors) are gone.
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        log.error("%s: out of memory: %s; writing status 'oom'", self.name, reason)
        result = self._result("oom", reason, {}, {}, [], None, 0, 0, 0, None)
        empty = torch.zeros(0, dtype=torch.long)
        self._write(result, [], empty, empty)
        return result

    def _train_and_test(self) -> dict:
        cfg, data, device = self.cfg, self.data, self.device
        model = build_for_run(self.identity["model"], data.n_items, self.max_len,
                              self.identity["overrides"]).to(device)
        if cfg.mode == "sequence" and not model.causal:
            raise ValueError(f"{self.name}: model {self.identity['model']!r} is not causal "
                             "(hidden[:, t] may see later items), so 'sequence' training mode "
                             "would leak the targets; use mode 'prefix'")
        batches = Batches(data, self.split, self.max_len, device)
        self.model_config = dataclasses.asdict(model.config)
        negatives = self._negatives_on(device)
        history, best_epoch = [], None
        if not model.learned:
            # Popularity: RecBole's Pop counts the item of every training interaction (target).
            counts = torch.bincount(batches.items[batches.train_pos], minlength=data.n_items)
            model.fit(counts)
        else:
            history, best_epoch, best_state = self._fit(model, batches, negatives)
            model.load_state_dict(best_state)
        if not self.group.main:
            return None                         # under DDP, rank 0 tests and writes
        valid_ranks = evaluate(model, batches, "valid", cfg.eval_batch_size, negatives["valid"])
        test_ranks = evaluate(model, batches, "test", cfg.eval_batch_size, negatives["test"])
        result = self._result("ok", None, metrics_from_ranks(valid_ranks, cfg.topk),
                              metrics_from_ranks(test_ranks, cfg.topk), history, best_epoch,
                              batches.n_train(cfg.mode), len(valid_ranks), len(test_ranks),
                              sum(p.numel() for p in model.parameters() if p.requires_grad))
        self._write(result, history, valid_ranks, test_ranks)
        log.info("%s: test %s", self.name,
                 " ".join(f"{k}={v:.4f}" for k, v in result["test"].items()))
        return result

    def _negatives_on(self, device) -> dict:
        """{"valid", "test"}: LongTensor [users of the split, n] on `device`, or None."""
        if self.negatives is None:
            return {"valid": None, "test": None}
        out = {}
        for which, users in (("valid", self.split.valid_user), ("test", self.split.test_user)):
            neg = np.asarray(self.negatives[which])
            if neg.ndim != 2 or len(neg) != len(users):
                raise ValueError(f"{self.name}: {which} negatives have shape {neg.shape}, need "
                                 f"[{len(users)} users, n]")
            out[which] = torch.as_tensor(neg, dtype=torch.long, device=device)
        return out

    def resolved(self) -> dict:
        """The resolved configuration (also what a checkpoint must match to be resumed)."""
        return {"model": self.identity["model"], "model_config": self.model_config,
                "train": self.train_resolved, "max_len": self.max_len, "seed": self.seed,
                "n_items": int(self.data.n_items), "n_users": int(self.data.n_users)}

    def _fit(self, model, batches: Batches, negatives: dict):
        """The epoch loop with early stopping and per-epoch checkpoints -> (history, best
        epoch, best state dict)."""
        from tqdm.auto import tqdm

        cfg, device, name, group = self.cfg, self.device, self.name, self.group
        resolved = self.resolved()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        ckpt_path = self.run_dir / "checkpoint" / "last.pt"
        best, cur_step, best_epoch, best_state, history, start = -math.inf, 0, None, None, [], 0
        if ckpt_path.exists():
            ckpt = _load_checkpoint(ckpt_path)
            before, now = _trajectory_keys(ckpt["resolved"]), _trajectory_keys(resolved)
            if before != now:
                diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                raise ValueError(f"{name}: checkpoint {ckpt_path} was made with a different "
                                 f"configuration ({diff} differ); delete it to start over")
            try:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                _set_rng_state(ckpt["rng"], device)
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
                raise CheckpointError(ckpt_path, _what_failed(err)) from err
            best, cur_step, best_epoch = ckpt["best"], ckpt["cur_step"], ckpt["best_epoch"]
            best_state, history, start = ckpt["best_state"], ckpt["history"], ckpt["epoch"] + 1
            log.info("%s: resuming after epoch %d (best %s %.4f at epoch %s)", name,
                     ckpt["epoch"], cfg.valid_metric, best, best_epoch)
            if ckpt["early_stopped"] or start >= cfg.epochs:
                return history, best_epoch, best_state

        loss_of = batch_loss(model, cfg.mode, group, device)      # DDP's wrapper under DDP
        bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=name,
                   disable=not (self.progress and group.main), dynamic_ncols=True)
        for epoch in bar:
            group.epoch_seed(self.seed, epoch)                     # only under DDP
            t0 = time.perf_counter()
            loss_sum, n_batches = train_epoch(model, optimizer, batches, cfg.mode, cfg.batch_size,
                                              epoch_generator(self.seed, epoch), group, loss_of)
            train_seconds = time.perf_counter() - t0
            if not math.isfinite(loss_sum):
                raise FloatingPointError(f"{name}: non-finite training loss ({loss_sum}) at "
                                         f"epoch {epoch}; the run diverged (try a smaller lr); "
                                         "no metrics written")
            t0 = time.perf_counter()
            valid = {}
            if group.main:                                         # rank 0 validates
                valid = metrics_from_ranks(evaluate(model, batches, "valid", cfg.eval_batch_size,
                                                    negatives["valid"]), cfg.topk)
            valid_seconds = time.perf_counter() - t0
            score = group.broadcast(valid.get(cfg.valid_metric, math.nan), device)
            best, cur_step, stop, improved = early_stopping(score, best, cur_step,
                                                            cfg.stopping_step)
            if improved:
                best_epoch = epoch
                best_state = {k: v.detach().to("cpu", copy=True)
                              for k, v in model.state_dict().items()}
            history.append({"epoch": epoch, "loss": loss_sum / n_batches, "loss_sum": loss_sum,
                            "train_seconds": train_seconds, "valid_seconds": valid_seconds,
                            **{f"valid_{k}": v for k, v in valid.items()}})
            if group.main:                                         # rank 0 checkpoints
                ckpt = {"epoch": epoch, "early_stopped": stop, "resolved": resolved,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(device), "best": best, "cur_step": cur_step,
                        "best_epoch": best_epoch, "best_state": best_state, "history": history}
                with atomic_path(ckpt_path) as tmp:
                    torch.save(ckpt, tmp)
            log.info("%s: epoch %d loss %.4f valid %s %.4f%s (%.1f s train, %.2f s valid)", name,
                     epoch, loss_sum / n_batches, cfg.valid_metric, score,
                     " *" if improved else "", train_seconds, valid_seconds)
            bar.set_postfix(loss=f"{loss_sum / n_batches:.4f}", valid=f"{score:.4f}",
                            s_epoch=f"{train_seconds:.1f}")
            if self.on_epoch is not None and group.main:
                self.on_epoch(epoch, valid)        # may raise: e.g. a pruned tuning trial
            if stop:
                break
        bar.close()
        return history, best_epoch, best_state

    def _result(self, status, reason, valid, test, history, best_epoch, n_train, n_valid, n_test,
                n_params) -> dict:
        """metrics.json's content: identity and status first, then metrics and provenance."""
        device = self.device
        peak_mb, peak_kind = _peak_memory_mb(device)
        train_seconds = [h["train_seconds"] for h in history]
        config = self.resolved() if self.model_config is not None else {
            "model": self.identity["model"], "train": self.train_resolved,
            "max_len": self.max_len, "seed": self.seed}
        return {
            **self.identity, "status": status, "reason": reason, "run": self.name,
            "eval_mode": self.cfg.eval_mode,
            "valid": valid, "test": test,
            "best_epoch": best_epoch, "epochs_run": len(history),
            "seconds_per_epoch": _mean(train_seconds),
            "seconds_per_epoch_all": train_seconds,
            "valid_seconds_per_epoch": _mean([h["valid_seconds"] for h in history]),
            "n_train_examples": n_train, "n_valid_users": n_valid, "n_test_users": n_test,
            "peak_memory_mb": peak_mb, "peak_memory_kind": peak_kind, "n_params": n_params,
            "device": str(device) if device.type != "cuda"
            else f"{device} ({torch.cuda.get_device_name(device)})",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": _git_commit(),
            "config": config | ({"hyperparameters": self.hyperparameters}
                                if self.hyperparameters else {}),
        }

    def _write(self, result, history, valid_ranks, test_ranks) -> None:
        import pandas as pd

        run_dir, data, split = self.run_dir, self.data, self.split
        metric_names = [f"{m}@{k}" for k in self.cfg.topk for m in ("hit", "ndcg", "mrr")]
        columns = ["epoch", "loss", "loss_sum", "train_seconds", "valid_seconds",
                   *(f"valid_{m}" for m in metric_names)]

        def ranks_frame(users, ranks):
            users = users[:len(ranks)]                     # none at all after an OOM
            return pd.DataFrame({"user_id": pd.Series(data.user_ids[users].astype(str),
                                                      dtype=object),
                                 "rank": ranks.numpy().astype(np.int64)})

        with atomic_path(run_dir / "history.csv") as tmp:
            pd.DataFrame(history, columns=columns).to_csv(tmp, index=False)
        for which, users, ranks in (("valid", split.valid_user, valid_ranks),
                                    ("test", split.test_user, test_ranks)):
            with atomic_path(run_dir / f"{which}_ranks.parquet") as tmp:
                ranks_frame(users, ranks).to_parquet(tmp, index=False)
        # metrics.json last: its existence marks the run as finished.
        with atomic_path(run_dir / "metrics.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
