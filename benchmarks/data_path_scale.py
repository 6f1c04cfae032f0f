"""The data path at paper scale: preprocessing, then prefix-mode batches (prints numbers).

Two synthetic tables of the real datasets' shapes, Zipf-like item popularity (p ~ 1/rank^1.1)
and log-normal user lengths:

    ml-32m   32,000,204 ratings, 200,948 users (>= 20 each), 87,585 items; MovieLens
             ratings.csv, timestamps in seconds over 28 years; 5-core filter
    netflix  100,480,507 ratings, 480,189 users, 17,770 items; the `netflix` registry entry's
             RecBole atomic file (item_id first), timestamps in whole days (many ties);
             users >= 50, items in [50, 15000]

Each stage runs in a fresh process and reports its wall time and peak resident memory
(ru_maxrss: the interpreter, torch and the input included):

  preprocess  parse + filter + remap + float32 time order + write parquet/json, both sizes
  data path   ml-32m at max_len 200, prefix mode (RecBole's augmentation, 31.4M examples):
              read sequences.parquet, the leave-one-out split, the Batches (CPU), then one
              epoch of shuffled batches of 2048 gathered by index arithmetic. Materialised
              prefixes would take examples x 200 x 8 bytes; here the examples are positions.
  model step  one training step of `--model` (forward, CE over all items, backward, Adam) on
              batches of that loader, to put the loader's time per batch beside it.

Targets (issue 12): data path peak < 4 GB, loader < 5% of an epoch (loader / (loader + step)),
Netflix-size preprocessing within 24 GB.

    nice python benchmarks/data_path_scale.py [--sizes ml-32m netflix] [--model gru4rec]
        [--workdir /tmp/recbench_scale] [--keep] [--out reports/efficiency/data_path.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

SIZES = {
    "ml-32m": dict(rows=32_000_204, users=200_948, items=87_585, min_len=20, fmt="movielens_csv",
                   filter=dict(user_min=5, item_min=5), file="ratings.csv"),
    "netflix": dict(rows=100_480_507, users=480_189, items=17_770, min_len=1, fmt="atomic",
                    filter=dict(user_min=50, item_min=50, item_max=15000), file="netflix.inter"),
}
MAX_LEN, BATCH = 200, 2048


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20          # KiB -> GiB


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


# --- the synthetic tables -------------------------------------------------------------------

def make_table(name: str, path: Path, seed: int = 0) -> None:
    """Write a table of `name`'s shape: users in file order (as both files are), Zipf items."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    s = SIZES[name]
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.normal(np.log(60), 1.2, s["users"]))
    lengths = s["min_len"] + lengths / lengths.sum() * (s["rows"] - s["min_len"] * s["users"])
    lengths = np.floor(lengths).astype(np.int64)
    lengths[: s["rows"] - lengths.sum()] += 1                             # sum to rows exactly
    user = np.repeat(np.arange(1, s["users"] + 1, dtype=np.int32), lengths)
    del lengths
    popularity = 1.0 / np.arange(1, s["items"] + 1) ** 1.1
    cdf = np.cumsum(popularity / popularity.sum())
    item = (rng.permutation(s["items"]).astype(np.int32)
            [np.searchsorted(cdf, rng.random(s["rows"]))] + 1)
    rating = (rng.integers(1, 11, s["rows"]) / 2).astype(np.float32)
    if name == "netflix":                          # dates 1998-11 .. 2005-12, as day stamps
        timestamp = rng.integers(10_540, 13_149, s["rows"]) * 86_400
        table = pa.table({"item_id": item, "user_id": user, "rating": rating,
                          "timestamp": timestamp})
        header, delimiter = b"item_id:token\tuser_id:token\trating:float\ttimestamp:float\n", "\t"
    else:
        timestamp = rng.integers(789_652_009, 1_697_164_147, s["rows"])
        table = pa.table({"userId": user, "movieId": item, "rating": rating,
                          "timestamp": timestamp})
        header, delimiter = b"userId,movieId,rating,timestamp\n", ","
    with open(path, "wb") as f:
        f.write(header)
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, delimiter=delimiter,
                                                     quoting_style="none"))


# --- stages (each in its own process) -------------------------------------------------------

def stage_preprocess(name: str, raw: Path, out: Path) -> dict:
    from recbench.data.preprocess import preprocess
    from recbench.data.protocol import InterFilter

    start = time.perf_counter()
    stats = preprocess(raw, SIZES[name]["fmt"], out, InterFilter(**SIZES[name]["filter"]),
                       "float32", source_sha256="not computed")
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_gb(),
            "parquet_mb": (out / "sequences.parquet").stat().st_size / 2**20,
            **{k: stats[k] for k in ("n_users", "n_items", "n_interactions", "filter_rounds")}}


def stage_data_path(processed: Path, fraction: float, threads: int) -> dict:
    import torch

    from recbench.data.batching import Batches, load_sequence_data, make_split
    from recbench.training.engine import epoch_generator

    torch.set_num_threads(threads)
    base = rss_gb()                                          # the interpreter and torch
    t = time.perf_counter()
    data = load_sequence_data(processed)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    split = make_split(data, MAX_LEN)
    batches = Batches(data, split, MAX_LEN, "cpu")
    t_split = time.perf_counter() - t
    n = batches.n_train("prefix")
    n_batches = -(-n // BATCH)
    limit = max(1, int(n_batches * fraction))
    held = rss_gb()
    t = time.perf_counter()
    shapes_ok = True
    for k, (item_seq, seq_len, target) in enumerate(
            batches.train("prefix", BATCH, epoch_generator(2020, 0))):
        shapes_ok &= item_seq.shape[1] == MAX_LEN and len(target) == len(seq_len)
        if k + 1 == limit:
            break
    loader_s = time.perf_counter() - t
    return {"examples": n, "batches": n_batches, "timed_batches": limit, "threads": threads,
            "load_s": t_load, "split_s": t_split, "loader_s": loader_s,
            "ms_per_batch": loader_s / limit * 1e3, "batches_per_s": limit / loader_s,
            "epoch_loader_s": loader_s / limit * n_batches, "base_gb": base, "held_gb": held,
            "peak_gb": peak_gb(), "shapes_ok": bool(shapes_ok),
            "materialised_prefixes_gb": n * MAX_LEN * 8 / 2**30}


def stage_model_step(processed: Path, model_name: str, steps: int, threads: int) -> dict:
    import torch

    from recbench.data.batching import Batches, load_sequence_data, make_split
    from recbench.training.engine import build_for_run, epoch_generator

    torch.set_num_threads(threads)
    data = load_sequence_data(processed)
    batches = Batches(data, make_split(data, MAX_LEN), MAX_LEN, "cpu")
    torch.manual_seed(0)
    model = build_for_run(model_name, data.n_items, MAX_LEN).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    loader = batches.train("prefix", BATCH, epoch_generator(2020, 0))
    for k in range(steps + 1):                                  # the first is a warm-up
        batch = next(loader)
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.calculate_loss(*batch).backward()
        optimizer.step()
        if k:
            times.append(time.perf_counter() - t)
    return {"model": model_name, "step_s": float(np.median(times)), "steps": steps,
            "peak_gb": peak_gb(), "threads": torch.get_num_threads()}


STAGES = {"preprocess": stage_preprocess, "data_path": stage_data_path,
          "model_step": stage_model_step}


def in_fresh_process(stage: str, *args) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, json.dumps([str(a) for a in args])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(stage: str, args: list[str]) -> None:
    if stage == "preprocess":
        out = stage_preprocess(args[0], Path(args[1]), Path(args[2]))
    elif stage == "data_path":
        out = stage_data_path(Path(args[0]), float(args[1]), int(args[2]))
    else:
        out = stage_model_step(Path(args[0]), args[1], int(args[2]), int(args[3]))
    print(json.dumps(out))


# --- report ---------------------------------------------------------------------------------

def report(pre: dict, path: dict | None, step: dict | None) -> list[str]:
    torch_version = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    lines = ["# The data path at paper scale", "",
             f"Measured {time.strftime('%Y-%m-%d')} with `nice python benchmarks/data_path_scale.py` "
             f"on {platform.processor() or platform.machine()} ({os.cpu_count()} cores, "
             f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, shared "
             f"with other jobs), Python {platform.python_version()}, torch {torch_version}. "
             "Synthetic tables of the datasets' shapes (the script's docstring); each stage a fresh "
             "process; peak = ru_maxrss (interpreter, libraries and input included).", "",
             "## Preprocessing (parse, filter, remap, time order, write)", "",
             "| size | rows in | users / items after filter | interactions after | filter rounds "
             "| seconds | peak GiB | sequences.parquet MiB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in pre.items():
        lines.append(f"| {name} | {SIZES[name]['rows']:,} | {r['n_users']:,} / {r['n_items']:,} "
                     f"| {r['n_interactions']:,} | {r['filter_rounds']} | {r['seconds']:.0f} "
                     f"| {r['peak_gb']:.2f} | {r['parquet_mb']:.0f} |")
    if path:
        share = path["ms_per_batch"] / (path["ms_per_batch"] + step["step_s"] * 1e3) if step else None
        lines += ["", f"## Prefix-mode training data, ml-32m, max_len {MAX_LEN}, batch {BATCH} "
                  f"(CPU, {path['threads']} torch thread(s))", "",
                  "| quantity | value |", "|---|---|",
                  f"| training examples (prefixes, never materialised) | {path['examples']:,} |",
                  f"| materialised prefixes would take | {path['materialised_prefixes_gb']:.0f} GiB |",
                  f"| batches per epoch | {path['batches']:,} (timed: {path['timed_batches']:,}) |",
                  f"| read sequences.parquet | {path['load_s']:.1f} s |",
                  f"| split + Batches | {path['split_s']:.1f} s |",
                  f"| RSS: interpreter + torch / with the data held | {path['base_gb']:.2f} / "
                  f"{path['held_gb']:.2f} GiB |",
                  f"| **peak RSS of the data path** (target < 4 GB) | **{path['peak_gb']:.2f} GiB** |",
                  f"| loader alone | {path['batches_per_s']:.0f} batches/s, "
                  f"{path['ms_per_batch']:.1f} ms/batch, {path['epoch_loader_s']:.0f} s/epoch |"]
        if step:
            lines += [f"| {step['model']} training step (forward, CE over all items, backward, "
                      f"Adam; {step['threads']} thread(s), median of {step['steps']}) "
                      f"| {step['step_s'] * 1e3:.0f} ms (peak {step['peak_gb']:.2f} GiB) |",
                      f"| **loader share of an epoch** (target < 5%) | **{share:.2%}** |"]
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--model", default="gru4rec", help="model of the step timing (none = skip)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the loader and the step (1: a shared 2-core machine)")
    p.add_argument("--epoch-fraction", type=float, default=1.0,
                   help="time this fraction of the epoch's batches (the rest extrapolated)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="shrink rows, users and items by this factor (a quick check of the script)")
    p.add_argument("--workdir", default="/tmp/recbench_scale")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--out", type=Path, help="also write the numbers as Markdown here")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return run_child(a.child[0], json.loads(a.child[1]))
    if a.scale != 1.0:
        for s in SIZES.values():
            s.update({k: int(s[k] * a.scale) for k in ("rows", "users", "items")})
    work = Path(a.workdir)
    pre, path, step = {}, None, None
    for name in a.sizes:
        raw = work / name / SIZES[name]["file"]
        raw.parent.mkdir(parents=True, exist_ok=True)
        if not raw.exists():
            t = time.perf_counter()
            make_table(name, raw)
            print(f"generated {raw} ({raw.stat().st_size / 2**30:.2f} GiB) in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        out = work / name / "processed"
        r = pre[name] = in_fresh_process("preprocess", name, raw, out)
        print(f"{name}: {SIZES[name]['rows']:,} rows -> {r['n_users']:,} users, "
              f"{r['n_items']:,} items, {r['n_interactions']:,} interactions "
              f"({r['filter_rounds']} filter rounds); preprocess {r['seconds']:.0f} s, "
              f"peak RSS {r['peak_gb']:.2f} GiB", flush=True)
        if name != "ml-32m":
            continue
        path = in_fresh_process("data_path", out, a.epoch_fraction, a.threads)
        print(f"ml-32m data path, max_len {MAX_LEN}: {path['examples']:,} prefix examples "
              f"(materialised: {path['materialised_prefixes_gb']:.0f} GiB), read "
              f"{path['load_s']:.1f} s, split + batches {path['split_s']:.1f} s, peak RSS "
              f"{path['peak_gb']:.2f} GiB; loader {path['batches_per_s']:.0f} batches/s "
              f"({path['ms_per_batch']:.1f} ms per batch of {BATCH}, "
              f"{path['epoch_loader_s']:.0f} s per epoch)", flush=True)
        if a.model != "none":
            step = in_fresh_process("model_step", out, a.model, a.steps, a.threads)
            share = path["ms_per_batch"] / (path["ms_per_batch"] + step["step_s"] * 1e3)
            print(f"{a.model} step at batch {BATCH}: {step['step_s'] * 1e3:.0f} ms; loader share "
                  f"of an epoch {share:.2%}", flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(report(pre, path, step)) + "\n")
        print(f"wrote {a.out}")
    if not a.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
