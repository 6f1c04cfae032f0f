"""recbench/training/run_lock.py: one process trains a run at a time; a lock left by a dead
process is taken over; the train rule's script takes the lock (tests/test_integrity.py shows it
refusing a Snakemake job)."""
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recbench.training.run_lock import LOCK_NAME, RunLocked, run_lock

ROOT = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent("""
    import sys, time
    from recbench.training.run_lock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()           # until the test closes our stdin (or kills us)
""")


def _hold(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_on_one_run_is_refused_naming_the_folder_and_pid(tmp_path):
    run_dir = tmp_path / "results/tiny/gru4rec/default/L20/seed1"
    holder = _hold(run_dir)
    try:
        with pytest.raises(RunLocked) as refused:
            with run_lock(run_dir):
                pytest.fail("the lock was taken while another process held it")
        said = str(refused.value)
        assert str(run_dir) in said and f"process {holder.pid} on host" in said
        assert socket.gethostname() in said
        assert (run_dir / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert not (run_dir / LOCK_NAME).exists()          # released on exit, file removed
    with run_lock(run_dir) as path:                    # and free for the next process
        assert path.read_text().split()[:2] == [str(os.getpid()), socket.gethostname()]


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir)
    holder.send_signal(signal.SIGKILL)                 # no finally: the file stays behind
    holder.wait(timeout=30)
    assert (run_dir / LOCK_NAME).read_text().split()[0] == str(holder.pid)
    with caplog.at_level(logging.WARNING), run_lock(run_dir) as path:
        assert path.read_text().split()[0] == str(os.getpid())
    assert f"took over the stale lock of process {holder.pid}" in caplog.text


def test_a_stale_lock_file_naming_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()} 2026-01-01T00:00\n")
    with run_lock(run_dir) as path:
        assert path.read_text().split()[0] == str(os.getpid())


def test_the_train_script_trains_inside_the_lock():
    script = (ROOT / "scripts" / "train.py").read_text()
    assert "with run_lock(run_dir):" in script
