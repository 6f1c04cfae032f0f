"""Time and memory of one training step (forward + backward + Adam step) of a model.

Run each measurement in a fresh process (`python -m recbench.profiling ...`) so that the
peak-memory reading belongs to that cell alone; benchmark scripts loop over cells with
`profile_in_subprocess`.

Memory is reported two ways:
  CPU:  peak resident set size of the process minus the RSS just before the model was
        built (`peak_rss_mb`: model + optimiser state + activations + allocator slack);
  CUDA: torch.cuda.max_memory_allocated (`peak_cuda_mb`) and max_memory_reserved.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def profile_step(model_name: str, max_len: int, batch_size: int, n_items: int = 3417,
                 steps: int = 3, warmup: int = 1, device: str = "cpu", seed: int = 0,
                 overrides: dict | None = None) -> dict:
    """Mean seconds per training step (after `warmup` steps) and peak memory.

    The batch is full-length sequences (seq_len = max_len): the worst case for memory.
    """
    from models import build_model

    torch.manual_seed(seed)
    rss_before = _rss_mb()
    model = build_model(model_name, n_items, **(overrides or {})).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    item_seq = torch.randint(1, n_items, (batch_size, max_len), device=device)
    seq_len = torch.full((batch_size,), max_len, device=device)
    target = torch.randint(1, n_items, (batch_size,), device=device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss(item_seq, seq_len, target)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    result = {
        "model": model_name, "max_len": max_len, "batch_size": batch_size, "n_items": n_items,
        "device": device, "threads": torch.get_num_threads(), "seconds_per_step": seconds,
        "peak_rss_mb": _peak_rss_mb() - rss_before,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "overrides": overrides or {}, "torch": torch.__version__,
    }
    if device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["peak_cuda_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return result


def profile_in_subprocess(model_name: str, max_len: int, batch_size: int, timeout: float = 1800,
                          **kwargs) -> dict:
    """`profile_step` in a fresh Python process; on failure returns {"error": ...}."""
    cmd = [sys.executable, "-m", "recbench.profiling", "--model", model_name,
           "--max-len", str(max_len), "--batch-size", str(batch_size),
           "--kwargs", json.dumps(kwargs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model_name, "max_len": max_len, "error": f"timeout after {timeout:.0f} s"}
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else done.stderr.strip().splitlines()[-1:]
        return {"model": model_name, "max_len": max_len, "error": str(reason)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-len", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--kwargs", default="{}", help="JSON dict of profile_step keyword arguments")
    args = parser.parse_args()
    print(json.dumps(profile_step(args.model, args.max_len, args.batch_size, **json.loads(args.kwargs))))


if __name__ == "__main__":
    main()
