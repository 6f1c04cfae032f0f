"""Training-step time and peak memory of every model, now beside a git revision (not a test).

One training step = what recbench's engine does per batch in `prefix` mode (the default):
zero_grad, forward, full-softmax CE of the last position over all items (models/base.py
`calculate_loss`; BERT4Rec its cloze loss), backward, Adam step. Batch 256 by default, random
item ids (n_items 3,417: ML-1M's 3,416 items + padding) at full length max_len.

For each (model, max_len, precision) cell this prints the median step time over `--steps`
steps after `--warmup` steps, and the peak memory of the step: the increase of the process's
peak resident set size (getrusage ru_maxrss) over its RSS just before the first step (model,
optimiser and batch already built), so it counts activations, gradients, Adam's state and
allocator slack. Each cell runs in its own fresh subprocess (memory isolation, no allocator
or thread-pool state carried over), with a time limit (a cell past it prints "timeout").

The baseline is a git revision (`--baseline 3672477`): a temporary detached worktree of it is
created, and the same measuring child (this file, `--child`) runs with PYTHONPATH pointing at
that tree, so that before and after are measured in one run, interleaved cell by cell. The
child imports only `models` and torch, so it measures any revision with the same model API,
plus the revision's CPU setting if it has one (recbench.runtime.flush_subnormals, which its
training engine calls; a revision without it, such as 3672477, runs without it, as it trained).

precision: fp32, or bf16 = torch.autocast("cpu" / "cuda", dtype=torch.bfloat16) around the
forward and the loss (weights and Adam stay fp32).

    python benchmarks/train_throughput.py --baseline 3672477 [--models recgrela,sasrec]
        [--max-lens 50,200,800] [--precisions fp32,bf16] [--timeout 600] [--out reports/efficiency/x]
    # one cell, with torch.profiler's top 20 ops of one step (what motivated each fast path):
    PYTHONPATH=. python benchmarks/train_throughput.py --child --model recgrela --max-len 200 \
        --precision fp32 --profile 20 --steps 0
"""
from __future__ import annotations

import argparse
import ast
import csv
import datetime
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_MODELS = ["popularity", "gru4rec", "sasrec", "bert4rec", "linrec", "lrurec", "mamba4rec",
              "recgrela", "recblr", "echomamba4rec", "eulerformer", "sigma"]


# --- the measuring child: models + torch only ----------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(a) -> dict:
    import dataclasses

    import torch

    import models
    torch.set_num_threads(a.threads)
    try:   # what this revision's training engine sets on the CPU, if anything
        from recbench.runtime import flush_subnormals
        flush_subnormals()
    except ImportError:
        pass
    cls = models.model_class(a.model)
    if not getattr(cls, "learned", True):
        return {"status": "n/a", "models_file": models.__file__}
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    torch.manual_seed(0)
    options = dict(parse_option(o) for o in a.option)
    if "max_len" in fields:
        options.setdefault("max_len", a.max_len)
    model = models.build_model(a.model, a.n_items, **options)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, a.n_items, (a.batch, a.max_len), generator=g)      # (B, L), no padding
    seq_len = torch.full((a.batch,), a.max_len, dtype=torch.long)
    target = torch.randint(1, a.n_items, (a.batch,), generator=g)
    bf16 = a.precision == "bf16"

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.calculate_loss(seq, seq_len, target)
        loss.backward()
        optimizer.step()
        return loss.item()

    if a.profile:  # one warm-up step, then one profiled step: the top ops by self time
        from torch.profiler import ProfilerActivity, profile
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.profile),
              file=sys.stderr)
    rss_before = _rss_mb()
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024            # KiB -> MiB
    timed = times[a.warmup:]
    return {"status": "ok", "step_s": statistics.median(timed) if timed else None, "times": times,
            "peak_mb": peak - rss_before, "loss": loss, "models_file": models.__file__}


def parse_option(text: str) -> tuple[str, object]:
    """"group_tokens=32768" -> ("group_tokens", 32768): a Python literal, else the string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--option {text!r}: expected KEY=VALUE (a field of the model's Config)")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


# --- the driver -------------------------------------------------------------------------------
def machine() -> dict:
    import torch
    flags, cpu = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"cpu": cpu, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "amx_tile": "amx_tile" in flags,
            "torch": torch.__version__, "cores": os.cpu_count()}


def run_cell(tree: Path, a, model: str, max_len: int, precision: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model,
           "--max-len", str(max_len), "--precision", precision, "--batch", str(a.batch),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--threads", str(a.threads),
           "--n-items", str(a.n_items)]
    if tree == ROOT:   # options name this tree's Config fields; the baseline keeps its defaults
        cmd += [f"--option={o}" for o in a.option]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(a.threads)}
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timeout,
                              cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"status": "error", "error": tail[0][:200]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = str(tree.resolve() / "models")
    if result.get("models_file") and not result["models_file"].startswith(expected):
        raise RuntimeError(f"child imported {result['models_file']}, not the tree {tree}")
    return result


def fmt(r: dict, key: str, spec: str) -> str:
    return format(r[key], spec) if r.get("status") == "ok" else r.get("status", "?")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=None, help="git revision to measure beside the working tree")
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--max-lens", default="50,200,800")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="timed steps per cell (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--n-items", type=int, default=3417, help="item ids including padding")
    p.add_argument("--timeout", type=float, default=600, help="seconds per cell")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a model Config field for the working tree's runs, not the baseline's "
                        "(repeatable), e.g. --option group_tokens=4096")
    p.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.csv too")
    # the measuring child
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-len", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--profile", type=int, default=0,
                   help="with --child: print the top PROFILE ops of one profiled step (stderr)")
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return

    models = a.models.split(",")
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {ALL_MODELS}")
    lens = [int(x) for x in a.max_lens.split(",")]
    precisions = a.precisions.split(",")
    if set(precisions) - {"fp32", "bf16"}:
        p.error("precisions: fp32 and/or bf16")

    info = machine()
    head = [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"CPU: {info['cpu']} ({info['cores']} cores); AVX-512F: {'yes' if info['avx512f'] else 'no'}, "
            f"AVX512-BF16: {'yes' if info['avx512_bf16'] else 'no'}, "
            f"AMX (tile, bf16): {'yes' if info['amx_tile'] and info['amx_bf16'] else 'no'}",
            f"torch {info['torch']}, {a.threads} threads; batch {a.batch}, n_items {a.n_items}, "
            f"median of {a.steps} steps after {a.warmup} warm-up; time limit {a.timeout:.0f} s per cell",
            "step = zero_grad + forward + CE (last position, all items) + backward + Adam; "
            "peak MB = peak RSS increase over the RSS before the first step",
            *([f"model options (working tree only): {', '.join(a.option)}"] if a.option else []),
            "command: python " + " ".join([str(Path(sys.argv[0]))] + sys.argv[1:])]
    for line in head:
        print(line, flush=True)

    # a kill (timeout, Ctrl-C) still removes the temporary worktree: SIGTERM -> SystemExit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    worktree = None
    trees = {"now": ROOT}
    if a.baseline:
        worktree = Path(tempfile.mkdtemp(prefix="throughput-baseline-")) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree),
                        a.baseline], check=True, capture_output=True)
        trees = {"baseline": worktree, "now": ROOT}
        commit = subprocess.run(["git", "-C", str(worktree), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        head.append(f"baseline: {a.baseline} ({commit}); now: working tree of {ROOT}")
        print(head[-1], flush=True)

    columns = ["model", "max_len", "precision", "step s (baseline)", "step s (now)", "speed-up",
               "peak MB (baseline)", "peak MB (now)"]
    rows, errors = [], []
    try:
        for L in lens:
            for model in models:
                for prec in precisions:
                    res = {name: run_cell(tree, a, model, L, prec) for name, tree in trees.items()}
                    base, now = res.get("baseline", {}), res["now"]
                    speedup = (f"{base['step_s'] / now['step_s']:.2f}x"
                               if base.get("status") == "ok" and now.get("status") == "ok" else "")
                    row = [model, L, prec, fmt(base, "step_s", ".3f") if base else "",
                           fmt(now, "step_s", ".3f"), speedup,
                           fmt(base, "peak_mb", ".0f") if base else "", fmt(now, "peak_mb", ".0f")]
                    rows.append(row)
                    print("  " + " | ".join(str(x) for x in row), flush=True)
                    for name, r in res.items():
                        if r.get("status") == "error":
                            errors.append(f"{model} L={L} {prec} ({name}): {r['error']}")
                            print(f"    {errors[-1]}", flush=True)
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)

    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    table += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    table += [f"\nerror: {e}" for e in errors]
    print("\n" + "\n".join(table))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".md").write_text(
            "# Training-step throughput on CPU\n\n" + "\n".join(f"- {h}" for h in head)
            + "\n\n" + "\n".join(table) + "\n")
        with open(a.out.with_suffix(".csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(rows)


if __name__ == "__main__":
    main()
