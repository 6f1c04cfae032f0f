"""profiles/slurm: a dry run of the quickstart lists every train job with its GPU, partition,
memory, time and CPUs; train.processes sets the GPU count; data jobs are sized by dataset; a
retry raises only memory and runtime; and a train job killed under the profile's settings
(retries, rerun-incomplete; run with the local executor) resumes from its checkpoint."""
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from recbench.training.checkpoint import NOT_TRAJECTORY
from recbench.training.engine import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
TINY = ROOT / "tests" / "workflow" / "tiny.yaml"


@pytest.fixture(scope="module")
def clone(tmp_path_factory, copy_workflow) -> Path:
    workdir = tmp_path_factory.mktemp("cluster")
    copy_workflow(workdir)
    return workdir


def snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)


def dry_run_jobs(workdir: Path, *args: str) -> list[dict]:
    """The jobs of a dry run: rule, wildcards and resources of each."""
    done = snakemake(workdir, "--dry-run", *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", done.stdout + done.stderr)[1:]:
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        resources = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if kv)
        jobs.append({"rule": block.split(":", 1)[0][5:], "wildcards": fields.get("wildcards", ""),
                     "resources": resources})
    return jobs


WORKFLOW_PROFILE = ("--workflow-profile", "profiles/slurm")


def test_dry_run_lists_train_jobs_with_their_gpus(clone: Path):
    jobs = dry_run_jobs(clone, *WORKFLOW_PROFILE, "--configfile", "config/quickstart.yaml")
    train = [j["resources"] for j in jobs if j["rule"] == "train"]
    assert len(train) >= 20                             # every quickstart run
    for res in train:
        assert res["gpu"] == "1"                        # one process per run: one GPU
        assert res["slurm_partition"] == "your_gpu_partition"
        assert res["slurm_account"] == "your_account"
        assert (res["mem_mb"], res["runtime"], res["cpus_per_task"]) == ("32000", "1440", "8")
    (pre,) = [j["resources"] for j in jobs if j["rule"] == "preprocess"]
    assert (pre["slurm_partition"], pre["mem_mb"], pre["cpus_per_task"]) == (
        "your_cpu_partition", "4000", "4")             # synthetic: the default size
    assert all("gpu" not in j["resources"] or j["resources"]["gpu"] == "0"
               for j in jobs if j["rule"] != "train")


def test_processes_set_the_gpu_count(clone: Path, tmp_path: Path):
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"train": {"processes": 2}, "run_groups": ["main"]}))
    quick = ("--configfile", "config/quickstart.yaml", str(two))
    for profile in (WORKFLOW_PROFILE, ("--profile", "profiles/slurm", "--workflow-profile", "none")):
        train = [j for j in dry_run_jobs(clone, *profile, *quick) if j["rule"] == "train"]
        assert train and all(j["resources"]["gpu"] == "2" for j in train), profile
    # without gpu=True (the local default) a train job asks for no GPU
    local = [j for j in dry_run_jobs(clone, "--cores", "2", *quick) if j["rule"] == "train"]
    assert local and all(j["resources"]["gpu"] == "0" for j in local)


def _evaluate(expr, dataset: str, attempt: int):
    if isinstance(expr, int):
        return expr
    return eval(expr, {"wildcards": type("W", (), {"dataset": dataset}), "attempt": attempt})


def test_data_jobs_are_sized_by_dataset_and_a_retry_only_adds_memory_and_time():
    sets = PROFILE["set-resources"]
    assert PROFILE["retries"] >= 1 and PROFILE["rerun-incomplete"] is True
    # nothing in the profile is a train setting (those would change results): resources only
    assert PROFILE["config"] == ["gpu=True"]
    train_keys = {"batch_size", "max_len", "processes", "epochs", "lr", "mode"}
    assert not train_keys & {k for rule in sets.values() for k in rule}
    assert set(NOT_TRAJECTORY) >= {"epochs", "eval_batch_size"}   # what a retry could change
    for rule, resources in sets.items():
        for name, expr in resources.items():
            grows = (isinstance(expr, str) and "attempt" in expr)
            assert not grows or name in ("mem_mb", "runtime"), (rule, name)
            if grows:
                assert _evaluate(expr, "ml-32m", 2) > _evaluate(expr, "ml-32m", 1)
    mem = sets["preprocess"]["mem_mb"]                   # measured: 5.6 and 2.6 GiB
    assert _evaluate(mem, "netflix", 1) > _evaluate(mem, "ml-32m", 1) > _evaluate(
        mem, "synthetic", 1) == _evaluate(PROFILE["default-resources"]["mem_mb"], "x", 1)
    mem = sets["sample_negatives"]["mem_mb"]
    assert _evaluate(mem, "ml-32m", 1) > _evaluate(mem, "synthetic", 1)
    # a run cut at the partition's time limit resumes on the retry: the limit stays put
    assert isinstance(sets["train"]["runtime"], int)


# --- killed under the profile's settings, with the local executor ----------------------------

def _train_process(parent: psutil.Process):
    for child in parent.children(recursive=True):
        try:
            if any(part.endswith("train.py") for part in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_killed_train_job_is_retried_and_resumes_from_its_checkpoint(clone: Path, tmp_path: Path):
    config = yaml.safe_load(TINY.read_text())
    config["train"] |= {"epochs": 8, "stopping_step": 8}
    config_path = tmp_path / "resume.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = "results/tiny/gru4rec/default/L20/seed1"
    cmd = [sys.executable, "-m", "snakemake", f"{run}/metrics.json", *WORKFLOW_PROFILE,
           "--executor", "local", "--cores", "1", "--latency-wait", "1",  # local files
           "--configfile", str(config_path)]
    proc = subprocess.Popen(cmd, cwd=clone, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    ckpt = clone / run / "checkpoint" / "last.pt"
    killed = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None and killed is None:
            if ckpt.exists() and not (clone / run / "metrics.json").exists():
                job = _train_process(psutil.Process(proc.pid))
                if job is not None:
                    job.send_signal(signal.SIGKILL)
                    killed = torch.load(ckpt, weights_only=True)["epoch"]
            time.sleep(0.01)
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None and killed < 7, "the train job was not caught mid-run"
    assert proc.returncode == 0, out[-3000:]
    log = (clone / "logs/train/tiny/gru4rec/default/L20/seed1.log").read_text()
    assert "resuming after epoch" in log
    metrics = json.loads((clone / run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 8

    # the same run, uninterrupted, in this process (same settings and threads)
    torch.set_num_threads(1)
    whole = train_and_evaluate(clone / "data/processed/tiny", tmp_path / "whole", "gru4rec", {},
                               config["train"], max_len=20, seed=1)
    assert metrics["test"] == pytest.approx(whole["test"], abs=1e-9)
    assert metrics["valid"] == pytest.approx(whole["valid"], abs=1e-9)
