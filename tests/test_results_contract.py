"""The results contract (config/results_schema.yaml, recbench/results.py): a run directory
that lacks a field fails with the file and the field named, whatever rule wrote it; the table
scripts check every run they read."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from jsonschema import Draft202012Validator

from recbench.results import (
    SCHEMA_PATH,
    ResultsError,
    check_metrics,
    check_run_dir,
    read_run,
    read_test_ranks,
    required_fields,
    results_schema,
)

ROOT = Path(__file__).parents[1]
RUN = {"dataset": "tiny", "model": "recbole-sasrec", "variant": "default", "max_len": 20,
       "seed": 1, "status": "ok", "reason": None, "eval_mode": "full",
       "valid": {"hit@10": 0.5, "ndcg@10": 0.25}, "test": {"hit@10": 0.4, "ndcg@10": 0.2},
       "best_epoch": 0, "epochs_run": 1, "seconds_per_epoch": 1.5, "peak_memory_mb": 100.0,
       "peak_memory_kind": "cpu_peak_rss", "device": "cpu", "n_test_users": 3}
RANKS = pd.DataFrame({"user_id": ["7", "8", "9"], "rank": [1, 12, 3]})


def write_run(run_dir: Path, run=RUN, ranks=RANKS) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(run))
    if ranks is not None:
        ranks.to_parquet(run_dir / "test_ranks.parquet", index=False)
    return run_dir / "metrics.json"


def without(key: str) -> dict:
    run = copy.deepcopy(RUN)
    del run[key]
    return run


def test_a_complete_run_passes(tmp_path):
    write_run(tmp_path / "run")
    assert check_run_dir(tmp_path / "run")["model"] == "recbole-sasrec"
    assert read_test_ranks(tmp_path / "run" / "metrics.json", RUN).equals(RANKS)


def test_schema_is_valid_and_every_field_is_described():
    schema = results_schema()
    Draft202012Validator.check_schema(schema)
    assert all(spec.get("description") for spec in schema["properties"].values())
    assert required_fields() == ["dataset", "model", "variant", "max_len", "seed", "status",
                                 "eval_mode"]


@pytest.mark.parametrize("field", ["dataset", "model", "variant", "max_len", "seed", "status",
                                   "eval_mode"])
def test_missing_field_names_the_file_and_the_field(tmp_path, field):
    path = write_run(tmp_path / "run", without(field))
    with pytest.raises(ResultsError) as err:
        read_run(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: missing field {field!r}: ")
    assert results_schema()["properties"][field]["description"].split()[0] in msg
    assert SCHEMA_PATH.name in msg


def test_ok_run_without_test_metrics_names_the_field(tmp_path):
    path = write_run(tmp_path / "run", without("test"))
    with pytest.raises(ResultsError, match=r"metrics\.json: missing field 'test' \(status "
                                           r"'ok'\): Test metrics"):
        check_run_dir(tmp_path / "run")
    empty = {**RUN, "test": {}}
    with pytest.raises(ResultsError, match=r"field 'test' is empty"):
        check_metrics(empty, str(path))


def test_an_oom_run_needs_no_metrics_and_no_ranks(tmp_path):
    run = {**without("test"), "status": "oom", "reason": "CUDA out of memory"}
    write_run(tmp_path / "run", run, ranks=None)
    assert check_run_dir(tmp_path / "run")["status"] == "oom"


@pytest.mark.parametrize("change,said", [
    ({"max_len": "20"}, "field 'max_len' is '20'"),
    ({"status": "done"}, "field 'status' is 'done'"),
    ({"eval_mode": "sampled"}, "field 'eval_mode' is 'sampled'"),
    ({"test": {"recall@10": 0.1}}, "field 'test' has a metric named 'recall@10'"),
    ({"test": {"ndcg@10": 1.5}}, "field 'test.ndcg@10' is 1.5"),
    ({"seconds_per_epoch": -1}, "field 'seconds_per_epoch' is -1"),
])
def test_wrong_value_names_the_field(tmp_path, change, said):
    path = write_run(tmp_path / "run", {**RUN, **change})
    with pytest.raises(ResultsError) as err:
        read_run(path)
    assert str(err.value).startswith(f"{path}: ") and said in str(err.value)


@pytest.mark.parametrize("change,key", [
    ({"test": {"hit@10": 0.4, "ndcg@10": float("nan")}}, "test.ndcg@10"),
    ({"valid": {"hit@10": float("inf"), "ndcg@10": 0.25}}, "valid.hit@10"),
    ({"seconds_per_epoch": float("nan")}, "seconds_per_epoch"),
])
def test_nan_metrics_fail_naming_the_file_and_the_key(tmp_path, change, key):
    path = write_run(tmp_path / "run", {**RUN, **change})      # json writes NaN / Infinity
    assert "NaN" in path.read_text() or "Infinity" in path.read_text()
    with pytest.raises(ResultsError) as err:
        read_run(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and f"field {key!r} is not a finite number" in msg
    with pytest.raises(ResultsError, match=f"field {key!r} is not a finite number"):
        check_metrics({**RUN, **change}, str(path))


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_run(tmp_path / "run", {**without("seed"), "status": "done"})
    msg = str(pytest.raises(ResultsError, read_run, path).value)
    assert "missing field 'seed'" in msg and "field 'status' is 'done'" in msg


def test_unreadable_metrics_name_the_file(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"metrics\.json: not valid JSON"):
        read_run(tmp_path / "metrics.json")
    with pytest.raises(ResultsError, match=r"nothing\.json: cannot read"):
        read_run(tmp_path / "nothing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ResultsError, match=r"list\.json: must be a JSON object"):
        read_run(tmp_path / "list.json")


@pytest.mark.parametrize("ranks,said", [
    (None, "test_ranks.parquet: missing; a run with status 'ok' needs its per-user test ranks"),
    (RANKS.rename(columns={"rank": "position"}), "missing column(s) ['rank']"),
    (RANKS.assign(rank=[1.0, 2.5, 3.0]), "column 'rank' must be integers"),
    (RANKS.assign(rank=[1, 0, 3]), "column 'rank' must be >= 1 (1-based); row 1 has 0"),
    (RANKS.assign(user_id=[7, 8, 9]), "column 'user_id' must hold the users' original tokens"),
    (RANKS.assign(user_id=["7", "7", "9"]), "column 'user_id' repeats user '7'"),
    (RANKS.iloc[:2], "2 rows, but metrics.json field 'n_test_users' is 3"),
])
def test_bad_ranks_name_the_file_and_the_column(tmp_path, ranks, said):
    write_run(tmp_path / "run", ranks=ranks)
    with pytest.raises(ResultsError) as err:
        check_run_dir(tmp_path / "run")
    assert str(err.value).startswith(str(tmp_path / "run" / "test_ranks.parquet"))
    assert said in str(err.value)


def test_table_script_stops_with_one_line_naming_file_and_field(tmp_path):
    """scripts/runs_table.py as Snakemake runs it: a run without `status` stops the table with
    one line naming the metrics file and the field, not a traceback."""
    good = write_run(tmp_path / "a")
    bad = write_run(tmp_path / "b", without("status"))
    log = tmp_path / "runs_table.log"
    out = {k: str(tmp_path / f"runs.{k}") for k in ("md", "csv", "tex")}
    code = (
        "import runpy, types\n"
        "ns = types.SimpleNamespace\n"
        f"sm = ns(rule='runs_table', input=ns(metrics=[{str(good)!r}, {str(bad)!r}],"
        f" paper={str(ROOT / 'reports' / 'paper_numbers.yaml')!r}), output=ns(**{out!r}),"
        f" log=[{str(log)!r}], params=ns(models={{}}))\n"
        f"runpy.run_path({str(ROOT / 'scripts' / 'runs_table.py')!r},"
        " init_globals={'snakemake': sm})\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"runs_table: {bad}: missing field 'status'" in run.stderr
    assert f"{bad}: missing field 'status'" in log.read_text()
    assert not Path(out["md"]).exists()


def test_engine_result_fields_are_in_the_schema():
    """Every field the contract types is one the engine writes (the names cannot drift)."""
    engine = (ROOT / "recbench" / "training" / "engine.py").read_text()
    for field in results_schema()["properties"]:
        assert f'"{field}"' in engine, field
    assert yaml.safe_load(SCHEMA_PATH.read_text())["required"] == required_fields()
