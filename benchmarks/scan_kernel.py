"""The compiled CPU selective scan alone: forward and backward time of models/cpu_scan.py
`CompiledScan` on random inputs laid out as MambaBlock hands them over (not a test).

It imports `models` from PYTHONPATH, so one command measures any revision with the same
`CompiledScan` interface (issue 28's sixth round: 1a1de30 against ac69701):

    git worktree add --detach /tmp/before 1a1de30
    PYTHONPATH=/tmp/before python benchmarks/scan_kernel.py    # before
    PYTHONPATH=. python benchmarks/scan_kernel.py              # after

Inputs: users x L positions, E channels, N states, float32. z is a column slice of a
(users, L, 2E) tensor (in_proj's output), B and C slices of a (users, L, R + 2N) one (x_proj's),
A = -exp(A_log) with Mamba's S4D-real init. Median of --repeats after one warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from models import cpu_scan
from train_throughput import machine   # benchmarks/ is this script's directory


def inputs(users: int, L: int, E: int, N: int, dt_rank: int) -> dict:
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)
    xz = r(users, L, 2 * E)
    x_dbl = r(users, L, dt_rank + 2 * N)
    A_log = torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1)   # (E, N)
    return dict(delta=r(users, L, E) - 2, delta_bias=r(E) * 0.1, u=r(users, L, E),
                A=-torch.exp(A_log), B=x_dbl[..., dt_rank:dt_rank + N],
                C=x_dbl[..., dt_rank + N:], D=torch.ones(E), z=xz[..., E:])


def measure(users: int, L: int, E: int, N: int, repeats: int) -> tuple[float, float]:
    x = inputs(users, L, E, N, dt_rank=-(-E // 32))
    leaves = {k: v.requires_grad_() for k, v in x.items() if k in ("delta", "u", "delta_bias", "D")}
    grad_y = torch.randn(users, L, E, generator=torch.Generator().manual_seed(1))
    forward, backward = [], []
    for i in range(repeats + 1):
        for v in leaves.values():
            v.grad = None
        t0 = time.perf_counter()
        y = cpu_scan.CompiledScan.apply(x["delta"], x["delta_bias"], x["u"], x["A"], x["B"],
                                        x["C"], x["D"], x["z"])
        t1 = time.perf_counter()
        y.backward(grad_y)
        t2 = time.perf_counter()
        if i:   # the first call builds or loads the library
            forward.append(t1 - t0)
            backward.append(t2 - t1)
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", default="128,32", help="users per length, comma-separated")
    p.add_argument("--lens", default="200,800")
    p.add_argument("--channels", type=int, default=128, help="E (expand x hidden)")
    p.add_argument("--states", type=int, default=32, help="N (d_state)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not cpu_scan.available(torch.float32):
        p.error("the compiled scan did not build here (no C compiler?)")
    info = machine()
    print(f"models: {cpu_scan.__file__}")
    print(f"CPU: {info['cpu']}; AVX-512F: {'yes' if info['avx512f'] else 'no'}; "
          f"torch {info['torch']}, {a.threads} thread(s); E {a.channels}, N {a.states}, float32; "
          f"median of {a.repeats}")
    print("| users | L | forward ms | backward ms | G state updates/s (forward, backward) |")
    print("|---|---|---|---|---|")
    for users, L in zip(map(int, a.users.split(",")), map(int, a.lens.split(","))):
        fwd, bwd = measure(users, L, a.channels, a.states, a.repeats)
        updates = users * L * a.channels * a.states / 1e9
        print(f"| {users} | {L} | {fwd * 1e3:.1f} | {bwd * 1e3:.1f} | "
              f"{updates / fwd:.2f}, {updates / bwd:.2f} |", flush=True)


if __name__ == "__main__":
    main()
