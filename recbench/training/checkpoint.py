"""checkpoint/last.pt: what a run writes after every epoch and reads back on a rerun.

Model, optimiser, RNG states as tensors and plain numbers, early-stopping state, best weights
and history, read with `torch.load(weights_only=True)`, which runs no pickled code. A checkpoint
resumes only a run whose trajectory settings match (`trajectory_keys`); one that cannot be
loaded raises CheckpointError naming its path and what failed.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from recbench.training.settings import ADDED_AFTER_RUNS

# Settings that may change between a kill and the rerun without changing the trajectory.
NOT_TRAJECTORY = ("epochs", "eval_batch_size", "restart_bad_checkpoint")
# Settings added after checkpoints existed, at the value those checkpoints were made with.
ADDED_LATER = {"train.processes": 1} | {f"train.{k}": v for k, v in ADDED_AFTER_RUNS.items()}
CHECKPOINT_KEYS = ("epoch", "early_stopped", "resolved", "model", "optimizer", "rng", "best",
                   "cur_step", "best_epoch", "best_state", "history")


def rng_state(device: torch.device) -> dict:
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


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointError(RuntimeError):
    """checkpoint/last.pt exists but cannot be resumed from."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what
        super().__init__(f"checkpoint {path} cannot be resumed from ({what}); delete it, or set "
                         "train.restart_bad_checkpoint: true to train this run from scratch")


def what_failed(err: BaseException) -> str:
    text = str(err)
    if "WeightsUnpickler error:" in text:     # torch's refusal: the useful part is deep inside
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split(". Please use")[0]
        return f"refused by torch.load(weights_only=True): {text}"
    return f"{type(err).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's dict, onto the CPU (the RNG states must stay CPU tensors;
    load_state_dict moves weights and optimiser state to the model's device)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # refused, truncated, not a torch file: the file is the problem
        raise CheckpointError(path, what_failed(err)) from err
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) \
        else list(CHECKPOINT_KEYS)
    if missing:
        raise CheckpointError(path, f"not a run checkpoint: no {missing}")
    return ckpt


def trajectory_keys(resolved: dict) -> dict:
    """Flattened settings a checkpoint's trajectory depends on: all but NOT_TRAJECTORY."""
    flat = {k: v for k, v in resolved.items() if k not in ("train", "model_config")}
    flat.update({f"model_config.{k}": v for k, v in resolved["model_config"].items()})
    flat.update({f"train.{k}": v for k, v in resolved["train"].items()
                 if k not in NOT_TRAJECTORY})
    for key, value in ADDED_LATER.items():      # checkpoints from before the key
        flat.setdefault(key, value)
    return flat
