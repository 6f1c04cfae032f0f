"""The whole Snakemake DAG on a tiny config, run in a copy of the repository (as a user's clone):
it runs, a rerun has nothing to do, and bad configs fail before any job with the key named."""
import json
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
def clone(tmp_path_factory, copy_workflow) -> Path:
    workdir = tmp_path_factory.mktemp("clone")
    copy_workflow(workdir)
    return workdir


@pytest.fixture(scope="module")
def finished(clone: Path) -> Path:
    done = snakemake(clone)
    assert done.returncode == 0, done.stderr[-3000:]
    return clone


RUNS = ["popularity/default", "gru4rec/default", "gru4rec/hidden_size=24"]


def test_whole_dag_runs_and_writes_the_contract_files(finished: Path):
    stats = json.loads((finished / "data/processed/tiny/stats.json").read_text())
    assert {"n_users", "n_items", "n_interactions", "avg_seq_len", "sparsity"} <= set(stats)
    for table in ["table1_datasets", "runs", "main", "width"]:
        for ext in ["md", "csv", "tex"]:
            assert (finished / f"reports/tables/{table}.{ext}").stat().st_size > 0
    for run_name in RUNS:
        model, variant = run_name.split("/")
        run = finished / f"results/tiny/{run_name}/L20/seed1"
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["dataset"], metrics["model"], metrics["variant"], metrics["max_len"],
                metrics["seed"], metrics["status"]) == ("tiny", model, variant, 20, 1, "ok")
        assert set(metrics["test"]) >= {"hit@5", "ndcg@10", "mrr@10"}
        for name in ["history.csv", "test_ranks.parquet", "valid_ranks.parquet"]:
            assert (run / name).exists()
        assert (finished / f"logs/train/tiny/{run_name}/L20/seed1.log").exists()
        assert (finished / f"logs/benchmarks/train/tiny/{run_name}/L20/seed1.tsv").exists()
    assert json.loads((finished / "results/tiny/gru4rec/hidden_size=24/L20/seed1/metrics.json")
                      .read_text())["config"]["model_config"]["hidden_size"] == 24
    width = (finished / "reports/tables/width.md").read_text()
    assert "hidden_size=24" in width and "default" in width


def test_profile_cells_tables_and_figures_with_an_oom_cell(finished: Path):
    cell = json.loads((finished / "results/profile/cpu/stored/gru4rec/default/L20/B16.json")
                      .read_text())
    assert cell["status"] == "ok" and cell["seconds_per_step"] > 0 and cell["peak_rss_mb"] > 0
    oom = json.loads((finished / "results/profile/cpu/stored/sasrec/default/L1600/B16.json")
                     .read_text())
    assert (oom["status"], oom["reason"]) == ("oom", "out of memory (3 GB address space)")
    table = (finished / "reports/tables/profile_tiny.md").read_text()
    assert "OOM: out of memory (3 GB address space)" in table
    for figure in ["profile_tiny", "group_width", "fig3_main", "curves_main"]:
        for ext in ["png", "svg"]:
            assert (finished / f"reports/figures/{figure}.{ext}").stat().st_size > 5_000


def test_html_report_bundles_every_table_and_figure(finished: Path):
    done = snakemake(finished, "--report", "report.html")
    assert done.returncode == 0, done.stderr[-3000:]
    html = (finished / "report.html").read_text()
    for name in ["profile_tiny.png", "fig3_main.png", "curves_main.png", "group_width.png",
                 "main.csv", "runs.csv", "table1_datasets.csv", "profile_tiny.csv"]:
        assert name in html, name
    # categories named after the paper's tables and figures; each table as published (its
    # HTML page) beside its CSV; the front page says what ran, with links to the categories
    at = html.index("var categories = ") + len("var categories = ")
    categories = json.JSONDecoder().raw_decode(html, at)[0]
    assert set(categories) == {"Table 1", "Table 2", "Fig. 3", "Beyond the paper",
                               "Training curves", "Every run"}
    assert categories["Table 2"] == {"main": ["reports/tables/main.csv",
                                              "reports/tables/main.html"]}
    assert "reports/tables/width.html" in categories["Beyond the paper"]["width"]
    page = (finished / "reports/tables/main.html").read_text()
    assert '<td class="best">' in page and '<tr class="paper' in page
    front = (finished / "reports/front_page.rst").read_text()
    assert "3 runs (3 ok) of 2 models (Pop, GRU4Rec)" in front and "`Table 2`_" in front
    assert "showCategory('Table%202')" in html          # the front page's link, rendered
    assert "System Message" not in html


def test_rerun_has_nothing_to_do(finished: Path):
    again = snakemake(finished, "--dry-run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def _with_config(clone: Path, tmp_path: Path, **changes) -> subprocess.CompletedProcess:
    config = yaml.safe_load(TINY.read_text()) | changes
    return _dry_run(clone, tmp_path, config)


def _dry_run(clone: Path, tmp_path: Path, config: dict, *targets: str):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "1", "--dry-run",
           "--configfile", str(path)]   # targets first: --configfile takes several files
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


def _tiny_entry(**changes) -> dict:
    entry = yaml.safe_load(TINY.read_text())["dataset_registry"]["tiny"] | changes
    return {k: v for k, v in entry.items() if v is not ...}


@pytest.mark.parametrize("changes, named", [
    # a dataset registry entry: unknown key, wrong type, unknown format, unknown time key
    ({"dataset_registry": {"tiny": _tiny_entry(item_min=..., item_mn=5)}},
     ["'tiny'", "item_mn", "allowed", "item_min"]),
    ({"dataset_registry": {"tiny": _tiny_entry(user_min="5")}}, ["'tiny'", "user_min"]),
    ({"dataset_registry": {"tiny": _tiny_entry(format="tsv")}}, ["'tiny'", "format", "atomic"]),
    ({"dataset_registry": {"tiny": _tiny_entry(time_key="float16")}},
     ["'tiny'", "time_key", "float32_minmax"]),
    # models and their options
    ({"models": ["popularity", "sasrecc"]}, ["sasrecc", "registered models"]),
    ({"model_overrides": {"sasrec": {"hiden_size": 32}}}, ["sasrec", "hiden_size"]),
    # groups
    ({"run_groups": ["main", "widht"]}, ["widht", "unknown group"]),
    ({"groups": {"main": {}, "width": {"models": ["gru4rec"], "overrides": [{"hiden": 2}]}}},
     ["groups.width", "hiden"]),
    # train options of issue 28: arithmetic and compilation
    ({"train": {"precision": "fp16"}}, ["precision", "fp16", "bf16"]),
    ({"train": {"compile": "yes"}}, ["compile", "'yes'", "boolean"]),
    ({"groups": {"main": {"train": {"precision": "int8"}}, "width": {"models": ["gru4rec"]}}},
     ["groups.main.train", "precision", "int8"]),
])
def test_config_error_fails_the_dry_run_naming_the_key(clone, tmp_path, changes, named):
    done = _with_config(clone, tmp_path, **changes)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    for word in named:
        assert word in said, (word, said[-2000:])


def test_model_wildcard_accepts_registered_models_only(clone, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    target = "results/tiny/{}/default/L20/seed1/metrics.json"
    assert _dry_run(clone, tmp_path, config, target.format("popularity")).returncode == 0
    done = _dry_run(clone, tmp_path, config, target.format("popularityy"))
    assert done.returncode != 0   # no rule makes it: the model wildcard lists registered names
    assert "MissingRuleException" in done.stdout + done.stderr
