"""Lost, damaged or changed files on a finished workflow (a copy of the repository, as a user's
clone; a tiny dataset from a data mirror, two models, one group):

- a deleted metrics.json is rebuilt by a plain `snakemake` and the tables after it;
- a truncated sequences.parquet (or raw copy) is rebuilt by its own rule, and no finished run is
  deleted or retrained; a newer file time alone reruns nothing;
- a changed registry entry or mirror file retrains (the content really changed), and a bad
  mirror file is named in the error;
- a run another process trains is refused by the run folder's lock.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recbench.data.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "workflow" / "tiny.yaml").read_text())
SYNTHETIC = TINY["dataset_registry"]["tiny"]["synthetic"]
CONFIG = {
    **TINY,
    "dataset_registry": {"tiny": {"format": "atomic", "url": None, "file": "tiny.inter",
                                  "user_min": 5, "item_min": 5, "time_key": "exact"}},
    "train": {**TINY["train"], "epochs": 1},
    "run_groups": ["main"],
    "groups": {"main": {"paper": "table2"}},
    "profile": {"run_studies": []},
}
RUN = "results/tiny/gru4rec/default/L20/seed1"
TABLE = "reports/tables/main.md"


def snakemake(workdir: Path, *args: str, config: dict | None = None):
    path = workdir / "integrity.yaml"
    if config is not None or not path.exists():
        path.write_text(yaml.safe_dump(config or CONFIG))
    env = {**os.environ, "RECBENCH_DATA_MIRROR": "mirror",       # relative: copies keep it
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "snakemake", *args, "--cores", "2", "--configfile", str(path)]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=900)


def dry_run_jobs(workdir: Path, config: dict | None = None, *args: str) -> dict[str, int]:
    """{rule: count} of the jobs a plain `snakemake` would run now."""
    done = snakemake(workdir, "--dry-run", *args, config=config)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    if "Nothing to be done" in said:
        return {}
    table = said.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
    return {rule: int(n) for rule, n in (line.split() for line in table) if rule != "total"}


def results_state(workdir: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(workdir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted((workdir / "results").rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, copy_workflow) -> Path:
    workdir = tmp_path_factory.mktemp("integrity")
    copy_workflow(workdir)
    write_synthetic(workdir / "mirror" / "tiny" / "tiny.inter", **SYNTHETIC)
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


@pytest.fixture
def clone(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished workflow (file times and Snakemake's records kept)."""
    return Path(shutil.copytree(finished, tmp_path / "w", symlinks=True))


def test_a_finished_workflow_has_nothing_to_do(clone: Path):
    assert dry_run_jobs(clone) == {}
    record = json.loads((clone / "data/processed/tiny/checksums.json").read_text())
    assert record["files"]["sequences.parquet"]["sha256"] == \
        sha256(clone / "data/processed/tiny/sequences.parquet")


def test_a_deleted_metrics_json_is_retrained_and_the_tables_rebuilt(clone: Path):
    table = clone / TABLE
    before = table.stat().st_mtime_ns
    (clone / RUN / "metrics.json").unlink()
    jobs = dry_run_jobs(clone)
    assert jobs.get("train") == 1 and jobs.get("group_table") == 1, jobs
    # while another process trains that run, the job is refused by the run folder's lock
    from recbench.training.run_lock import run_lock
    with run_lock(clone / RUN):
        refused = snakemake(clone)
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert f"{clone / RUN}" in said or f"{RUN} is being trained" in said, said[-3000:]
    assert f"process {os.getpid()} on host" in said
    done = snakemake(clone)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((clone / RUN / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert table.stat().st_mtime_ns > before          # the table was made again after it
    assert (clone / TABLE).stat().st_mtime_ns >= (clone / RUN / "metrics.json").stat().st_mtime_ns
    log = (clone / "logs/train/tiny/gru4rec/default/L20/seed1.log").read_text()
    assert "is being trained by process" in log and "===== attempt 3 of train" in log
    assert dry_run_jobs(clone) == {}


def test_a_truncated_parquet_is_rebuilt_by_preprocess_and_no_run_is_retrained(clone: Path):
    parquet = clone / "data/processed/tiny/sequences.parquet"
    good = parquet.read_bytes()
    runs = results_state(clone)
    parquet.write_bytes(good[: len(good) // 2])
    # the rebuilt data redraw what reads their statistics: Table 1 and the report's front page
    assert dry_run_jobs(clone) == {"all": 1, "preprocess": 1, "dataset_table": 1,
                                   "front_page": 1}
    done = snakemake(clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sequences.parquet has" in done.stderr and "rule preprocess rebuilds it" in done.stderr
    assert parquet.read_bytes() == good
    assert results_state(clone) == runs                 # nothing deleted, nothing retrained
    assert "===== attempt 2 of preprocess" in (clone / "logs/preprocess/tiny.log").read_text()
    assert dry_run_jobs(clone) == {}                    # and the rebuild is not asked again


def test_a_newer_file_time_alone_reruns_no_data_rule_and_no_training(clone: Path):
    for name in ["data/processed/tiny/sequences.parquet", "data/processed/tiny/stats.json",
                 "data/raw/tiny/tiny.inter"]:
        os.utime(clone / name)
    # as for files over Snakemake's checksum limit (1 MB), whose content it does not compare
    jobs = dry_run_jobs(clone, None, "--max-checksum-file-size", "0")
    # Table 1 and the report's front page, which read the statistics, are redrawn
    assert set(jobs) <= {"all", "dataset_table", "front_page"}, jobs


def test_a_truncated_raw_copy_is_fetched_again_without_retraining(clone: Path):
    raw = clone / "data/raw/tiny/tiny.inter"
    raw.write_bytes(raw.read_bytes()[:1000])
    jobs = dry_run_jobs(clone)
    assert jobs.get("fetch_raw") == 1 and "train" not in jobs, jobs


def test_a_changed_registry_entry_retrains(clone: Path):
    config = json.loads(json.dumps(CONFIG))
    config["dataset_registry"]["tiny"]["item_min"] = 6
    jobs = dry_run_jobs(clone, config)
    assert jobs.get("preprocess") == 1 and jobs.get("train") == 2, jobs


def test_a_changed_mirror_file_is_fetched_again_and_a_bad_one_is_named(clone: Path):
    mirror = clone / "mirror/tiny/tiny.inter"
    good = mirror.read_bytes()
    mirror.write_bytes(good[: len(good) // 2] + b"oops\n")   # a half-copied file
    jobs = dry_run_jobs(clone)
    assert jobs.get("fetch_raw") == 1 and jobs.get("train") == 2, jobs
    failed = snakemake(clone)
    assert failed.returncode != 0
    said = failed.stdout + failed.stderr
    assert f"is a copy of {mirror}" in said, said[-3000:]
    mirror.write_bytes(good)                             # the mirror file fixed: picked up
    done = snakemake(clone)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sha256(clone / "data/raw/tiny/tiny.inter") == sha256(mirror)
    assert dry_run_jobs(clone) == {}
