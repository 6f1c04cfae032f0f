"""The whole Snakemake DAG on a tiny config, run in a copy of the repository (as a user's clone):
it runs, a rerun has nothing to do, and bad configs fail before any job with the key named."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "workflow" / "tiny.yaml"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(TINY), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("clone")
    for name in ["Snakefile", "rules", "config", "scripts", "profiles"]:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    (workdir / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "paper_numbers.yaml", workdir / "reports")
    return workdir


@pytest.fixture(scope="module")
def finished(clone: Path) -> Path:
    done = snakemake(clone)
    assert done.returncode == 0, done.stderr[-3000:]
    return clone


def test_whole_dag_runs_and_writes_the_contract_files(finished: Path):
    stats = json.loads((finished / "data/processed/tiny/stats.json").read_text())
    assert {"n_users", "n_items", "n_interactions", "avg_seq_len", "sparsity"} <= set(stats)
    assert (finished / "reports/dataset_stats.md").exists()
    results = (finished / "reports/results.md").read_text()
    assert "| tiny | gru4rec | 20 | 1 |" in results and "| tiny | popularity | 20 | 1 |" in results
    for model in ["popularity", "gru4rec"]:
        run = finished / f"results/tiny/{model}/L20/seed1"
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics["test"]) >= {"hit@5", "ndcg@10", "mrr@10"}
        assert (run / "history.csv").exists() and (run / "test_ranks.parquet").exists()
        assert (finished / f"logs/train/tiny/{model}/L20/seed1.log").exists()


def test_rerun_has_nothing_to_do(finished: Path):
    again = snakemake(finished, "--dry-run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def _with_config(clone: Path, tmp_path: Path, **changes) -> subprocess.CompletedProcess:
    config = yaml.safe_load(TINY.read_text()) | changes
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", str(path)]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=300)


def test_unknown_dataset_is_refused_by_name(clone: Path, tmp_path: Path):
    done = _with_config(clone, tmp_path, datasets=["ml-3m"])
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "ml-3m" in said and "unknown dataset" in said


def test_unknown_key_is_refused_by_name(clone: Path, tmp_path: Path):
    done = _with_config(clone, tmp_path, max_length=[50])
    assert done.returncode != 0
    assert "max_length" in done.stdout + done.stderr


def test_wrong_type_is_refused_by_name(clone: Path, tmp_path: Path):
    done = _with_config(clone, tmp_path, seeds="2020")
    assert done.returncode != 0
    assert "seeds" in done.stdout + done.stderr
