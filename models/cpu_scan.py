"""Mamba's selective scan on a CPU, compiled: models/selective_scan_cpu.c, built once per machine
with the system C compiler and called through ctypes.

Why a kernel of our own: mamba_ssm's and causal_conv1d's kernels are CUDA-only, and no
maintained library we know of ships a CPU selective scan with a backward. In PyTorch ops every
(position, user, channel, state) element of the scan goes through memory several times
(models/mamba4rec.py `selective_scan`, ~1.3 s a layer forward + backward at batch 256, L 200,
E 128, N 32 on one core); fused, one user's E x N state stays in cache: 0.34 s (docs/fidelity.md,
the "Mamba4Rec scan" row). The values are those of `selective_scan_ref`
(tests/test_fast_paths.py: float64, values and gradients).

`CompiledScan` is the scan proper (after softplus, before the D skip and the z gate);
models/mamba4rec.py `selective_scan(..., compiled=True)` calls it, and MambaBlock does so on a
CPU when `use_kernels` is on and `available()` says the kernel built here. When no C compiler
is found or the build fails, that is warned once and the PyTorch scan runs. The library is
cached under $XDG_CACHE_HOME/recgrela-bench (default ~/.cache), keyed by the source, the flags,
the compiler and the CPU's feature flags (it is built with -march=native), and appears there
only complete.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("selective_scan_cpu.c")
# -ffast-math lets gcc vectorise expf through glibc's libmvec; 512-bit vectors where the CPU has
# them (1.4x faster backward on an AVX-512 Xeon than gcc's default 256). It is given to the
# compile step only: linked with -ffast-math, gcc < 13 adds crtfastmath.o, whose constructor
# turns on flush-to-zero for the whole process as soon as the library loads.
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-ffast-math", "-fPIC"]
LINK = ["-shared", "-lm"]
REALS = {torch.float32: "float", torch.float64: "double"}


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return ""


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "recgrela-bench"


@functools.cache
def _library(real: str) -> ctypes.CDLL | None:
    """The compiled kernel for REAL = float | double, building it if needed; None if it cannot
    be built here (the reason is warned once)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        warnings.warn("mamba scan: no C compiler found (set CC), using the PyTorch scan", stacklevel=3)
        return None
    flags = FLAGS + [f"-DREAL={real}"]
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(flags + LINK), version,
                                        _cpu_features()]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"selective_scan_{real}_{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # built under a temporary name and renamed: a half-written library never looks done
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                obj, lib = Path(tmp) / "scan.o", Path(tmp) / "scan.so"
                for command in ([compiler, *flags, "-c", str(SOURCE), "-o", str(obj)],
                                [compiler, str(obj), "-o", str(lib), *LINK]):
                    build = subprocess.run(command, capture_output=True, text=True)
                    if build.returncode != 0:
                        raise RuntimeError(f"{' '.join(command)} failed on {SOURCE}:\n"
                                           f"{build.stderr[-2000:]}")
                os.replace(lib, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError) as err:
        warnings.warn(f"mamba scan: the compiled CPU scan is unavailable ({err}); "
                      f"using the PyTorch scan", stacklevel=3)
        return None
    for name in ("scan_forward", "scan_backward"):
        getattr(lib, name).restype = None
    return lib


def available(dtype: torch.dtype = torch.float32) -> bool:
    return dtype in REALS and _library(REALS[dtype]) is not None


def _groups(batch: int) -> list[slice]:
    """Users split into one contiguous group per intra-op thread (ctypes releases the GIL)."""
    k = max(1, min(torch.get_num_threads(), batch))
    edges = [batch * i // k for i in range(k + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def _run_groups(fn, groups: list[slice]) -> None:
    if len(groups) == 1:
        fn(groups[0])
    else:
        with ThreadPoolExecutor(len(groups)) as pool:
            list(pool.map(fn, groups))


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


class CompiledScan(torch.autograd.Function):
    """y_t = C_t . h_t, h_t = exp(Delta_t A) h_{t-1} + Delta_t u_t B_t (batch-major, contiguous).
    Keeps only its inputs; backward recomputes the states one user at a time."""

    @staticmethod
    def forward(ctx, delta, u, A, B, C):
        batch, L, E = u.shape
        N = A.size(1)
        lib = _library(REALS[u.dtype])
        y = torch.empty_like(u)

        def run(g: slice) -> None:
            h = u.new_empty(E, N)
            lib.scan_forward(ctypes.c_long(g.stop - g.start), ctypes.c_long(L), ctypes.c_long(E),
                             ctypes.c_long(N), _ptr(delta[g]), _ptr(u[g]), _ptr(A), _ptr(B[g]),
                             _ptr(C[g]), _ptr(y[g]), _ptr(h))

        _run_groups(run, _groups(batch))
        ctx.save_for_backward(delta, u, A, B, C)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        delta, u, A, B, C = ctx.saved_tensors
        batch, L, E = u.shape
        N = A.size(1)
        lib = _library(REALS[u.dtype])
        grad_y = grad_y.contiguous()
        g_delta, g_u, g_B, g_C = (torch.empty_like(t) for t in (delta, u, B, C))
        groups = _groups(batch)
        g_A = A.new_zeros(len(groups), E, N)   # one partial sum per group, added below

        def run(i_g: tuple[int, slice]) -> None:
            i, g = i_g
            states, G, decays = u.new_empty(L + 1, E, N), u.new_empty(E, N), u.new_empty(L, E, N)
            lib.scan_backward(ctypes.c_long(g.stop - g.start), ctypes.c_long(L), ctypes.c_long(E),
                              ctypes.c_long(N), _ptr(delta[g]), _ptr(u[g]), _ptr(A), _ptr(B[g]),
                              _ptr(C[g]), _ptr(grad_y[g]), _ptr(g_delta[g]), _ptr(g_u[g]),
                              _ptr(g_A[i]), _ptr(g_B[g]), _ptr(g_C[g]), _ptr(states), _ptr(G), _ptr(decays))

        _run_groups(run, list(enumerate(groups)))
        return g_delta, g_u, g_A.sum(0), g_B, g_C
