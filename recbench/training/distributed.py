"""Data-parallel training (PyTorch DDP) of one run with `train.processes: N > 1`.

    (launching: recbench/training/launch.py starts N ranks with torchrun)
    current()           the Group this process belongs to (rank 0 of 1 without torchrun)

What changes under DDP (recbench/training/engine.py; nothing changes with one process):
  batches   every rank draws the same shuffle (seeded by (seed, epoch)), so all see the same
            global batch of `batch_size` examples; rank r trains on its contiguous shard r of
            the N shards. Its loss is weighted by its share of the batch's loss terms (targets
            != 0) times N, and DDP averages the gradients over the ranks, so every step uses
            the gradient of the global batch's mean loss: one process's step, up to float
            summation order.
  random    each rank re-seeds its RNGs at every epoch from (seed, epoch, rank): dropout masks
            are per rank (so they differ from one process's), and a resumed run needs no
            per-rank RNG state in the checkpoint.
  rank 0    validates (and broadcasts the score, so that every rank stops at the same epoch),
            writes the checkpoint, tests with the best weights and writes the run's files; the
            other ranks return None. Every rank resumes from the same checkpoint/last.pt.
  devices   rank r uses cuda:LOCAL_RANK of the GPUs the job sees (one GPU per process).
  errors    any failure of one rank, out-of-memory included, fails the job (torchrun stops
            the others); a status "oom" is only written by one-process runs.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

# rank 0's validation and test happen while the others wait in a collective
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Group:
    """This process's place among the run's processes."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: cuda:LOCAL_RANK under DDP on GPUs, else `device`."""
        if self.world == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise ValueError(f"train.device {device} names one GPU, but train.processes is "
                             f"{self.world}: use cuda or auto (rank r takes cuda:r)")
        if torch.cuda.device_count() < self.world:
            raise RuntimeError(f"train.processes is {self.world} but this job sees "
                               f"{torch.cuda.device_count()} GPU(s) (CUDA_VISIBLE_DEVICES="
                               f"{os.environ.get('CUDA_VISIBLE_DEVICES')}); ask for one per "
                               "process (config key gpu: true, or the slurm profile)")
        return torch.device("cuda", self.local_rank)

    def shard(self, batch: tuple) -> tuple[tuple, float | torch.Tensor]:
        """This rank's contiguous shard of a global batch (item_seq, seq_len, targets), and
        its share of the batch's loss terms (targets != 0; prefix [B], sequence [B, L])."""
        if self.world == 1:
            return batch, 1.0
        parts = tuple(t.tensor_split(self.world)[self.rank] for t in batch)
        if len(parts[0]) == 0:     # fewer rows than processes: one row, weight 0, keeps DDP in step
            return tuple(t[:1] for t in batch), 0.0
        return parts, (parts[-1] != 0).sum() / (batch[-1] != 0).sum()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of `value` over the ranks (in place)."""
        if self.world > 1:
            dist.all_reduce(value)
        return value

    def broadcast(self, value: float, device: torch.device) -> float:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def epoch_seed(self, seed: int, epoch: int) -> None:
        """Under DDP: seed this rank's RNGs from (seed, epoch, rank) (dropout, masks)."""
        if self.world > 1:
            state = np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]
            torch.manual_seed(int(state))                # CPU and every CUDA device


def current() -> Group:
    """The Group of this process: from the initialised process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Group()
    return Group(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", dist.get_rank())))


class _BatchLoss(nn.Module):
    """The model's batch loss as a forward, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, *batch):
        if self.mode == "prefix":
            return self.model.calculate_loss(*batch)
        return self.model.sequence_loss(*batch)


def batch_loss(model: nn.Module, mode: str, group: Group, device: torch.device):
    """A callable batch -> mean loss: the model's own loss with one process, DDP's wrapper
    of it (gradients averaged over the ranks in backward) with several."""
    module = _BatchLoss(model, mode)
    if group.world == 1:
        return module
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None)
