"""Step time and peak memory of every model vs sequence length, on CPU or CUDA (not a test).

For each model and max_len (default 50 / 200 / 800 / 3200) it measures one training step
(forward + backward + Adam) on a batch of full-length random sequences (batch 256, n_items
3417 = ML-1M incl. padding), each cell in a fresh process (recbench.profiling), then fits
log-log slopes of memory and time against L per model (1 = linear, 2 = quadratic) and prints
them next to RecBole 1.2.1 measured on the CPU machine class (issue 6). Rows land in
`reports/efficiency/models_{device}.csv` (rewritten after every cell, via a temporary file).
Memory is peak RSS growth on CPU and torch.cuda.max_memory_allocated on CUDA
(recbench/profiling.py); `--device cuda` lifts the address-space cap, which CUDA cannot run under.

Model specs are `name` or `name:key=value,...` (config overrides, e.g. `sasrec:attention=math`);
by default every learned model in the registry, SASRec once per attention implementation.
A model whose cell fails (timeout, out of memory) skips its longer lengths. Times depend on
the load of the machine: the 1-minute load average is printed and stored with each row.

    python benchmarks/model_scaling.py [--models lrurec mamba4rec] [--max-lens 50 200 800]
        [--batch-size 256] [--timeout 1800] [--mem-limit-gb 16] [--device cuda --steps 10]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import resource
from pathlib import Path

from models import REGISTRY, model_class
from recbench.profiling import profile_in_subprocess

ROOT = Path(__file__).resolve().parents[1]

# RecBole 1.2.1 on this CPU machine class, batch 256 (issue 6): (seconds per step, peak GB).
# RecBole 1.2.1 on this machine at batch 256 (the figures): shown only for batch 256 cells
RECBOLE = {("sasrec", 50): (0.47, 0.4), ("sasrec", 200): (4.7, 1.8), ("sasrec", 800): (47.0, 11.6),
           ("gru4rec", 50): (0.39, 0.13), ("gru4rec", 800): (4.4, 1.4)}


def parse_spec(spec: str) -> tuple[str, dict]:
    """'sasrec:attention=math,num_layers=1' -> ('sasrec', {'attention': 'math', 'num_layers': 1})."""
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"model spec {spec!r}: expected key=value, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value                      # a bare string such as math
    return name, overrides


def default_specs() -> list[str]:
    specs = []
    for name in REGISTRY:
        cls = model_class(name)
        if not cls.learned:
            continue                                     # no training step to measure
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        specs += [f"{name}:attention={a}" for a in ("math", "sdpa")] if "attention" in fields else [name]
    return specs


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (nan with fewer than two points)."""
    if len(xs) < 2:
        return math.nan
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    fields = ["model", "overrides", "max_len", "batch_size", "device", "seconds_per_step",
              "peak_rss_mb", "peak_cuda_mb", "peak_cuda_reserved_mb", "params", "threads", "load_avg_1m", "recbole_seconds", "recbole_peak_gb", "error"]
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None, help="model specs (default: all learned)")
    parser.add_argument("--max-lens", nargs="+", type=int, default=[50, 200, 800, 3200])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-items", type=int, default=3417)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--mem-limit-gb", type=float, default=16,
                        help="address-space cap per cell (a shared machine must survive an OOM cell)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default reports/efficiency/models_{cpu,cuda}.csv")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows already in --out, replacing the cells measured again")
    args = parser.parse_args()

    on_cuda = args.device.startswith("cuda")
    args.out = args.out or ROOT / f"reports/efficiency/models_{'cuda' if on_cuda else 'cpu'}.csv"
    if not on_cuda:  # inherited by every cell's process: a cell that needs more fails alone
        cap = int(args.mem_limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    memory_key = "peak_cuda_mb" if on_cuda else "peak_rss_mb"

    rows = []
    if args.append and args.out.exists():
        with open(args.out, newline="") as f:
            rows = [dict(r, max_len=int(r["max_len"])) for r in csv.DictReader(f)]
    for spec in args.models or default_specs():
        name, overrides = parse_spec(spec)
        fields = {f.name for f in dataclasses.fields(model_class(name).Config)}
        failed = None
        for L in sorted(args.max_lens):
            cell = dict(overrides, **({"max_len": L} if "max_len" in fields else {}))
            if failed:
                result = {"error": f"skipped: shorter length failed ({failed})"}
            else:
                result = profile_in_subprocess(name, L, args.batch_size, timeout=args.timeout,
                                               n_items=args.n_items, steps=args.steps,
                                               warmup=args.warmup, device=args.device,
                                               overrides=cell)
                failed = result.get("error")
            comparable = (overrides.get("attention", "math") == "math" and args.batch_size == 256
                          and not on_cuda)
            ref = RECBOLE.get((name, L)) if comparable else None
            row = dict(result, model=name, overrides=json.dumps(overrides), max_len=L,
                       batch_size=args.batch_size, device=args.device, load_avg_1m=round(os.getloadavg()[0], 2),
                       recbole_seconds=ref[0] if ref else "", recbole_peak_gb=ref[1] if ref else "")
            same_cell = lambda r: (r["model"], r["overrides"], r["max_len"]) == (name, row["overrides"], L)
            rows = [r for r in rows if not same_cell(r)] + [row]
            write_csv(rows, args.out)
            shown = (f"{row['seconds_per_step']:8.3f} s  {row[memory_key] / 1024:7.2f} GB"
                     if "error" not in result else f"  {result['error']}")
            print(f"{spec:28s} L={L:<5d}{shown}"
                  + (f"   RecBole {ref[0]} s / {ref[1]} GB" if ref else ""), flush=True)

    print(f"\nlog-log slopes vs L (1 = linear, 2 = quadratic), batch {args.batch_size}:")
    print(f"{'model':28s} {'memory':>7s} {'time':>7s}  lengths")
    for name, shown in dict.fromkeys((r["model"], r["overrides"]) for r in rows):
        ok = sorted((r for r in rows if (r["model"], r["overrides"]) == (name, shown)
                     and not r.get("error")), key=lambda r: r["max_len"])
        mem = loglog_slope([r["max_len"] for r in ok], [float(r[memory_key]) for r in ok])
        sec = loglog_slope([r["max_len"] for r in ok], [float(r["seconds_per_step"]) for r in ok])
        label = name + ("" if shown == "{}" else " " + shown)
        print(f"{label:28s} {mem:7.2f} {sec:7.2f}  {[r['max_len'] for r in ok]}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
