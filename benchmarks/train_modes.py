"""Training throughput of the engine: `prefix` vs `sequence` mode on ML-100K (not a test).
(Until 3672477 this was benchmarks/train_throughput.py, which now measures every model's step.)

Prints, for one causal model at one max_len on the same data:
  - seconds per epoch and training targets per second in each mode (the number of CE terms
    per epoch is the same in both modes: every training target once);
  - prefix mode's engine overhead: the share of the epoch spent outside the model's
    forward / backward / optimiser step (batch gathering, shuffling, bookkeeping);
  - the achieved GFLOP/s of the model step (FLOPs counted by torch.utils.flop_counter) next
    to this machine's FP32 2048x2048 GEMM rate, measured in the same run.

Absolute times vary from day to day (and with other load on the machine); the targets are
ratios: sequence mode >= 10x faster per epoch than prefix at max_len 50, prefix overhead < 10%.
A prefix epoch on a small CPU takes minutes, so by default it is timed on its first
`--prefix-batches` batches and extrapolated to the whole epoch (said in the output).

    python benchmarks/train_modes.py [--model sasrec] [--max-len 50] [--threads 2]
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from recbench.data.batching import Batches, load_sequence_data, make_split
from recbench.data.preprocess import preprocess
from recbench.data.registry import entry_filter, registry_entry
from recbench.training.engine import build_for_run, epoch_generator

ROOT = Path(__file__).resolve().parents[1]


def gemm_gflops(n: int = 2048, reps: int = 5) -> float:
    """FP32 n x n matmul rate (best of `reps`), GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b                                                   # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_ml100k(mirror: Path):
    """Preprocess the mirror's atomic ml-100k.inter with the data library (RecBole protocol)."""
    processed = ROOT / "data" / "processed" / "ml-100k"
    if (processed / "sequences.parquet").exists():
        return load_sequence_data(processed)
    registry = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    entry = registry_entry(registry, "ml-100k")
    out = Path(tempfile.mkdtemp(prefix="ml100k-"))
    preprocess(mirror / "ml-100k" / entry["mirror_file"], entry["mirror_format"], out,
               entry_filter(entry), entry.get("time_key", "float32"))
    return load_sequence_data(out)


def step_flops(model, batch, mode: str) -> int:
    """FLOPs of one forward + backward of the loss on `batch`."""
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        loss = model.calculate_loss(*batch) if mode == "prefix" else model.sequence_loss(*batch)
        loss.backward()
    return counter.get_total_flops()


def measure(model_name, data, split, max_len, mode, batch_size, max_batches, seed=2020):
    """Time one epoch (or its first `max_batches` batches) with compute timed separately."""
    torch.manual_seed(seed)
    model = build_for_run(model_name, data.n_items, max_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches(data, split, max_len)
    n_examples = batches.n_train(mode)
    n_batches = -(-n_examples // batch_size)
    first = next(batches.train(mode, batch_size, epoch_generator(seed, 99)))
    flops = step_flops(model, first, mode)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss(*batch) if mode == "prefix" else model.sequence_loss(*batch)
        loss.backward()
        optimizer.step()
        loss.item()

    # One warm-up step (allocator, lazy init), then the epoch: the same loop as
    # recbench.training.engine.train_epoch, with the model's part (forward, backward, step) timed alone.
    model.train()
    step(first)
    limit = n_batches if max_batches is None else min(max_batches, n_batches)
    compute = 0.0
    terms = 0
    start = time.perf_counter()
    loader = batches.train(mode, batch_size, epoch_generator(seed, 0))
    for batch in itertools.islice(loader, limit):
        t0 = time.perf_counter()
        step(batch)
        compute += time.perf_counter() - t0
        terms += int((batch[2] > 0).sum())
    total = time.perf_counter() - start
    scale = n_batches / limit
    step_seconds = compute / limit
    return {"mode": mode, "examples": n_examples, "batches": n_batches, "timed_batches": limit,
            "seconds_per_epoch": total * scale, "targets_per_s": terms / total,
            "overhead": (total - compute) / total, "step_seconds": step_seconds,
            "gflop_per_step": flops / 1e9, "step_gflops": flops / 1e9 / step_seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sasrec", help="a causal model from the registry")
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=2048, help="both modes (examples / windows)")
    p.add_argument("--prefix-batches", type=int, default=4,
                   help="time this many prefix batches and extrapolate (0 = the whole epoch)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--mirror", type=Path, default=ROOT.parent / "shared" / "data")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    data = load_ml100k(a.mirror)
    split = make_split(data, a.max_len)
    gemm = gemm_gflops()
    print(f"ML-100K: {data.n_users} users, {data.n_items - 1} items, {len(split.train_pos)} "
          f"training targets; model {a.model}, max_len {a.max_len}, batch {a.batch_size}, "
          f"{a.threads} threads, torch {torch.__version__}")
    print(f"FP32 2048x2048 GEMM: {gemm:.1f} GFLOP/s")
    rows = [measure(a.model, data, split, a.max_len, "prefix", a.batch_size,
                    a.prefix_batches or None),
            measure(a.model, data, split, a.max_len, "sequence", a.batch_size, None)]
    gemm_after = gemm_gflops()
    print(f"FP32 2048x2048 GEMM after the runs: {gemm_after:.1f} GFLOP/s (load drift check)")
    print(f"{'mode':9} {'examples':>9} {'batches':>8} {'timed':>6} {'s/epoch':>9} "
          f"{'targets/s':>10} "
          f"{'overhead':>9} {'s/step':>7} {'GFLOP/step':>11} {'GFLOP/s':>8} {'of GEMM':>8}")
    for r in rows:
        print(f"{r['mode']:9} {r['examples']:9d} {r['batches']:8d} {r['timed_batches']:6d} "
              f"{r['seconds_per_epoch']:9.2f} {r['targets_per_s']:10.0f} {r['overhead']:9.1%} "
              f"{r['step_seconds']:7.3f} {r['gflop_per_step']:11.2f} {r['step_gflops']:8.1f} "
              f"{r['step_gflops'] / gemm:8.1%}")
    prefix, sequence = rows
    print(f"sequence vs prefix: {prefix['seconds_per_epoch'] / sequence['seconds_per_epoch']:.1f}x "
          f"faster per epoch (target >= 10x); prefix engine overhead {prefix['overhead']:.1%} "
          f"(target < 10%)" + ("" if prefix["timed_batches"] == prefix["batches"] else
                               f"; prefix epoch extrapolated from {prefix['timed_batches']} of "
                               f"{prefix['batches']} batches"))


if __name__ == "__main__":
    main()
