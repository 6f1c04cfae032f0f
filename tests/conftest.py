"""What the tests share.

Helper modules beside the tests (imported by name; pytest puts this folder on sys.path):
    toy_models.py       tiny models and data for engine tests; `write_processed`
    model_contract.py   the model contract's checks, run on every model and on a new one
    slow_reference.py   explicit float64 equations the models are checked against
    reference_code.py   import a file of the authors' checkout with stand-ins
    recbole_reference.py  RecBole's own preprocessing, for the protocol tests

Fixtures:
    copy_workflow       a function: copy what a workflow run needs into a folder (a user's clone)
    bernoulli_dropout   every models.base Dropout draws nn.Dropout's Bernoulli mask, so a model
                        in training mode consumes the RNG as the authors' code does (the same
                        seed, the same masks); the gap draw is tested in test_fast_paths.py

Markers that skip, with the reason, where a machine lacks what a test needs (a user's clone
has no ../shared beside it; CI has it):
    real_data       the ML-100K file of the data mirror ($RECBENCH_DATA_MIRROR, else ../shared/data)
    authors_code    a checked checkout of TBI805/RecGRELA (recbench/external/authors_code.py)
    gpu             CUDA
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from recbench.external.authors_code import candidates, find_checkout

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("RECBENCH_DATA_MIRROR") or ROOT.parent / "shared" / "data")
ML100K = MIRROR / "ml-100k" / "ml-100k.inter"


def _missing(marker: str) -> str | None:
    """Why a test with `marker` cannot run here, or None."""
    if marker == "real_data" and not ML100K.exists():
        return f"no {ML100K} (set RECBENCH_DATA_MIRROR)"
    if marker == "authors_code" and find_checkout() is None:
        return (f"no checked checkout of the authors' code in {[str(c) for c in candidates()]} "
                "(set RECGRELA_REFERENCE, or run rule reference_code)")
    if marker == "gpu" and not torch.cuda.is_available():
        return "needs CUDA"
    return None


def pytest_collection_modifyitems(config, items):
    reasons = {m: _missing(m) for m in ("real_data", "authors_code", "gpu")}
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


WORKFLOW_FILES = ["Snakefile", "rules", "config", "scripts", "profiles", "environment.yml"]


def _copy_workflow(workdir: Path) -> Path:
    """The workflow's own files in `workdir`, as a user's clone has them: the Snakefile, rules,
    config, scripts, profiles, the environment, the paper's numbers and the captions."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, workdir / name)
    (workdir / "reports").mkdir(exist_ok=True)
    shutil.copy(ROOT / "reports" / "paper_numbers.yaml", workdir / "reports")
    shutil.copytree(ROOT / "reports" / "captions", workdir / "reports" / "captions")
    return workdir


@pytest.fixture(scope="session")
def copy_workflow():
    """`copy_workflow(folder) -> folder`: the workflow's files copied there (module fixtures
    of the workflow tests build their clone with it)."""
    return _copy_workflow


@pytest.fixture
def bernoulli_dropout(monkeypatch):
    import models.base
    monkeypatch.setattr(models.base, "GAP_MAX_P", 0.0)   # every p > 0 goes to F.dropout
