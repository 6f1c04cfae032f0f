"""The inside of a Mamba block on a CPU, compiled: models/selective_scan_cpu.c, built once per
machine with the system C compiler and called through ctypes.

Why kernels of our own: mamba_ssm's and causal_conv1d's kernels are CUDA-only, and no
maintained library we know of ships a CPU selective scan with a backward. In PyTorch ops every
(position, user, channel, state) element of the scan goes through memory several times
(models/mamba4rec.py `selective_scan`, ~1.3 s a layer forward + backward at batch 256, L 200,
E 128, N 32 on one core); fused, one user's E x N state stays in cache (docs/fidelity.md, the
"Mamba4Rec scan" row). The values are those of `selective_scan_ref` and of MambaBlock's
PyTorch path (tests/test_fast_paths.py: float64, values and gradients).

`CompiledScan` is the whole of `selective_scan_ref`: softplus, the scan, the D skip and the
SiLU(z) gate; `ConvSiLU` is the block's causal depthwise convolution and its SiLU. Both read
their inputs where in_proj / x_proj wrote them (B and C as column slices of x_proj's output,
no copies) and write one output, so the block's elementwise steps and layout copies around the scan are gone too.
models/mamba4rec.py MambaBlock calls them on a CPU when `use_kernels` is on and `available()`
says they built here. When no C compiler is found or the build fails, that is warned once and
the PyTorch path runs. The library is cached under $XDG_CACHE_HOME/recgrela-bench (default
~/.cache), keyed by the source, the flags, the compiler and the CPU's feature flags (it is
built with -march=native), and appears there only complete.
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
# -ffast-math lets gcc vectorise exp through glibc's libmvec; 512-bit vectors where the CPU has
# them (1.4x faster backward on an AVX-512 Xeon than gcc's default 256). It is given to the
# compile step only: linked with -ffast-math, gcc < 13 adds crtfastmath.o, whose constructor
# turns on flush-to-zero for the whole process as soon as the library loads.
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-ffast-math", "-fPIC"]
LINK = ["-shared", "-lm"]
BUILDS = {torch.float32: [], torch.float64: ["-DUSE_DOUBLE"]}
# The scan works a chunk of positions at a time and keeps the state entering each: as many
# positions as make a chunk's E x N states and decays this many bytes (32 at E 128, N 32,
# float32). What a chunk needs then stays in a core's L2 cache (selective_scan_cpu.c).
CHUNK_BYTES = 1 << 20


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
def _library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The compiled kernels for float32 or float64, building them if needed; None if they cannot
    be built here (the reason is warned once)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        warnings.warn("mamba scan: no C compiler found (set CC), using the PyTorch scan", stacklevel=3)
        return None
    flags = FLAGS + BUILDS[dtype]
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(flags + LINK), version,
                                        _cpu_features()]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"selective_scan_{str(dtype)[6:]}_{key}.so"
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
    for name in ("scan_forward", "scan_backward", "conv_silu_forward", "conv_silu_backward"):
        getattr(lib, name).restype = None
    for name in ("scan_forward_work", "scan_backward_work"):   # sizes of each thread's work
        getattr(lib, name).restype = ctypes.c_long
    return lib


def available(dtype: torch.dtype = torch.float32) -> bool:
    return dtype in BUILDS and _library(dtype) is not None


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


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t (users, L, W) as the kernels read it: channels contiguous, positions `ld` apart, users
    L * ld apart. The column slices that split / chunk return already are; others are copied."""
    if t.stride(-1) != 1 or t.stride(0) != t.size(1) * t.stride(1):
        t = t.contiguous()
    return t, t.stride(1)


def _long(*values: int) -> list[ctypes.c_long]:
    return [ctypes.c_long(v) for v in values]


def _rows_ptr(t: torch.Tensor | None, g: slice):
    """The pointer to users g of t, or NULL for an absent input (no z)."""
    return None if t is None else _ptr(t[g])


class ConvSiLU(torch.autograd.Function):
    """SiLU(causal depthwise conv(x)): x (batch, L, E) -> (batch, L, E), the taps w (E, K) (the
    Conv1d weight without its middle axis; tap K - 1 reads position t), bias (E,)."""

    @staticmethod
    def forward(ctx, x, w, bias):
        x, ld_x = _rows(x)
        batch, L, E = x.shape
        K = w.size(1)
        taps = w.t().contiguous()                                       # (K, E)
        lib = _library(x.dtype)
        out = x.new_empty(batch, L, E)

        def run(g: slice) -> None:
            row = x.new_empty(E)   # named: a temporary's memory would be freed before the call
            lib.conv_silu_forward(*_long(g.stop - g.start, L, E, K), _ptr(x[g]), ctypes.c_long(ld_x),
                                  _ptr(taps), _ptr(bias), _ptr(out[g]), _ptr(row))

        _run_groups(run, _groups(batch))
        ctx.ld_x = ld_x
        ctx.save_for_backward(x, taps, bias)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, taps, bias = ctx.saved_tensors
        ld_x = ctx.ld_x
        batch, L, E = x.shape
        K = taps.size(0)
        lib = _library(x.dtype)
        grad_out = grad_out.contiguous()
        g_x = x.new_empty(batch, L, E)
        groups = _groups(batch)
        g_taps, g_bias = x.new_zeros(len(groups), K, E), x.new_zeros(len(groups), E)

        def run(i_g: tuple[int, slice]) -> None:
            i, g = i_g
            row = x.new_empty(E)
            lib.conv_silu_backward(*_long(g.stop - g.start, L, E, K), _ptr(x[g]), ctypes.c_long(ld_x),
                                   _ptr(taps), _ptr(bias), _ptr(grad_out[g]), _ptr(g_x[g]),
                                   _ptr(g_taps[i]), _ptr(g_bias[i]), _ptr(row))

        _run_groups(run, list(enumerate(groups)))
        return g_x, g_taps.sum(0).t(), g_bias.sum(0)


class CompiledScan(torch.autograd.Function):
    """y = (C_t . h_t + D u_t) * SiLU(z_t), h_t = exp(Delta_t A) h_{t-1} + Delta_t u_t B_t,
    Delta_t = softplus(delta_t + delta_bias): the whole of `selective_scan_ref`.
    delta, u (batch, L, E) and z (or None) (batch, L, E); A (E, N); B, C (batch, L, N);
    D, delta_bias (E,), all of one dtype (float32 or float64). Keeps its inputs, the output
    before the gate and the state entering every chunk; backward recomputes the rest."""

    @staticmethod
    def forward(ctx, delta, delta_bias, u, A, B, C, D, z):
        delta, u, D, delta_bias = (t.contiguous() for t in (delta, u, D, delta_bias))
        A_t = A.t().contiguous()                                        # (N, E): the kernel's state layout
        (B, ld_b), (C, ld_c) = _rows(B), _rows(C)
        if ld_b != ld_c:   # one row stride for both: B, C are normally slices of one x_proj output
            (B, ld_b), (C, ld_c) = _rows(B.contiguous()), _rows(C.contiguous())
        z, ld_z = _rows(z) if z is not None else (None, 0)
        batch, L, E = u.shape
        N = A.size(1)
        chunk = max(1, min(L, CHUNK_BYTES // (2 * E * N * u.element_size())))
        lib = _library(u.dtype)
        y = torch.empty_like(u)
        pre = torch.empty_like(u) if z is not None else None     # p, before the gate
        bounds = u.new_empty(batch, -(-L // chunk), N, E)
        work_size = lib.scan_forward_work(*_long(E, N, chunk))

        def run(g: slice) -> None:
            work = u.new_empty(work_size)
            lib.scan_forward(*_long(g.stop - g.start, L, E, N, chunk), _ptr(delta[g]),
                             _ptr(delta_bias), _ptr(u[g]), _ptr(A_t), _ptr(B[g]), _ptr(C[g]),
                             ctypes.c_long(ld_b), _ptr(D), _rows_ptr(z, g),
                             ctypes.c_long(ld_z), _ptr(y[g]), _rows_ptr(pre, g),
                             _ptr(bounds[g]), _ptr(work))

        _run_groups(run, _groups(batch))
        ctx.chunk, ctx.ld_b, ctx.ld_z = chunk, ld_b, ld_z
        ctx.save_for_backward(delta, delta_bias, u, A_t, B, C, D, z, pre, bounds)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        delta, delta_bias, u, A_t, B, C, D, z, pre, bounds = ctx.saved_tensors
        batch, L, E = u.shape
        N, chunk, ld_b, ld_z = A_t.size(0), ctx.chunk, ctx.ld_b, ctx.ld_z
        lib = _library(u.dtype)
        grad_y = grad_y.contiguous()
        g_delta, g_u = torch.empty_like(delta), torch.empty_like(u)
        g_B, g_C = u.new_empty(batch, L, N), u.new_empty(batch, L, N)
        g_z = torch.empty_like(u) if z is not None else None
        groups = _groups(batch)
        g_A_t, g_D, g_bias = (u.new_zeros(len(groups), *t.shape) for t in (A_t, D, delta_bias))
        work_size = lib.scan_backward_work(*_long(E, N, chunk))

        def run(i_g: tuple[int, slice]) -> None:
            i, g = i_g
            work = u.new_empty(work_size)
            lib.scan_backward(*_long(g.stop - g.start, L, E, N, chunk), _ptr(delta[g]),
                              _ptr(delta_bias), _ptr(u[g]), _ptr(A_t), _ptr(B[g]), _ptr(C[g]),
                              ctypes.c_long(ld_b), _ptr(D),
                              _rows_ptr(z, g), ctypes.c_long(ld_z), _rows_ptr(pre, g), _ptr(bounds[g]),
                              _ptr(grad_y[g]), _ptr(g_delta[g]), _ptr(g_u[g]), _ptr(g_B[g]),
                              _ptr(g_C[g]), _rows_ptr(g_z, g),
                              _ptr(g_A_t[i]), _ptr(g_D[i]), _ptr(g_bias[i]), _ptr(work))

        _run_groups(run, list(enumerate(groups)))
        return g_delta, g_bias.sum(0), g_u, g_A_t.sum(0).t(), g_B, g_C, g_D.sum(0), g_z
