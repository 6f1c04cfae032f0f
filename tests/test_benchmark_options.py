"""benchmarks/train_throughput.py `--option KEY=VALUE`: how a value is read, and that a bad
option is an error naming it (the benchmark's timings themselves are never asserted)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from train_throughput import parse_option  # noqa: E402


def test_option_values_are_python_literals_else_strings():
    assert parse_option("group_tokens=32768") == ("group_tokens", 32768)
    assert parse_option("causal=True") == ("causal", True)
    assert parse_option("dropout=0.25") == ("dropout", 0.25)
    assert parse_option("position_encoding=none") == ("position_encoding", "none")
    assert parse_option("activation=None") == ("activation", None)


@pytest.mark.parametrize("text", ["group_tokens", "=5"])
def test_malformed_option_is_refused(text):
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        parse_option(text)


def test_child_hands_options_to_the_model_and_names_an_unknown_one():
    child = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--child",
             "--model", "recgrela", "--max-len", "6", "--batch", "3", "--n-items", "20",
             "--steps", "1", "--warmup", "0", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(child + ["--option=group_tokens=6", "--option=num_layers=1"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr[-500:]
    bad = subprocess.run(child + ["--option=group_size=6"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "group_size" in bad.stderr
