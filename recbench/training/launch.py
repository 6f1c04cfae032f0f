"""Start one run's data-parallel ranks (`train.processes: N > 1`) on this node.

    launch(N, ...)      the train rule's script: `torchrun --standalone --nproc-per-node N
                        -m recbench.training.launch SPEC` on this node, and waits
    main(SPEC)          one rank: join the process group (NCCL on GPUs, gloo on the CPU), then
                        recbench.training.engine.train_and_evaluate as one process would

What a rank does differently is in recbench/training/distributed.py.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from recbench.runtime import torch_device
from recbench.training.distributed import TIMEOUT, Group
from recbench.training.engine import train_and_evaluate
from recbench.training.settings import train_settings


def launch(processes: int, *, threads: int, stream=None, **run) -> None:
    """Run `train_and_evaluate(**run)` in `processes` ranks on this node with torchrun
    (`python -m torch.distributed.run --standalone`, a free local port) and wait; their output
    goes to `stream` (the job's log). A failed rank raises RuntimeError naming the exit code."""
    spec = json.dumps({**run, "threads": threads})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
           f"--nproc-per-node={processes}", "-m", "recbench.training.launch", spec]
    # torchrun's default for a rank is 1 thread; give each its share of the job's cores
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // processes))}
    stream = stream or sys.stderr
    stream.flush()
    done = subprocess.run(cmd, env=env, stdout=stream, stderr=stream)
    if done.returncode:
        raise RuntimeError(f"data-parallel training with {processes} processes failed (torchrun "
                           f"exit status {done.returncode}; each rank's error is in the log "
                           "above); a rerun resumes from the last checkpoint")


def main(spec: str) -> None:
    """One rank (started by torchrun): join the group, train, leave."""
    run = json.loads(spec)
    threads = run.pop("threads")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    torch.set_num_threads(max(1, threads // world))
    device = Group(rank, world, local_rank).device(
        torch_device(train_settings(run.get("train_cfg")).device))   # checks the GPU count
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    try:
        train_and_evaluate(**run)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
