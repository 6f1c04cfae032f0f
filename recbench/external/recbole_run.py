"""RecBole 1.2.1's own models on the suite's processed data, written in the results contract.

This module runs in its own environment (envs/recbole-requirements.txt; RecBole 1.2.1 does not
import under NumPy 2), started by rules/external_recbole.smk through scripts/external_recbole.py.
Of the suite it imports only recbench.evaluation.metrics and recbench.io (torch, numpy, pyarrow).

    1. data   sequences.parquet -> {work}/recbench/recbench.inter, a RecBole atomic file with
              one line per (user, item) in the suite's chronological order and timestamp = the
              item's position in its user's sequence: RecBole's sort on (user, timestamp) then
              gives exactly our order (no ties, no float32 rounding). Every filter is off
              ("[0,inf)"), so RecBole keeps every interaction; the dataset is named `recbench`
              so that no built-in property file (RecBole ships one for ml-100k) applies.
    2. train  RecBole's own pipeline: Config, create_dataset, data_preparation, the model class,
              Trainer.fit: its prefix augmentation, time-ordered leave-one-out
              (LS valid_and_test, TO, the last item = test, second-to-last = valid), CE over all
              items, early stopping on the validation metric, all as in the reference configs.
    3. test   the best-validation weights: RecBole's own evaluator on its test loader
              (`recbole_test` in metrics.json), and the per-user 1-based ranks of the test
              target from the model's full_sort_predict scores with the suite's tie rule
              (recbench.evaluation.metrics.target_ranks): `test` and test_ranks.parquet, as the engine
              writes them, so the paired tests compare like with like. The same for `valid`.

The checkpoint. RecBole's Trainer saves {config, state_dict, optimizer, ...} with torch.save
whenever the validation score improves, and `evaluate(load_best_model=True)` reads it back with
a bare torch.load, which torch >= 2.6 refuses (weights_only=True is the default and the file
holds a pickled Config). We do not patch torch.load: our Trainer subclass overrides
`_save_checkpoint` to keep a CPU copy of the state dict in memory, and the best weights are
restored from it with load_state_dict; nothing is pickled or unpickled, and nothing is written
to disk. So a killed job restarts from epoch 0 (the suite's engine resumes; this rule does not).

Anomaly detection. Importing RecBole 1.2.1's sequential models (its package __init__ imports
sine.py, which calls torch.autograd.set_detect_anomaly(True) at import) switches autograd's
anomaly detection on for the whole process: no number changes, but every op records a stack
trace (GRU4Rec's steps ran about 10x slower). The runner switches it off again once the model
is built and says so in metrics.json (`anomaly_detection_switched_off`).

RecBole rounds its evaluator's results to metric_decimal_place (4, as the reference configs),
and early-stops on the rounded validation score; `recbole_valid` / `recbole_test` are those
rounded values, `valid` / `test` the unrounded means of the per-user ranks.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from recbench.evaluation.metrics import metrics_from_ranks, target_ranks
from recbench.external.authors_code import COMMIT, reference_class, reference_options
from recbench.io import atomic_path
from recbench.runtime import git_commit, is_out_of_memory, peak_memory_mb

log = logging.getLogger("recbench.external.recbole_run")

DATASET = "recbench"        # RecBole's dataset name: no built-in properties file has it
# our train settings -> RecBole's config keys
TRAIN_KEYS = {"epochs": "epochs", "stopping_step": "stopping_step",
              "batch_size": "train_batch_size", "eval_batch_size": "eval_batch_size",
              "lr": "learning_rate", "weight_decay": "weight_decay"}
# train settings this runner supports only with one value: RecBole trains on prefixes only, and
# its sampled evaluation is not the suite's stored negatives; one process; float32, eager
ONLY = {"mode": "prefix", "eval_mode": "full", "processes": 1, "precision": "fp32",
        "compile": False}
# train settings with no effect here: the device is mapped to gpu_id; no checkpoint is kept
NO_EFFECT = {"device", "restart_bad_checkpoint"}


def write_atomic_inter(sequences_path, inter_path) -> dict:
    """sequences.parquet -> a RecBole atomic .inter (user_id, item_id, timestamp = position).

    Returns {"n_users", "n_interactions"}. Tokens are written as they are (they came from
    tab-separated files and hold no tab or newline).
    """
    table = pq.read_table(sequences_path, columns=["user_id", "item_ids"])
    items = table.column("item_ids").combine_chunks()
    parent = pc.list_parent_indices(items)                               # row of each item
    offsets = items.offsets.to_numpy()
    position = np.arange(len(parent), dtype=np.int64) - offsets[parent.to_numpy()]
    users = pc.take(table.column("user_id").combine_chunks(), parent)
    out = pa.table({"user_id:token": pc.cast(users, pa.string()),
                    "item_id:token": pc.cast(pc.list_flatten(items), pa.string()),
                    "timestamp:float": pa.array(position.astype(np.float64))})
    inter_path = Path(inter_path)
    inter_path.parent.mkdir(parents=True, exist_ok=True)
    with open(inter_path, "wb") as f:          # pyarrow would quote the header's names
        f.write(("\t".join(out.column_names) + "\n").encode())
        pacsv.write_csv(out, f, pacsv.WriteOptions(include_header=False, delimiter="\t",
                                                   quoting_style="none"))
    return {"n_users": table.num_rows, "n_interactions": out.num_rows}


def _gpu_id(device: str) -> str:
    """Our train.device as RecBole's gpu_id (RecBole sets CUDA_VISIBLE_DEVICES to it; ''
    = CPU). auto / cuda keep the visible devices as they are, so a scheduler's choice holds."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device == "cpu":
        return ""
    if device in ("auto", "cuda"):
        return visible if visible is not None else "0"
    index = int(device.split(":")[1])
    return visible.split(",")[index] if visible else str(index)


def recbole_config(spec: dict, train: dict, max_len: int, seed: int, work_dir) -> dict:
    """RecBole's config_dict for one run: the model's options (spec["options"], RecBole's own
    keys), our train settings under RecBole's names, the reference configs' protocol.

    Raises ValueError for a train setting RecBole cannot honour here.
    """
    for key, value in train.items():
        if key in ONLY and value != ONLY[key]:
            raise ValueError(f"train.{key} is {value!r}, but RecBole's runner supports only "
                             f"{ONLY[key]!r} (recbench/external/recbole_run.py)")
        if key not in TRAIN_KEYS and key not in ONLY and key not in NO_EFFECT | {
                "valid_metric", "topk"}:
            raise ValueError(f"train.{key} has no RecBole counterpart in "
                             f"recbench/external/recbole_run.py (map it in TRAIN_KEYS or refuse it)")
    topk = [int(k) for k in train.get("topk", [5, 10])]
    metric, k = train.get("valid_metric", "ndcg@10").split("@")
    if int(k) not in topk:
        raise ValueError(f"train.valid_metric {train['valid_metric']!r} needs k={k} in "
                         f"train.topk {topk}")
    work_dir = Path(work_dir)
    return {
        **spec.get("options", {}),
        **{TRAIN_KEYS[k]: v for k, v in train.items() if k in TRAIN_KEYS},
        "MAX_ITEM_LIST_LENGTH": int(max_len),
        "seed": int(seed), "reproducibility": True,
        "data_path": str(work_dir), "checkpoint_dir": str(work_dir / "saved"),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": {"valid": "full", "test": "full"}},
        "train_neg_sample_args": None, "learner": "adam", "eval_step": 1,
        "metrics": ["Hit", "NDCG", "MRR"], "topk": topk,
        "valid_metric": f"{metric.upper()}@{k}", "valid_metric_bigger": True,
        "gpu_id": _gpu_id(train.get("device", "auto")),
        "show_progress": False, "log_wandb": False, "save_dataset": False,
        "save_dataloaders": False, "worker": 0,
    }


class _NoColour(logging.Formatter):
    """RecBole colours its messages with ANSI codes; the rule's log gets plain text."""

    def format(self, record):
        return re.sub(r"\x1b\[[0-9;]*m", "", super().format(record))


def _trainer_class(base):
    """RecBole's Trainer with the best weights kept in memory and a per-epoch history."""

    class MemoryTrainer(base):
        def __init__(self, config, model):
            super().__init__(config, model)
            self.best_state, self.best_epoch, self.history = None, None, []

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):   # noqa: ARG002
            # called by fit() exactly when validation improved: no torch.save, no file
            self.best_state = {k: v.detach().to("cpu", copy=True)
                               for k, v in self.model.state_dict().items()}
            self.best_epoch = epoch

        def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
            t0 = time.perf_counter()
            loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
            loss_sum = float(sum(loss) if isinstance(loss, tuple) else loss)
            self.history.append({"epoch": epoch_idx, "loss": loss_sum / max(len(train_data), 1),
                                 "loss_sum": loss_sum,
                                 "train_seconds": time.perf_counter() - t0})
            return loss

        def _valid_epoch(self, valid_data, *args, **kwargs):
            t0 = time.perf_counter()
            score, result = super()._valid_epoch(valid_data, *args, **kwargs)
            self.history[-1].update({"valid_seconds": time.perf_counter() - t0,
                                     **{f"valid_{k}": float(v) for k, v in result.items()}})
            return score, result

    return MemoryTrainer


@torch.no_grad()
def _ranks(trainer, loader, dataset):
    """Per-user 1-based target ranks (the suite's tie rule) and user tokens over `loader`."""
    trainer.model.eval()
    trainer.tot_item_num = dataset.item_num
    users, ranks = [], []
    for batch in loader:
        interaction, scores, _, positive_i = trainer._full_sort_batch_eval(batch)
        ranks.append(target_ranks(scores.float(), positive_i.to(scores.device)).cpu())
        users.append(dataset.id2token(dataset.uid_field,
                                      interaction[dataset.uid_field].cpu().numpy()))
    return np.concatenate(users).astype(str), torch.cat(ranks)


def _write_ranks(path: Path, users, ranks) -> None:
    table = pa.table({"user_id": pa.array(list(users), pa.string()),
                      "rank": pa.array(ranks.numpy().astype(np.int64))})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_history(path: Path, history: list[dict], topk) -> None:
    names = [f"{m}@{k}" for k in topk for m in ("hit", "ndcg", "mrr")]
    columns = ["epoch", "loss", "loss_sum", "train_seconds", "valid_seconds",
               *(f"valid_{m}" for m in names)]
    lines = [",".join(columns)] + [",".join("" if h.get(c) is None else repr(h[c])
                                            for c in columns) for h in history]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def run(settings: dict, sequences_path, metrics_path, threads: int = 1) -> dict:
    """Train and test one run with RecBole; write metrics.json, history.csv and the ranks.

    `settings`: {dataset, model, variant, max_len, seed, spec (the model's entry of
    config/external_models.yaml: recbole_model and options, or reference_model: the class of
    the authors' checkout `reference_checkout`, with its config's options), train (the run's
    train settings)}.
    Returns metrics.json's content. A run that runs out of memory gets status "oom".
    """
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    torch.set_num_threads(threads)
    metrics_path = Path(metrics_path).resolve()     # absolute: RecBole runs in `work`
    run_dir = metrics_path.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    spec, train = settings["spec"], settings["train"]
    max_len, seed = int(settings["max_len"]), int(settings["seed"])
    work = run_dir / "recbole_work"      # RecBole's data_path and cwd (it writes log_tensorboard/)
    shutil.rmtree(work, ignore_errors=True)
    config_dict = recbole_config(spec, train, max_len, seed, work)
    counts = write_atomic_inter(Path(sequences_path).resolve(),
                                work / DATASET / f"{DATASET}.inter")
    identity = {k: settings[k] for k in ("dataset", "model", "variant")} | {
        "overrides": {}, "max_len": max_len, "seed": seed}
    checkout = settings.get("reference_checkout")
    checkout = Path(checkout).resolve() if checkout else None     # before the chdir below
    here, argv = os.getcwd(), sys.argv
    os.chdir(work)
    sys.argv = sys.argv[:1]                      # RecBole's Config also reads --key=value args
    try:
        model_class = spec.get("recbole_model")      # a RecBole built-in, by name
        if "reference_model" in spec:                  # the authors' class, from the checkout

            model_class = reference_class(spec["reference_model"], checkout)
            config_dict = reference_options(checkout, spec["reference_model"]) | config_dict
        config = Config(model=model_class, dataset=DATASET, config_dict=config_dict)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        log.info("%s", dataset)
        if (dataset.user_num - 1, dataset.inter_num) != (counts["n_users"],
                                                         counts["n_interactions"]):
            raise ValueError(f"RecBole kept {dataset.user_num - 1} users / {dataset.inter_num} "
                             f"interactions of {counts}: it filtered the suite's data")
        train_data, valid_data, test_data = data_preparation(config, dataset)
        init_seed(config["seed"], config["reproducibility"])
        if isinstance(model_class, str):
            model_class = get_model(config["model"])
        model = model_class(config, train_data._dataset).to(config["device"])
        anomaly = torch.is_anomaly_enabled()
        torch.autograd.set_detect_anomaly(False)     # see the module docstring
        log.info("%s", model)
        trainer = _trainer_class(Trainer)(config, model)
        if config["device"].type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        status, reason = "ok", None
        try:
            _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
            model.load_state_dict(trainer.best_state)      # the best-validation weights
            recbole_test = trainer.evaluate(test_data, load_best_model=False)
            valid_users, valid_ranks = _ranks(trainer, valid_data, dataset)
            test_users, test_ranks = _ranks(trainer, test_data, dataset)
        except Exception as err:   # noqa: BLE001  (only memory errors are handled)
            if not is_out_of_memory(err):
                raise
            status = "oom"
            reason = (f"{str(err).strip().splitlines()[0]} (max_len={max_len}, batch_size="
                      f"{config['train_batch_size']}, eval_batch_size="
                      f"{config['eval_batch_size']})")
            log.error("out of memory: %s; writing status 'oom'", reason)
            best_valid = recbole_test = {}
            valid_users = test_users = np.array([], dtype=str)
            valid_ranks = test_ranks = torch.zeros(0, dtype=torch.long)
        device = config["device"]
    finally:
        os.chdir(here)
        sys.argv = argv
    topk = config_dict["topk"]
    history = trainer.history
    train_seconds = [h["train_seconds"] for h in history]
    peak = peak_memory_mb(device)
    ok = status == "ok"
    result = {
        **identity, "status": status, "reason": reason,
        "run": f"{settings['dataset']}/{settings['model']}/{settings['variant']}/L{max_len}/"
               f"seed{seed}",
        "eval_mode": "full",
        "valid": metrics_from_ranks(valid_ranks, topk) if ok else {},
        "test": metrics_from_ranks(test_ranks, topk) if ok else {},
        "recbole_valid": {k: float(v) for k, v in (best_valid or {}).items()},
        "recbole_test": {k: float(v) for k, v in (recbole_test or {}).items()},
        "best_epoch": trainer.best_epoch, "epochs_run": len(history),
        "seconds_per_epoch": float(np.mean(train_seconds)) if train_seconds else 0.0,
        "seconds_per_epoch_all": train_seconds,
        "valid_seconds_per_epoch": float(np.mean([h.get("valid_seconds", 0.0)
                                                  for h in history])) if history else 0.0,
        "n_valid_users": len(valid_ranks), "n_test_users": len(test_ranks),
        "peak_memory_mb": peak[0], "peak_memory_kind": peak[1],
        # real numbers: a complex parameter (the authors' LRURec) counts twice
        "n_params": sum(p.numel() * (2 if p.is_complex() else 1)
                        for p in model.parameters() if p.requires_grad),
        "device": str(device) if device.type != "cuda"
        else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(), "framework": f"RecBole {recbole.__version__}",
        "anomaly_detection_switched_off": anomaly,
        "recbole_model": spec.get("reference_model", spec.get("recbole_model")),
        **({"reference_commit": COMMIT} if "reference_model" in spec else {}),
        "torch": torch.__version__,
        "numpy": np.__version__, "python": platform.python_version(),
        "git_commit": git_commit(),
        "config": {"model": settings["model"], "spec": spec, "train": train,
                   "max_len": max_len, "seed": seed, "recbole": _plain(config_dict)},
    }
    _write_history(run_dir / "history.csv", history, topk)
    _write_ranks(run_dir / "valid_ranks.parquet", valid_users, valid_ranks)
    _write_ranks(run_dir / "test_ranks.parquet", test_users, test_ranks)
    shutil.rmtree(work, ignore_errors=True)
    with atomic_path(metrics_path) as tmp:          # last: its existence marks the run finished
        tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if ok:
        log.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in result["test"].items()))
    return result


def _plain(value):
    """config_dict without the run's scratch paths, as JSON."""
    return {k: v for k, v in value.items() if k not in ("data_path", "checkpoint_dir")}


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train one run with RecBole 1.2.1 and write "
                                     "the results contract (recbench/external/recbole_run.py).")
    parser.add_argument("--settings", required=True, help="the run's settings, JSON")
    parser.add_argument("--sequences", required=True, help="data/processed/{dataset}/"
                        "sequences.parquet")
    parser.add_argument("--metrics", required=True, help="the run's metrics.json to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NoColour("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    try:
        run(json.loads(args.settings), args.sequences, args.metrics, args.threads)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"external_recbole: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":      # python -m recbench.external.recbole_run (not a script in scripts/: its
    sys.exit(main())            # folder would come first on sys.path, and scripts/profile.py
                                # shadows the standard library's profile, which torch imports)
