"""benchmarks/scan_kernel.py runs the compiled scan of the tree on PYTHONPATH and prints one
row per length (its timings themselves are never asserted)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import cpu_scan

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not cpu_scan.available(torch.float32),
                    reason="no C compiler here: the compiled scan is not built")
def test_scan_kernel_benchmark_names_its_tree_and_prints_a_row_per_length():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scan_kernel.py"), "--users", "2,1",
                           "--lens", "5,9", "--channels", "20", "--states", "5", "--repeats", "1"],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"models: {ROOT / 'models' / 'cpu_scan.py'}"
    rows = [line.split("|")[1:3] for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [(int(u), int(L)) for u, L in rows] == [(2, 5), (1, 9)]
