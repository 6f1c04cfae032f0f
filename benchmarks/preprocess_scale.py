"""Preprocessing time and peak memory on a synthetic ML-32M-sized table (prints numbers).

The table has ML-32M's shape: 32,000,204 ratings, 200,948 users (each >= 20 ratings, a
log-normal length tail), 87,585 items with Zipf-like popularity, timestamps over 28 years.
It is written as a MovieLens ratings.csv, then a fresh process runs the whole preprocessing
(parse + 5-core filter + remap + float32 time order + write parquet/json) and reports its
wall time and peak resident memory (ru_maxrss, input table included).

For scale (issue 3): RecBole 1.2.1 took 189 s and 11.4 GB to build its dataset from such a
table, then asked 51 GB for prefix augmentation at max_len 200. Targets here: < 60 s, < 4 GB.

    python benchmarks/preprocess_scale.py [--workdir /tmp/recbench_scale] [--keep]
"""
import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
N_ROWS, N_USERS, N_ITEMS = 32_000_204, 200_948, 87_585


def make_csv(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.normal(np.log(60), 1.2, N_USERS))
    lengths = 20 + lengths / lengths.sum() * (N_ROWS - 20 * N_USERS)   # sum to N_ROWS
    lengths = np.floor(lengths).astype(np.int64)
    lengths[: N_ROWS - lengths.sum()] += 1
    user = np.repeat(np.arange(1, N_USERS + 1), lengths)               # file sorted by user
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.1                # Zipf-like
    cdf = np.cumsum(popularity / popularity.sum())
    item = rng.permutation(N_ITEMS)[np.searchsorted(cdf, rng.random(N_ROWS))] + 1
    timestamp = rng.integers(789_652_009, 1_697_164_147, N_ROWS)       # 1995 .. 2023
    rating = rng.integers(1, 11, N_ROWS) / 2
    table = pa.table({"userId": user, "movieId": item, "rating": rating,
                      "timestamp": timestamp})
    with open(path, "wb") as f:                    # MovieLens' header is not quoted
        f.write(b"userId,movieId,rating,timestamp\n")
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def run_preprocess(csv: Path, out: Path) -> dict:
    """In this (fresh) process: the whole preprocessing, timed."""
    from recbench.preprocess import preprocess
    from recbench.protocol import InterFilter
    start = time.perf_counter()
    stats = preprocess(csv, "movielens_csv", out, InterFilter(user_min=5, item_min=5),
                       "float32", source_sha256="not computed")
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # KiB -> GiB
    return {"seconds": seconds, "peak_rss_gb": peak_gb, "n_users": stats["n_users"],
            "n_items": stats["n_items"], "n_interactions": stats["n_interactions"],
            "filter_rounds": stats["filter_rounds"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/recbench_scale")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(run_preprocess(Path(a.child[0]), Path(a.child[1]))))
        return
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "ratings.csv"
    if not csv.exists():
        t = time.perf_counter()
        make_csv(csv)
        print(f"generated {csv} ({csv.stat().st_size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t:.1f} s")
    child = subprocess.run([sys.executable, __file__, "--child", str(csv), str(work / "out")],
                           capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"preprocessing failed:\n{child.stderr}")
    r = json.loads(child.stdout.strip().splitlines()[-1])
    size = (work / "out" / "sequences.parquet").stat().st_size / 2**20
    print(f"input: {N_ROWS:,} rows, {N_USERS:,} users, {N_ITEMS:,} items (Zipf-like)")
    print(f"after 5-core: {r['n_users']:,} users, {r['n_items']:,} items, "
          f"{r['n_interactions']:,} interactions ({r['filter_rounds']} filter rounds)")
    print(f"preprocess (parse + filter + remap + sort + write): {r['seconds']:.1f} s, "
          f"peak RSS {r['peak_rss_gb']:.2f} GiB; sequences.parquet {size:.0f} MiB")
    if not a.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
