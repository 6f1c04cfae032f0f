"""The training and evaluation engine every model shares (RecBole's protocol).

One run = (dataset, model, variant, max_len, seed) -> one results folder:

    1. split   RecBole leave-one-out (recbench/data/batching.py); prefix or sequence examples.
    2. train   Adam(lr, weight_decay), CE over all items, shuffled batches; the shuffle of
               epoch e comes from a generator seeded by (seed, e), so resuming needs no shuffle
               state. Non-learned models (Popularity) get `fit(training target counts)`.
    3. valid   every epoch; RecBole's early stopping on `valid_metric`: a score >= the best so
               far is an improvement (a tie moves the best epoch later); stop once
               `stopping_step + 1` consecutive epochs have not improved.
    4. test    the best-validation weights, per-user ranks saved.
   Ranking (valid and test): among all items (`eval_mode: full`, the paper's), or among the
   target and its 100 stored negatives (`uni100` / `pop100`, recbench/data/sampling.py).

Settings: recbench/training/settings.py (`train_settings`: config/schema.yaml's `train` section,
defaults filled). max_len and seed are the run's identity and come as arguments.

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

import dataclasses
import gc
import json
import logging
import math
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch

from models import build_model, model_class
from recbench.data.batching import Batches, SequenceData, load_sequence_data, make_split
from recbench.data.sampling import read_negatives
from recbench.evaluation.metrics import metrics_from_ranks, sampled_target_ranks, target_ranks
from recbench.io import atomic_path
from recbench.runtime import (
    flush_subnormals,
    git_commit,
    is_out_of_memory,
    peak_memory_mb,
    torch_device,
)
from recbench.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    set_rng_state,
    trajectory_keys,
    what_failed,
)
from recbench.training.distributed import Group, batch_loss, current
from recbench.training.settings import TrainSettings, train_settings

log = logging.getLogger("recbench.training.engine")


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


def autocast(device: torch.device, precision: str):
    """bf16 autocast (train.precision: bf16) on the run's device; fp32 = no autocast."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def train_epoch(model, optimizer, batches: Batches, mode: str, batch_size: int,
                generator: torch.Generator, group: Group = Group(),
                loss_of=None, precision: str = "fp32") -> tuple[float, int]:
    """One pass over the shuffled training examples -> (sum of batch-mean losses, n batches).

    The sum of batch means is RecBole's logged "train loss". Under DDP (`group.world` > 1,
    `loss_of` = recbench.training.distributed.batch_loss's wrapper) each rank trains on its shard of
    every global batch, its loss weighted by its share of the batch's terms times the number
    of ranks: DDP's average of the gradients is then the global batch mean's gradient."""
    model.train()
    if loss_of is None:
        loss_of = batch_loss(model, mode, group, batches.device)
    total = torch.zeros((), dtype=torch.float64, device=batches.device)
    n_batches = 0
    for batch in batches.train(mode, batch_size, generator):
        batch, share = group.shard(batch)                  # (batch, 1.0) with one process
        optimizer.zero_grad(set_to_none=True)
        with autocast(batches.device, precision):
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
    items, or, given negatives [U, n] (rows in the split's user order), among 1 + n candidates.

    Always in float32, whatever train.precision: bfloat16 keeps 8 significant bits, so a score
    near 5 is a multiple of 1/32 and several items share the target's score, and ties count
    against the target. Ranked in bf16, the same bf16-trained RecGRELA read NDCG@10 0.0456
    instead of 0.0472 (ML-100K, max_len 50), and GRU4Rec 0.0304 instead of 0.0312: a loss of
    the ranking's arithmetic, not of the training."""
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


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0


# --- the run ------------------------------------------------------------------------------

def run_training(data: SequenceData, run_dir: str | Path, model_name: str,
                 overrides: dict | None = None, train_cfg: dict | None = None, *,
                 dataset: str, max_len: int, seed: int, variant: str = "default",
                 progress: bool = False, negatives: dict | None = None,
                 on_epoch=None, hyperparameters: dict | None = None) -> dict:
    """Train, validate and test one run on in-memory `data`; returns metrics.json's content.

    `negatives` ({"valid", "test"}: int arrays [users of the split, n], recbench.data.sampling's
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
        self.device = self.group.device(torch_device(cfg.device))
        flush_subnormals()             # CPU steps several times faster: recbench/runtime.py
        self.train_resolved = {**dataclasses.asdict(cfg), "topk": list(cfg.topk)}
        self.model_config = None       # known once the model is built
        self.compile_seconds = 0.0     # train.compile: the compilation, outside every epoch

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
            ckpt = load_checkpoint(ckpt_path)
            before, now = trajectory_keys(ckpt["resolved"]), trajectory_keys(resolved)
            if before != now:
                diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                raise ValueError(f"{name}: checkpoint {ckpt_path} was made with a different "
                                 f"configuration ({diff} differ); delete it to start over")
            try:
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                set_rng_state(ckpt["rng"], device)
            except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
                raise CheckpointError(ckpt_path, what_failed(err)) from err
            best, cur_step, best_epoch = ckpt["best"], ckpt["cur_step"], ckpt["best_epoch"]
            best_state, history, start = ckpt["best_state"], ckpt["history"], ckpt["epoch"] + 1
            log.info("%s: resuming after epoch %d (best %s %.4f at epoch %s)", name,
                     ckpt["epoch"], cfg.valid_metric, best, best_epoch)
            if ckpt["early_stopped"] or start >= cfg.epochs:
                return history, best_epoch, best_state

        loss_of = batch_loss(model, cfg.mode, group, device)      # DDP's wrapper under DDP
        if cfg.compile:
            loss_of = self._compiled(loss_of, model, batches)
        bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=name,
                   disable=not (self.progress and group.main), dynamic_ncols=True)
        for epoch in bar:
            group.epoch_seed(self.seed, epoch)                     # only under DDP
            t0 = time.perf_counter()
            loss_sum, n_batches = train_epoch(model, optimizer, batches, cfg.mode, cfg.batch_size,
                                              epoch_generator(self.seed, epoch), group, loss_of,
                                              cfg.precision)
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
                        "rng": rng_state(device), "best": best, "cur_step": cur_step,
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

    def _compiled(self, loss_of, model, batches: Batches):
        """torch.compile of the training step, compiled here on one batch of the run's shape
        (forward and backward, no optimiser step), with every RNG state put back and the
        gradients dropped, so that the run's trajectory is an uncompiled one's and the
        compilation is timed on its own (metrics.json compile_seconds)."""
        compiled = torch.compile(loss_of)
        rng = rng_state(self.device)
        batch = next(iter(batches.train(self.cfg.mode, self.cfg.batch_size,
                                        epoch_generator(self.seed, 0))))
        t0 = time.perf_counter()
        with autocast(self.device, self.cfg.precision):
            loss = compiled(*self.group.shard(batch)[0])
        loss.backward()
        self.compile_seconds = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        set_rng_state(rng, self.device)
        log.info("%s: compiled the training step in %.1f s", self.name, self.compile_seconds)
        return compiled

    def _result(self, status, reason, valid, test, history, best_epoch, n_train, n_valid, n_test,
                n_params) -> dict:
        """metrics.json's content: identity and status first, then metrics and provenance."""
        device = self.device
        peak_mb, peak_kind = peak_memory_mb(device)
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
            "compile_seconds": self.compile_seconds,
            "valid_seconds_per_epoch": _mean([h["valid_seconds"] for h in history]),
            "n_train_examples": n_train, "n_valid_users": n_valid, "n_test_users": n_test,
            "peak_memory_mb": peak_mb, "peak_memory_kind": peak_kind, "n_params": n_params,
            "device": str(device) if device.type != "cuda"
            else f"{device} ({torch.cuda.get_device_name(device)})",
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": git_commit(),
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
