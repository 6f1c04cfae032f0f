"""Data-parallel training (recbench/training/distributed.py): the shard weights give the global batch's
gradient (in-process, by hand), two gloo processes started by torchrun give one process's loss
trajectory and metrics, and a DDP run stopped after an epoch resumes to the uninterrupted
result. On the CPU, on a tiny synthetic dataset; each torchrun start costs ~8 s here (torch is
imported by the agent and by each rank)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import toy_models
from toy_models import toy_data

from recbench.data.batching import Batches, make_split
from recbench.data.preprocess import preprocess
from recbench.data.protocol import InterFilter
from recbench.data.synthetic import write_synthetic
from recbench.training.distributed import Group
from recbench.training.engine import (
    build_for_run,
    epoch_generator,
    run_training,
    train_and_evaluate,
)
from recbench.training.launch import launch

toy_models.register()
MODEL = ("gru4rec", {"embedding_size": 16, "hidden_size": 16})
# 1,087 training examples: the last batch of 64 has 63, so the two shards differ in size
CFG = {"epochs": 2, "stopping_step": 5, "batch_size": 64, "eval_batch_size": 64,
       "device": "cpu"}
RUN = {"max_len": 20, "seed": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ddp")
    raw = work / "synthetic.inter"
    write_synthetic(raw, n_users=60, n_items=80, n_clusters=8, median_len=20, min_len=8,
                    long_frac=0.0, max_len=80, seed=7)
    preprocess(raw, "atomic", work / "synthetic", InterFilter(user_min=5, item_min=5), "exact")
    return work / "synthetic"


def one_process(dataset: Path, run_dir: Path, overrides: dict, cfg: dict) -> dict:
    torch.set_num_threads(1)
    return train_and_evaluate(dataset, run_dir, MODEL[0], MODEL[1] | overrides, cfg, **RUN)


def two_processes(dataset: Path, run_dir: Path, overrides: dict, cfg: dict) -> dict:
    """The run with torchrun and 2 gloo ranks; their log lines go to {run_dir}.log."""
    with open(run_dir.with_suffix(".log"), "a") as log:
        launch(2, threads=2, stream=log, dataset_dir=str(dataset), run_dir=str(run_dir),
               model_name=MODEL[0], overrides=MODEL[1] | overrides,
               train_cfg=cfg | {"processes": 2}, **RUN)
    return json.loads((run_dir / "metrics.json").read_text())


def history(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "history.csv")
    return frame[[c for c in frame if not c.endswith("seconds")]]


# --- the shard weights, by hand -------------------------------------------------------------

@pytest.mark.parametrize("mode,batch_size", [("prefix", 9), ("sequence", 8)])
def test_weighted_shards_average_to_the_global_batch_gradient(mode, batch_size):
    """What DDP computes (the mean over 3 ranks of each shard's weighted loss gradient) is the
    gradient of the global batch's mean loss: shards of unequal size, windows of unequal length
    (sequence mode), and a batch of 2 rows, which leaves rank 2 one row of weight 0."""
    data = toy_data(n_users=12, max_len=30)
    batches = Batches(data, make_split(data, 10), 10)
    model = build_for_run("toy_causal", data.n_items, 10, {"dropout": 0.0})
    loss_of = (model.calculate_loss if mode == "prefix" else model.sequence_loss)
    first, *_, last = batches.train(mode, batch_size, epoch_generator(0, 0))
    assert len(last[0]) % 3 and (mode == "prefix" or len(set(first[1].tolist())) > 1)
    for batch in (first, last, tuple(t[:2] for t in first)):
        grads = []
        for rank in range(3):
            shard, share = Group(rank, 3).shard(batch)
            model.zero_grad()
            (loss_of(*shard) * (share * 3)).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        model.zero_grad()
        loss_of(*batch).backward()
        for i, p in enumerate(model.parameters()):
            torch.testing.assert_close(sum(g[i] for g in grads) / 3, p.grad, atol=1e-6, rtol=1e-5)
    assert Group(2, 3).shard(tuple(t[:2] for t in first))[1] == 0.0


def test_processes_must_match_the_process_group(tmp_path):
    with pytest.raises(ValueError, match="train.processes is 2 but this process is one of 1"):
        run_training(toy_data(), tmp_path, "toy_causal", {}, CFG | {"processes": 2},
                     dataset="toy", **RUN)


# --- two gloo processes with torchrun -------------------------------------------------------

def test_two_gloo_processes_match_one_process(dataset, tmp_path):
    """Same global batch (64), no dropout: the same loss at every epoch and the same metrics."""
    no_dropout = {"dropout": 0.0}
    one = one_process(dataset, tmp_path / "one", no_dropout, CFG)
    two = two_processes(dataset, tmp_path / "two", no_dropout, CFG)
    h_one, h_two = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(h_one) == len(h_two) == 2
    pd.testing.assert_frame_equal(h_two, h_one, check_exact=False, rtol=1e-5, atol=1e-6)
    for split in ("valid", "test"):
        assert two[split] == pytest.approx(one[split], abs=1e-6)
    assert two["config"]["train"]["processes"] == 2 and two["best_epoch"] == one["best_epoch"]
    ranks_one = pd.read_parquet(tmp_path / "one" / "test_ranks.parquet")
    ranks_two = pd.read_parquet(tmp_path / "two" / "test_ranks.parquet")
    assert np.abs(ranks_one["rank"] - ranks_two["rank"]).max() <= 1     # float-tie flips at most


def test_ddp_run_stopped_after_an_epoch_resumes_to_the_same_result(dataset, tmp_path):
    """With dropout (per-rank masks, re-seeded each epoch from (seed, epoch, rank)), a run cut
    after epoch 0 (metrics removed, as Snakemake does before a rerun) continues from rank 0's
    checkpoint to exactly the uninterrupted run's history and metrics."""
    whole = two_processes(dataset, tmp_path / "whole", {}, CFG)
    cut_dir = tmp_path / "cut"
    two_processes(dataset, cut_dir, {}, CFG | {"epochs": 1})
    assert torch.load(cut_dir / "checkpoint" / "last.pt", weights_only=True)["epoch"] == 0
    for name in ("metrics.json", "history.csv", "test_ranks.parquet", "valid_ranks.parquet"):
        (cut_dir / name).unlink()
    resumed = two_processes(dataset, cut_dir, {}, CFG)
    assert "resuming after epoch 0" in cut_dir.with_suffix(".log").read_text()
    pd.testing.assert_frame_equal(history(cut_dir), history(tmp_path / "whole"), check_exact=True)
    assert (resumed["valid"], resumed["test"], resumed["best_epoch"]) == (
        whole["valid"], whole["test"], whole["best_epoch"])
