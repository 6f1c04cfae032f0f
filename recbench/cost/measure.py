"""The cost of one model at one window length: training step time and memory, FLOPs, inference.

One profile cell = (model, option set, memory policy, max_len, batch size, device). It is
measured on a batch of full-length random sequences (seq_len = max_len: the worst case for
memory), always in a fresh process (`profile_in_subprocess`), so that the peak-memory reading
belongs to that cell alone. What a cell records:

  seconds_per_step    median over `steps` training steps (forward + CE loss over all items +
                      backward + Adam step) after `warmup` untimed ones;
  memory              CPU:  peak resident set size of the process minus its RSS just before
                            the model was built (`peak_rss_mb`: model, optimiser state,
                            activations, allocator slack);
                      CUDA: torch.cuda.max_memory_allocated (`peak_cuda_mb`) and
                            max_memory_reserved (`peak_cuda_reserved_mb`: what RecBole, and
                            so the paper's figures, report);
  saved_activation_mb the distinct tensors autograd keeps for backward in one training forward
                      (parameters not counted): where two implementations of one model differ
                      in memory, this says whether the activations they keep are the cause;
  flops_per_sequence  torch.utils.flop_counter.FlopCounterMode over one forward (encoder +
                      read-out) of ONE sequence of length max_len: the quantity RecBole's
                      `get_flops` reports (42,841,664 for RecGRELA on ML-1M at L=200 in the
                      reference log; FlopCounterMode counts matmuls only, 2 FLOPs per MAC);
  users_per_second    full-ranking inference (`full_sort_predict`, no grad) on the batch;
  predict_latency_ms  one user's next-item scores at history length max_len (batch 1, no grad),
                      recomputing the whole window;
  stream_step_ms      causal models with a streaming API (`init_state` / `step`: RecGRELA with
                      causal=True): one appended item and its scores for one user, an O(1)
                      state update whatever the history length. Other causal models have no
                      such API here, so they have only predict_latency_ms.

Memory policy: `stored` trains as the reference code does (every activation kept for backward);
`recompute` switches on activation recomputation (`recompute=True`) in models that have it (in
this suite RecGRELA only). RecGRELA's own default is `recompute=True`, so the `stored` policy
sets it to False: figures compare models under one policy and label the other.

A cell that runs out of memory (a failed allocation, the CPU address-space cap, the OOM killer)
or over its time limit is returned with status `oom` or `timeout` and the limit as its reason,
never raised: the workflow records it as a cell and goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from recbench.cost.grid import POLICIES, supports_recompute
from recbench.external.authors_code import ReferenceModel
from recbench.external.catalogue import PREFIX as REFERENCE_PREFIX
from recbench.runtime import flush_subnormals, is_out_of_memory
from recbench.training.engine import build_for_run


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable real numbers: a complex parameter counts twice (LRURec: the authors keep its
    recurrence complex, ours keeps real and imaginary parts apart)."""
    return sum(p.numel() * (2 if p.is_complex() else 1)
               for p in model.parameters() if p.requires_grad)


def saved_activation_mb(model, item_seq, seq_len, target) -> float:
    """MB of the distinct storages autograd saves for backward in one forward + loss (a tensor
    saved by several ops, or views of one storage, count once; parameters never)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.calculate_loss(item_seq, seq_len, target)
    return sum(saved.values()) / 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _median_seconds(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_cell(model: str, max_len: int, batch_size: int, *, n_items: int = 3417,
                 overrides: dict | None = None, policy: str = "stored", steps: int = 3,
                 warmup: int = 1, device: str = "cpu", seed: int = 0) -> dict:
    """Measure one cell in this process (see the module docstring for each field)."""
    if policy not in POLICIES:
        raise ValueError(f"memory policy must be one of {POLICIES}, got {policy!r}")
    options = dict(overrides or {})
    model_name = model
    if supports_recompute(model_name):
        options["recompute"] = policy == "recompute"
    elif policy == "recompute":
        raise ValueError(f"model {model_name!r} has no activation recomputation (`recompute`)")
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    flush_subnormals()      # as training does (recbench/runtime.py)

    torch.manual_seed(seed)
    if model_name.startswith(REFERENCE_PREFIX):
        def build(n_items, max_len):
            return ReferenceModel(model_name, n_items, max_len, device=device)
    else:
        def build(n_items, max_len):
            return build_for_run(model_name, n_items, max_len, options)
    build(10, 8)     # a tiny one first: what building imports is not the cell's memory
    rss_before = _rss_mb()
    model = build(n_items, max_len).to(device)
    item_seq = torch.randint(1, n_items, (batch_size, max_len), device=device)
    seq_len = torch.full((batch_size,), max_len, device=device)
    target = torch.randint(1, n_items, (batch_size,), device=device)
    result = {"model": model_name, "overrides": overrides or {}, "policy": policy,
              "max_len": max_len, "batch_size": batch_size, "n_items": n_items,
              "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "params": count_parameters(model)}

    if model.learned:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step():
            optimizer.zero_grad(set_to_none=True)
            model.calculate_loss(item_seq, seq_len, target).backward()
            optimizer.step()

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup):
            train_step()
        sync()
        result["seconds_per_step"] = _median_seconds(train_step, steps, sync)
    # training dominates the peak; read it before inference adds its own buffers
    result["peak_rss_mb"] = _peak_rss_mb() - rss_before
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    if model.learned:        # after the peak reading: one more graph can fragment the heap
        result["saved_activation_mb"] = saved_activation_mb(model, item_seq, seq_len, target)

    model.eval()
    with torch.no_grad():
        one_seq, one_len = item_seq[:1], seq_len[:1]
        with FlopCounterMode(display=False) as counter:
            model.full_sort_predict(one_seq, one_len)
        result["flops_per_sequence"] = counter.get_total_flops()
        predict = lambda: model.full_sort_predict(item_seq, seq_len)  # noqa: E731
        predict()
        result["users_per_second"] = batch_size / _median_seconds(predict, steps, sync)
        latency = lambda: model.full_sort_predict(one_seq, one_len)  # noqa: E731
        latency()
        result["predict_latency_ms"] = 1000 * _median_seconds(latency, max(steps, 5), sync)
        if model.causal and hasattr(model, "init_state"):   # a true O(1) streaming step
            state = [model.init_state(1)]
            item = one_seq[:, 0]

            def stream():
                state[0], hidden = model.step(state[0], item)
                model.score(hidden)
            stream()
            result["stream_step_ms"] = 1000 * _median_seconds(stream, max(steps, 5), sync)
    result["status"] = "ok"
    return result


def _identity(cell: dict) -> dict:
    """The fields naming a cell, with profile_cell's defaults filled in."""
    return {"model": cell["model"], "overrides": cell.get("overrides") or {},
            "policy": cell.get("policy", "stored"), "max_len": cell["max_len"],
            "batch_size": cell["batch_size"], "device": cell.get("device", "cpu")}


def profile_in_subprocess(cell: dict, *, timeout_s: float, memory_limit_gb: float | None = None,
                          threads: int | None = None) -> dict:
    """`profile_cell(**cell)` in a fresh Python process; out of memory and over time come back
    as a cell with status `oom` / `timeout` and the limit in `reason`, other failures as
    `error` with the last line of the traceback.

    `memory_limit_gb` caps the child's address space (CPU only: CUDA cannot run under such a
    cap); a cell that needs more fails its allocation and is recorded as out of memory.
    `threads` sets the child's intra-op threads (default: torch's, all cores).
    """
    cuda = str(cell.get("device", "cpu")).startswith("cuda")
    limit_text = f"{memory_limit_gb:g} GB address space" if memory_limit_gb and not cuda \
        else "device memory"

    def cap_memory():
        if memory_limit_gb and not cuda:
            limit = int(memory_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, "-m", "recbench.cost.measure", json.dumps(cell)]
    base = _identity(cell)
    try:
        env = os.environ | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              preexec_fn=cap_memory, env=env)
    except subprocess.TimeoutExpired:
        return base | {"status": "timeout", "reason": f"over the time limit of {timeout_s:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    if done.returncode == -9:                        # SIGKILL: the kernel's OOM killer
        return base | {"status": "oom", "reason": f"killed (out of memory, {limit_text})"}
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return base | {"status": "error", "reason": last[:300]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Profile one cell (a JSON dict of "
                                     "profile_cell's arguments); prints the result as JSON.")
    parser.add_argument("cell")
    cell = json.loads(parser.parse_args().cell)
    try:
        result = profile_cell(**cell)
    except Exception as err:                         # noqa: BLE001 (sorted below)
        if not is_out_of_memory(err):
            raise
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        where = "device memory" if str(cell.get("device", "")).startswith("cuda") else (
            f"{limit / 2**30:g} GB address space" if limit > 0 else "host memory")
        result = _identity(cell) | {"status": "oom", "reason": f"out of memory ({where})"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
