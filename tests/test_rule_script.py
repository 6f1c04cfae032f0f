"""recbench/rule_script.py: every attempt of a job is kept in its log, a killed one included,
though Snakemake deletes the log file before each run of the job."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from recbench.rule_script import SEPARATOR, run_rule

ROOT = Path(__file__).resolve().parents[1]

KILLED = textwrap.dedent("""
    import os, signal, sys
    from types import SimpleNamespace
    from recbench.rule_script import run_rule

    def work():
        print("epoch 1 done", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)            # killed mid-job: no finally runs

    run_rule(SimpleNamespace(rule="train", log=[sys.argv[1]], wildcards=None), work)
""")


def _job(log: Path, rule="train"):
    return SimpleNamespace(rule=rule, log=[str(log)], wildcards=None)


def test_a_killed_attempt_is_kept_after_snakemake_deletes_the_log(tmp_path, monkeypatch):
    log = tmp_path / "logs/train/tiny/seed1.log"
    log.parent.mkdir(parents=True)                     # as Snakemake makes it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILLED, str(log)], env=env)
    assert killed.returncode == -9
    log.unlink()                                 # what Snakemake does before the next attempt
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    run_rule(_job(log), lambda: print("epoch 2 done", file=sys.stderr))
    text = log.read_text()
    assert "epoch 1 done" in text and "epoch 2 done" in text
    assert text.index("epoch 1 done") < text.index(f"{SEPARATOR} 2 of train") \
        < text.index("epoch 2 done")
    first = text.splitlines()[0]
    assert first.startswith(f"{SEPARATOR} 1 of train: ") and " pid " in first


def test_a_failed_attempt_and_its_error_line_stay_in_the_log(tmp_path, monkeypatch):
    log = tmp_path / "job.log"
    monkeypatch.setattr(sys, "stderr", sys.stderr)

    def bad():
        raise ValueError("data/processed/x/stats.json: not JSON")

    with pytest.raises(SystemExit):
        run_rule(_job(log), bad)
    log.unlink()
    run_rule(_job(log), lambda: print("fine", file=sys.stderr))
    text = log.read_text()
    assert "train: data/processed/x/stats.json: not JSON" in text and "fine" in text
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith(SEPARATOR)] \
        == [f"{SEPARATOR} 1 of train", f"{SEPARATOR} 2 of train"]


SNAKEFILE = textwrap.dedent("""
    rule flaky:
        output: "out.txt"
        log: "logs/flaky.log"
        script: "flaky.py"
""")
FLAKY = textwrap.dedent("""
    import sys
    from pathlib import Path
    from recbench.rule_script import run_rule

    def work():
        first = not Path("tried").exists()
        Path("tried").touch()
        print("attempt output: " + ("first" if first else "second"), file=sys.stderr)
        if first:
            raise RuntimeError("first attempt fails")
        Path(snakemake.output[0]).write_text("ok")

    run_rule(snakemake, work)
""")


def test_snakemake_reruns_keep_the_failed_attempt_in_the_log(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "flaky.py").write_text(FLAKY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1"]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode != 0, first.stderr[-2000:]
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    text = (tmp_path / "logs/flaky.log").read_text()
    assert "attempt output: first" in text and "first attempt fails" in text
    assert "attempt output: second" in text and f"{SEPARATOR} 2 of flaky" in text
