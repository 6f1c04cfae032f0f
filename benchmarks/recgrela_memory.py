"""RecGRELA training-step time and peak memory versus max_len on CPU (prints numbers; asserts nothing).

One forward + backward + Adam step at batch 256, n_items 3417 (ML-1M), full-length sequences,
for the reference (non-causal) and the causal variant; every cell runs in a fresh process
(recbench.profiling.profile_in_subprocess). Printed beside the reference code on RecBole 1.2.1
measured on the same kind of machine (issue 5), with the log-log slope of time and memory vs L,
and written to reports/efficiency/recgrela_cpu.csv.

    python benchmarks/recgrela_memory.py                        # the full grid (slow: ~1 h on 2 cores)
    python benchmarks/recgrela_memory.py --max-lens 50 200 800 --variants reference

Peak memory is peak RSS of the process minus its RSS before the model was built, so it also
holds glibc heap fragmentation: with glibc's default dynamic mmap threshold, freed tensors
of a few MB stay in the heap. `--mmap-threshold 1048576` (MALLOC_MMAP_THRESHOLD_ for the child
processes) returns freed tensors to the OS at once and so shows live memory more closely; the
RecBole figures were taken with the default allocator, so compare those columns with the default.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recbench.profiling import profile_in_subprocess  # noqa: E402

# reference code (RecBole 1.2.1, CPU, batch 256) as measured for issue 5: L -> (s/step, GB)
RECBOLE = {50: (0.55, 0.6), 200: (2.35, 2.3), 800: (19.2, 6.4), 2000: (None, "OOM >16")}
VARIANTS = {"reference": {}, "causal": {"causal": True}}


def loglog_slope(xs, ys) -> float:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y and y > 0]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def run(max_lens, variants, batch_size, n_items, steps, warmup, timeout):
    rows = []
    for variant in variants:
        failed = False
        for L in max_lens:
            if failed:  # a longer window will not fit either
                rows.append({"variant": variant, "max_len": L, "error": "skipped after a failure"})
                continue
            small = L < 1600
            res = profile_in_subprocess(
                "recgrela", L, batch_size, timeout=timeout, n_items=n_items,
                steps=steps if small else 2, warmup=warmup, overrides=VARIANTS[variant])
            load = os.getloadavg()[0]
            row = {"variant": variant, "max_len": L, "batch_size": batch_size,
                   "seconds_per_step": res.get("seconds_per_step"),
                   "peak_gb": res["peak_rss_mb"] / 1024 if "peak_rss_mb" in res else None,
                   "threads": res.get("threads"), "load_avg_1min": round(load, 2),
                   "error": res.get("error", "")}
            failed = bool(row["error"])
            rows.append(row)
            print(f"  {variant:9s} L={L:5d}  "
                  + (f"{row['seconds_per_step']:7.2f} s  {row['peak_gb']:6.2f} GB" if not failed else row["error"])
                  + f"  (load {load:.1f})", flush=True)
    return rows


def report(rows, out: Path, mmap_threshold):
    print(f"\nRecGRELA CPU training step, batch {rows[0].get('batch_size', 256)}"
          + (f", MALLOC_MMAP_THRESHOLD_={mmap_threshold}" if mmap_threshold else ", default glibc allocator"))
    print(f"{'L':>5} {'variant':>9} {'s/step':>8} {'peak GB':>8} | {'RecBole s':>9} {'RecBole GB':>10} "
          f"| {'time x':>6} {'mem x':>6}")
    for r in rows:
        ref_s, ref_gb = RECBOLE.get(r["max_len"], (None, None))
        ok = not r.get("error")
        s = f"{r['seconds_per_step']:8.2f} {r['peak_gb']:8.2f}" if ok else f"{r['error'][:17]:>17}"
        tx = f"{ref_s / r['seconds_per_step']:6.1f}" if ok and isinstance(ref_s, float) else "     -"
        mx = f"{ref_gb / r['peak_gb']:6.1f}" if ok and isinstance(ref_gb, float) else \
            ("  >" + f"{16 / r['peak_gb']:.1f}" if ok and ref_gb else "     -")
        print(f"{r['max_len']:5d} {r['variant']:>9} {s} | {str(ref_s or '-'):>9} {str(ref_gb or '-'):>10} | {tx} {mx}")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        ok = [r for r in rows if r["variant"] == variant and not r.get("error")]
        Ls = [r["max_len"] for r in ok]
        print(f"log-log slope vs L, {variant}: time {loglog_slope(Ls, [r['seconds_per_step'] for r in ok]):.2f}, "
              f"memory {loglog_slope(Ls, [r['peak_gb'] for r in ok]):.2f}  (over L = {Ls})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".csv.tmp")
    fields = ["variant", "max_len", "batch_size", "seconds_per_step", "peak_gb", "threads",
              "load_avg_1min", "mmap_threshold", "error"]
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "mmap_threshold": mmap_threshold or ""})
    tmp.replace(out)
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-lens", type=int, nargs="+", default=[50, 100, 200, 400, 800, 1600, 2000, 3200])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-items", type=int, default=3417)
    p.add_argument("--steps", type=int, default=3, help="timed steps (2 from L=1600 on)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--mmap-threshold", type=int, default=None,
                   help="set MALLOC_MMAP_THRESHOLD_ (bytes) in the measured processes")
    p.add_argument("--out", type=Path, default=Path("reports/efficiency/recgrela_cpu.csv"))
    args = p.parse_args()
    if args.mmap_threshold:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    rows = run(args.max_lens, args.variants, args.batch_size, args.n_items, args.steps, args.warmup,
               args.timeout)
    report(rows, args.out, args.mmap_threshold)


if __name__ == "__main__":
    main()
