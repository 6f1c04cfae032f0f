"""The training and full-ranking evaluation engine every model shares (RecBole's protocol).

One run = (dataset, model, max_len, seed) -> `results/{dataset}/{model}/L{max_len}/seed{seed}/`:

    1. split   RecBole leave-one-out (recbench/batching.py); prefix or sequence examples.
    2. train   Adam(lr, weight_decay), CE over all items, shuffled batches; the shuffle of
               epoch e comes from a generator seeded by (seed, e), so resuming needs no shuffle
               state. Non-learned models (Popularity) get `fit(training target counts)`.
    3. valid   full ranking every epoch; RecBole's early stopping on `valid_metric`:
               a score >= the best so far is an improvement (a tie moves the best epoch later);
               stop once `stopping_step + 1` consecutive epochs have not improved.
    4. test    the best-validation weights, full ranking, per-user ranks saved.

Resumable: after every epoch `checkpoint/last.pt` (model, optimiser, RNG states, early-
stopping state, best weights, history) is written atomically. It is not a Snakemake output, so
Snakemake never deletes it; a rerun after a kill continues from the last finished epoch and
ends with the same metrics as an uninterrupted run. `metrics.json` is written last: if it
exists the run is finished and is never retrained.

Outputs (each written to a temporary name, then renamed): metrics.json, history.csv,
test_ranks.parquet, valid_ranks.parquet.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import random
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import build_model, model_class
from recbench.batching import Batches, SequenceData, load_sequence_data, make_split
from recbench.io import atomic_path
from recbench.metrics import metrics_from_ranks, target_ranks

log = logging.getLogger("recbench.engine")

MODES = ("prefix", "sequence")


@dataclass
class TrainConfig:
    """Protocol settings; defaults are the reference run's (PAPER_FACTS §2, §4)."""
    max_len: int = 200              # MAX_ITEM_LIST_LENGTH
    seed: int = 2020
    mode: str = "prefix"            # prefix (RecBole) | sequence (fast, causal models only)
    epochs: int = 300
    stopping_step: int = 20
    batch_size: int = 2048          # examples (prefix) or windows (sequence) per step
    eval_batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    valid_metric: str = "ndcg@10"
    topk: tuple = (5, 10)
    progress: bool = True           # tqdm bar over epochs

    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        """Validated config; unknown keys and bad values raise ValueError naming the key."""
        values = dict(values or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"train config: unknown key(s) {unknown}; known keys: {sorted(known)}")
        if "topk" in values:
            topk = values["topk"]
            topk = [topk] if isinstance(topk, int) else topk
            if (not isinstance(topk, (list, tuple)) or not topk
                    or not all(_is_int(k) and k > 0 for k in topk)):
                raise ValueError(f"train config: 'topk' must be a positive int or a list of them, "
                                 f"got {values['topk']!r}")
            values["topk"] = tuple(topk)
        for key in ("max_len", "seed", "epochs", "stopping_step", "batch_size", "eval_batch_size"):
            if key in values and not _is_int(values[key]):
                raise ValueError(f"train config: {key!r} must be an integer, got {values[key]!r}")
        for key in ("lr", "weight_decay"):
            if key in values:
                if isinstance(values[key], bool) or not isinstance(values[key], (int, float)):
                    raise ValueError(f"train config: {key!r} must be a number, got {values[key]!r}")
                values[key] = float(values[key])
        cfg = cls(**values)
        positive = {"max_len": 1, "epochs": 1, "batch_size": 1, "eval_batch_size": 1,
                    "stopping_step": 0, "seed": 0}
        for key, low in positive.items():
            if getattr(cfg, key) < low:
                raise ValueError(f"train config: {key!r} must be >= {low}, got {getattr(cfg, key)}")
        if cfg.lr <= 0 or cfg.weight_decay < 0:
            raise ValueError(f"train config: need lr > 0 and weight_decay >= 0, got "
                             f"lr={cfg.lr}, weight_decay={cfg.weight_decay}")
        if cfg.mode not in MODES:
            raise ValueError(f"train config: 'mode' must be one of {MODES}, got {cfg.mode!r}")
        metric, _, k = cfg.valid_metric.partition("@")
        if metric not in ("hit", "ndcg", "mrr") or not k.isdigit() or int(k) not in cfg.topk:
            raise ValueError(f"train config: 'valid_metric' must be hit|ndcg|mrr@k with k in topk "
                             f"{list(cfg.topk)}, got {cfg.valid_metric!r}")
        if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
            raise ValueError(f"train config: 'device' must be auto, cpu, cuda or cuda:N, "
                             f"got {cfg.device!r}")
        return cfg

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"train config asks for device {self.device!r} but CUDA is "
                               "not available")
        return torch.device(self.device)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0


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
                generator: torch.Generator) -> tuple[float, int]:
    """One pass over the shuffled training examples -> (sum of batch-mean losses, n batches).

    The sum of batch means is RecBole's logged "train loss"."""
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=batches.device)
    n_batches = 0
    for batch in batches.train(mode, batch_size, generator):
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss(*batch) if mode == "prefix" else model.sequence_loss(*batch)
        loss.backward()
        optimizer.step()
        total += loss.detach()      # stays on the device: no sync per step
        n_batches += 1
    return total.item(), n_batches


@torch.no_grad()
def evaluate(model, batches: Batches, which: str, batch_size: int) -> torch.Tensor:
    """Per-user 1-based target ranks [U] (CPU) over the `valid` or `test` split."""
    model.eval()
    ranks = [target_ranks(model.full_sort_predict(seq, seq_len).float(), target).cpu()
             for seq, seq_len, target in batches.evaluation(which, batch_size)]
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def _atomic(path: Path, write) -> None:
    """Call write(tmp_path) and rename the finished file to `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


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


# --- the run ------------------------------------------------------------------------------

def run_training(data: SequenceData, run_dir: str | Path, model_name: str,
                 model_overrides: dict | None = None, train_cfg: dict | None = None,
                 run_name: str | None = None, dataset: str | None = None) -> dict:
    """Train, validate and test one run on in-memory `data`; returns metrics.json's content."""
    run_dir = Path(run_dir)
    run_name = run_name or str(Path(*run_dir.parts[-4:]))   # dataset/model/L{max_len}/seed{seed}
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        log.info("%s: finished already (%s exists); not retrained", run_name, metrics_path)
        return json.loads(metrics_path.read_text())

    cfg = TrainConfig.from_dict(train_cfg)
    device = cfg.resolved_device()
    seed_everything(cfg.seed)
    split = make_split(data, cfg.max_len)
    if len(split.train_pos) == 0 or len(split.valid_pos) == 0 or len(split.test_pos) == 0:
        raise ValueError(f"{run_name}: the split is empty (train {len(split.train_pos)}, valid "
                         f"{len(split.valid_pos)}, test {len(split.test_pos)} examples); users "
                         "need >= 4 items to give a valid target")
    model = build_for_run(model_name, data.n_items, cfg.max_len, model_overrides).to(device)
    if cfg.mode == "sequence" and not model.causal:
        raise ValueError(f"{run_name}: model {model_name!r} is not causal (hidden[:, t] may see "
                         "later items), so 'sequence' training mode would leak the targets; "
                         "use mode 'prefix'")
    batches = Batches(data, split, cfg.max_len, device)
    resolved = {"model": model_name, "model_config": dataclasses.asdict(model.config),
                "train": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"},
                "n_items": data.n_items, "n_users": data.n_users}
    resolved["train"]["topk"] = list(cfg.topk)
    run_dir.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    history: list[dict] = []
    best_epoch = None
    if not model.learned:
        # Popularity: RecBole's Pop counts the item of every training interaction (target).
        counts = torch.bincount(batches.items[batches.train_pos], minlength=data.n_items)
        model.fit(counts)
    else:
        history, best_epoch, best_state = _fit(model, batches, cfg, run_dir, run_name, resolved)
        model.load_state_dict(best_state)

    valid_ranks = evaluate(model, batches, "valid", cfg.eval_batch_size)
    test_ranks = evaluate(model, batches, "test", cfg.eval_batch_size)
    peak_mb, peak_kind = _peak_memory_mb(device)
    train_seconds = [h["train_seconds"] for h in history]
    result = {
        "run": run_name, "dataset": dataset, "model": model_name,
        "valid": metrics_from_ranks(valid_ranks, cfg.topk),
        "test": metrics_from_ranks(test_ranks, cfg.topk),
        "best_epoch": best_epoch, "epochs_run": len(history),
        "seconds_per_epoch": _mean(train_seconds),
        "seconds_per_epoch_all": train_seconds,
        "valid_seconds_per_epoch": _mean([h["valid_seconds"] for h in history]),
        "n_train_examples": batches.n_train(cfg.mode), "n_valid_users": len(valid_ranks),
        "n_test_users": len(test_ranks),
        "peak_memory_mb": peak_mb, "peak_memory_kind": peak_kind,
        "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "device": str(device) if device.type != "cuda"
        else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "git_commit": _git_commit(),
        "config": resolved,
    }
    _write_outputs(run_dir, data, split, history, valid_ranks, test_ranks, result)
    log.info("%s: test %s", run_name, " ".join(f"{k}={v:.4f}" for k, v in result["test"].items()))
    return result


def _fit(model, batches: Batches, cfg: TrainConfig, run_dir: Path, run_name: str, resolved: dict):
    """The epoch loop with early stopping and per-epoch checkpoints -> (history, best epoch,
    best state dict)."""
    from tqdm.auto import tqdm

    device = batches.device
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_path = run_dir / "checkpoint" / "last.pt"
    best, cur_step, best_epoch, best_state, history, start = -math.inf, 0, None, None, [], 0
    if ckpt_path.exists():
        # onto the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the
        # weights and the optimiser state to the model's device
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        before, now = _trajectory_keys(ckpt["resolved"]), _trajectory_keys(resolved)
        if before != now:
            diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise ValueError(f"{run_name}: checkpoint {ckpt_path} was made with a different "
                             f"configuration ({diff} differ); delete it to start over")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"], device)
        best, cur_step, best_epoch = ckpt["best"], ckpt["cur_step"], ckpt["best_epoch"]
        best_state, history, start = ckpt["best_state"], ckpt["history"], ckpt["epoch"] + 1
        log.info("%s: resuming after epoch %d (best %s %.4f at epoch %s)", run_name, ckpt["epoch"],
                 cfg.valid_metric, best, best_epoch)
        if ckpt["early_stopped"] or start >= cfg.epochs:
            return history, best_epoch, best_state

    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, desc=run_name,
               disable=not cfg.progress, dynamic_ncols=True)
    for epoch in bar:
        t0 = time.perf_counter()
        loss_sum, n_batches = train_epoch(model, optimizer, batches, cfg.mode, cfg.batch_size,
                                          epoch_generator(cfg.seed, epoch))
        train_seconds = time.perf_counter() - t0
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"{run_name}: non-finite training loss ({loss_sum}) at "
                                     f"epoch {epoch}; the run diverged (try a smaller lr); "
                                     "no metrics written")
        t0 = time.perf_counter()
        valid = metrics_from_ranks(evaluate(model, batches, "valid", cfg.eval_batch_size), cfg.topk)
        valid_seconds = time.perf_counter() - t0
        score = valid[cfg.valid_metric]
        best, cur_step, stop, improved = early_stopping(score, best, cur_step, cfg.stopping_step)
        if improved:
            best_epoch = epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        history.append({"epoch": epoch, "loss": loss_sum / n_batches, "loss_sum": loss_sum,
                        "train_seconds": train_seconds, "valid_seconds": valid_seconds,
                        **{f"valid_{k}": v for k, v in valid.items()}})
        ckpt = {"epoch": epoch, "early_stopped": stop, "resolved": resolved,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": _rng_state(device), "best": best, "cur_step": cur_step,
                "best_epoch": best_epoch, "best_state": best_state, "history": history}
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(ckpt_path, lambda tmp: torch.save(ckpt, tmp))
        log.info("%s: epoch %d loss %.4f valid %s %.4f%s (%.1f s train, %.2f s valid)", run_name,
                 epoch, loss_sum / n_batches, cfg.valid_metric, score, " *" if improved else "",
                 train_seconds, valid_seconds)
        bar.set_postfix(loss=f"{loss_sum / n_batches:.4f}", valid=f"{score:.4f}",
                        s_epoch=f"{train_seconds:.1f}")
        if stop:
            break
    bar.close()
    return history, best_epoch, best_state


def _trajectory_keys(resolved: dict) -> dict:
    """Flattened settings a checkpoint's trajectory depends on: all but the epoch cap and the
    evaluation batch size, which may change between a kill and the rerun."""
    flat = {k: v for k, v in resolved.items() if k not in ("train", "model_config")}
    flat.update({f"model_config.{k}": v for k, v in resolved["model_config"].items()})
    flat.update({f"train.{k}": v for k, v in resolved["train"].items()
                 if k not in ("epochs", "eval_batch_size")})
    return flat


def _write_outputs(run_dir: Path, data: SequenceData, split, history, valid_ranks, test_ranks,
                   result) -> None:
    import pandas as pd

    def ranks_frame(users, ranks):
        return pd.DataFrame({"user_id": data.user_ids[users].astype(str), "rank": ranks.numpy()})

    _atomic(run_dir / "history.csv", lambda p: pd.DataFrame(history).to_csv(p, index=False))
    _atomic(run_dir / "valid_ranks.parquet",
            lambda p: ranks_frame(split.valid_user, valid_ranks).to_parquet(p, index=False))
    _atomic(run_dir / "test_ranks.parquet",
            lambda p: ranks_frame(split.test_user, test_ranks).to_parquet(p, index=False))
    # metrics.json last: its existence marks the run as finished.
    _atomic(run_dir / "metrics.json",
            lambda p: p.write_text(json.dumps(result, indent=2, default=str) + "\n"))


def train_and_evaluate(dataset_dir: str | Path, run_dir: str | Path, model_name: str,
                       model_overrides: dict | None = None, train_cfg: dict | None = None) -> dict:
    """Public entry: one run on a processed dataset directory (sequences.parquet + stats.json)."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").exists():
        return run_training(None, run_dir, model_name, model_overrides, train_cfg)
    return run_training(load_sequence_data(dataset_dir), run_dir, model_name, model_overrides,
                        train_cfg, dataset=Path(dataset_dir).name)
