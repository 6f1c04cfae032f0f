"""What a job needs to know about the machine it runs on, in one place.

    torch_device(name)     train.device ("auto", "cpu", "cuda", "cuda:1") -> torch.device,
                           refusing CUDA where there is none
    device_name(name)      the same as a plain name for paths ("auto" -> "cuda" or "cpu")
    is_out_of_memory(err)  whether an exception is a failed allocation (GPU or CPU)
    peak_memory_mb(device) the process's peak memory and what was measured
    git_commit()           the commit of the checkout this code runs from (None outside git)
    flush_subnormals()     CPU arithmetic on subnormal floats at full speed (they become 0)

Only torch and the standard library: the RecBole environment imports it too
(recbench/external/recbole_run.py).
"""
from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

import torch

# the CPU allocator's and NumPy's words for a failed allocation; CUDA's have their own type
_ALLOCATION_FAILED = re.compile(r"(can't|cannot|could not|unable to|tried to) allocate|out of memory",
                                re.IGNORECASE)


def torch_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available")
    return torch.device(name)


def device_name(name: str) -> str:
    """`auto` -> cuda when a GPU is visible, else cpu; any other name unchanged (no check: a
    dry run on a CPU machine may plan a GPU grid)."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(err, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(err, RuntimeError) and bool(_ALLOCATION_FAILED.search(str(err))))


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(MB, kind): CUDA's peak allocation on a GPU, else the process's peak RSS (Linux: KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def flush_subnormals() -> bool:
    """Let this process's CPU treat subnormal floats (float32 magnitudes below 1.2e-38) as zero.

    Training makes them: a Mamba state is multiplied by exp(Delta A) < 1 at every position, and
    gradients flow back through the same products. An x86 core computes on a subnormal through a
    microcode assist, so every matmul or elementwise pass that meets them slows down many times:
    on the 2-core Xeon, one training step at max_len 200, batch 256, one thread, took 13.2 s
    -> 5.5 s for Mamba4Rec, 35 s -> 10 s for SIGMA, 2.8 s -> 0.5 s for GRU4Rec with this set,
    with the same loss to the printed digits (reports/efficiency/train_throughput_cpu.md). A
    subnormal is 1e-31 of any value it is added to in these models, so zeroing it changes no
    metric. Process-wide, CPU only (torch.set_flush_denormal); returns False where the CPU has
    no such mode (then nothing changes)."""
    return torch.set_flush_denormal(True)

