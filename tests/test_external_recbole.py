"""A baseline as a rule (rules/external_recbole.smk): RecBole 1.2.1's own SASRec and GRU4Rec in
their own pinned environment, on the suite's processed data, in the results contract; and the
authors' RecGRELA (reference-recgrela: their model file, trained by RecBole) beside ours in the
fidelity table.

The last test builds that environment (.venvs/recbole, git-ignored, reused while
envs/recbole-requirements.txt is unchanged: about 1.5 min the first time) through the workflow's
own setup rule, then runs the workflow on a tiny synthetic dataset for one epoch. That run
includes the authors' RecGRELA, so its tests are marked `authors_code`: they skip, with the
reason, without a checked checkout of the authors' code (a user's clone with nothing beside it);
CI, with ../shared, runs them.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from models import REGISTRY
from recbench.data.parsers import read_interactions
from recbench.data.protocol import InterFilter, build_sequences
from recbench.external import authors_code as reference
from recbench.external.recbole_run import recbole_config, write_atomic_inter
from recbench.plan.groups import ConfigError, expand_groups, group_runs, load_external_models
from recbench.results import check_run_dir

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
EXTERNAL = load_external_models()
REQUIREMENTS = ROOT / "envs" / "recbole-requirements.txt"


# --- the environment files ----------------------------------------------------------------

def pins(lines) -> list[str]:
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def test_requirements_pin_every_package_and_numpy_below_2():
    lines = pins(REQUIREMENTS.read_text().splitlines())
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", s) for s in lines), lines
    versions = dict(s.split("==") for s in lines)
    assert versions["recbole"] == "1.2.1" and versions["torch"] == "2.13.0"
    assert int(versions["numpy"].split(".")[0]) < 2
    assert len(versions) == len(lines)                      # each package once


def test_conda_env_lists_exactly_the_requirements():
    env = yaml.safe_load((ROOT / "envs" / "recbole.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == pins(REQUIREMENTS.read_text().splitlines())


# --- the data RecBole reads, and its settings ----------------------------------------------

def test_atomic_file_gives_recbole_our_order_and_keeps_every_interaction(tmp_path):
    seqs = {"u1": ["b", "a", "b", "c"], "007": ["c", "a", "d"], "u3": ["a", "d", "c", "b", "a"]}
    pq.write_table(pa.table({"user_id": list(seqs), "item_ids": list(seqs.values())}),
                   tmp_path / "sequences.parquet")
    counts = write_atomic_inter(tmp_path / "sequences.parquet", tmp_path / "x.inter")
    assert counts == {"n_users": 3, "n_interactions": 12}
    lines = (tmp_path / "x.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert lines[1:4] == ["u1\tb\t0", "u1\ta\t1", "u1\tb\t2"]   # timestamp = position
    # read back as RecBole's atomic format and ordered by time: the same sequences
    table, stats = build_sequences(read_interactions(tmp_path / "x.inter", "atomic"),
                                   InterFilter(), "float32")
    assert dict(zip(table.column("user_id").to_pylist(),
                    table.column("item_ids").to_pylist())) == seqs
    assert stats["n_interactions"] == 12


TRAIN = {"mode": "prefix", "epochs": 4, "stopping_step": 2, "batch_size": 64,
         "eval_batch_size": 128, "lr": 0.002, "weight_decay": 0.0, "device": "cpu",
         "valid_metric": "ndcg@10", "topk": [5, 10], "eval_mode": "full",
         "restart_bad_checkpoint": False}


def test_recbole_config_maps_our_train_settings(tmp_path):
    cfg = recbole_config(EXTERNAL["recbole-sasrec"], TRAIN, 50, 2021, tmp_path)
    assert {k: cfg[k] for k in ("epochs", "stopping_step", "train_batch_size",
                                "eval_batch_size", "learning_rate", "MAX_ITEM_LIST_LENGTH",
                                "seed", "valid_metric", "topk", "gpu_id")} == {
        "epochs": 4, "stopping_step": 2, "train_batch_size": 64, "eval_batch_size": 128,
        "learning_rate": 0.002, "MAX_ITEM_LIST_LENGTH": 50, "seed": 2021,
        "valid_metric": "NDCG@10", "topk": [5, 10], "gpu_id": ""}
    assert cfg["hidden_dropout_prob"] == 0.2 and cfg["loss_type"] == "CE"
    assert cfg["user_inter_num_interval"] == cfg["item_inter_num_interval"] == "[0,inf)"
    assert cfg["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert cfg["eval_args"]["order"] == "TO" and cfg["train_neg_sample_args"] is None


@pytest.mark.parametrize("change,said", [
    ({"mode": "sequence"}, "train.mode is 'sequence', but RecBole's runner supports only "
                           "'prefix'"),
    ({"eval_mode": "uni100"}, "train.eval_mode is 'uni100'"),
    ({"grad_clip": 1.0}, "train.grad_clip has no RecBole counterpart"),
    ({"valid_metric": "ndcg@20"}, "needs k=20 in train.topk [5, 10]"),
])
def test_recbole_config_refuses_what_it_cannot_honour(tmp_path, change, said):
    with pytest.raises(ValueError) as err:
        recbole_config(EXTERNAL["recbole-sasrec"], TRAIN | change, 50, 1, tmp_path)
    assert said in str(err.value)


# --- external models in experiment groups --------------------------------------------------

BASE = {"datasets": ["toy"], "models": ["popularity"], "max_lens": [20], "seeds": [1],
        "model_overrides": {}, "train": {"epochs": 3}, "train_by_dataset": {},
        "run_groups": ["main", "solo"], "external_models": ["recbole-sasrec"],
        "groups": {"main": {}, "solo": {"models": ["recgrela"]}}}


def expand(**changes):
    return expand_groups(copy.deepcopy(BASE) | changes, SCHEMA, {"toy": {}}, EXTERNAL)


def test_external_models_join_groups_that_keep_the_top_level_models():
    groups = expand()
    assert [r.path for r in group_runs(groups, "main")] == [
        "results/toy/popularity/default/L20/seed1", "results/toy/recbole-sasrec/default/L20/seed1"]
    assert [r.model for r in group_runs(groups, "solo")] == ["recgrela"]
    assert [r.model for r in group_runs(expand(external_models=[]), "main")] == ["popularity"]
    # a group may name one itself; option sets meant for other models skip it
    groups = expand(groups={"main": {}, "solo": {"models": ["recgrela", "recbole-gru4rec"],
                                                 "overrides": [{}, {"num_layers": 1}]}})
    assert [r.path for r in group_runs(groups, "solo")] == [
        "results/toy/recgrela/default/L20/seed1", "results/toy/recgrela/num_layers=1/L20/seed1",
        "results/toy/recbole-gru4rec/default/L20/seed1"]


def test_config_mistakes_with_external_models_are_named():
    with pytest.raises(ConfigError, match=r"external_models: unknown external model\(s\) "
                                          r"\['recbole-bert4rec'\]"):
        expand(external_models=["recbole-bert4rec"])
    with pytest.raises(ConfigError, match=r"'recbole-sasrec' is an external model .* takes no "
                                          r"model options, got \['n_layers'\]"):
        expand(model_overrides={"recbole-sasrec": {"n_layers": 1}})
    with pytest.raises(ConfigError, match=r"groups\.main: results/toy/recbole-sasrec/default/"
                                          r"L20/seed1: external model 'recbole-sasrec' .* "
                                          r"supports train\.mode \['prefix'\] only"):
        expand(train={"epochs": 3, "mode": "sequence"})
    with pytest.raises(ConfigError, match=r"unknown model 'recbole-x'.*external models"):
        expand(groups={"main": {"models": ["recbole-x"]}, "solo": {}})


def test_catalogue_names_never_shadow_registered_models(tmp_path):
    assert not set(EXTERNAL) & set(REGISTRY)
    bad = tmp_path / "external.yaml"
    bad.write_text(yaml.safe_dump({"sasrec": {"rule": "r", "description": "d"}}))
    with pytest.raises(ConfigError, match="has the name of a registered model"):
        load_external_models(bad)
    bad.write_text(yaml.safe_dump({"x": {"description": "d"}}))
    with pytest.raises(ConfigError, match="needs `rule`"):
        load_external_models(bad)


# --- the rule itself, in its own environment, through Snakemake -------------------------------

TINY = yaml.safe_load((ROOT / "tests" / "workflow" / "tiny.yaml").read_text())
CONFIG = {
    "datasets": ["tiny"], "dataset_registry": TINY["dataset_registry"],
    "models": ["recgrela"], "model_overrides": {},
    "external_models": ["recbole-sasrec", "recbole-gru4rec"],
    "max_lens": [20], "seeds": [1], "train_by_dataset": {},
    "train": {"epochs": 1, "stopping_step": 1, "batch_size": 128, "eval_batch_size": 256,
              "device": "cpu"},
    "run_groups": ["main", "fidelity"],
    "groups": {"main": {"paper": "table2"},
               "fidelity": {"models": ["recgrela", "reference-recgrela"]}},
    "profile": {"run_studies": []},
}
TARGETS = ["reports/tables/main.md", "reports/tables/runs.md", "reports/tables/fidelity.md"]
CHECKOUT = reference.find_checkout()


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    """A copy of the workflow (as a user's clone) whose .venvs/ is the checkout's, so the pinned
    environment is built once by rule recbole_env and reused by later runs."""
    workdir = tmp_path_factory.mktemp("recbole_clone")
    for name in ["Snakefile", "rules", "config", "scripts", "profiles", "environment.yml",
                 "envs"]:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, workdir / name)
    (workdir / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "paper_numbers.yaml", workdir / "reports")
    (ROOT / ".venvs").mkdir(exist_ok=True)
    (workdir / ".venvs").symlink_to(ROOT / ".venvs")
    (workdir / "recbole.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {k: v for k, v in os.environ.items() if k != "RECBENCH_DATA_MIRROR"}
    assert CHECKOUT is not None, f"no reference checkout in {reference.candidates()}"
    env["RECGRELA_REFERENCE"] = str(CHECKOUT)      # rule reference_code copies and checks it
    done = subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, "--cores", "2",
                           "--configfile", "recbole.yaml"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=1200)
    logs = "".join(f"\n--- {p}\n{p.read_text()[-3000:]}"
                   for p in sorted((workdir / "logs").rglob("*.log")))
    assert done.returncode == 0, done.stderr[-3000:] + logs
    return workdir


@pytest.mark.authors_code
@pytest.mark.parametrize("model,recbole_model", [("recbole-sasrec", "SASRec"),
                                                 ("recbole-gru4rec", "GRU4Rec"),
                                                 ("reference-recgrela", "RecGRELA")])
def test_rule_writes_the_contract_in_its_own_environment(workflow_run, model, recbole_model):
    run_dir = workflow_run / f"results/tiny/{model}/default/L20/seed1"
    run = check_run_dir(run_dir)                                  # the contract holds
    assert (run["model"], run["variant"], run["status"], run["eval_mode"]) == (
        model, "default", "ok", "full")
    assert (run["framework"], run["recbole_model"]) == ("RecBole 1.2.1", recbole_model)
    assert run["numpy"].startswith("1.")                          # not the suite's NumPy 2
    assert run["epochs_run"] == 1 and run["best_epoch"] == 0
    for name in ["history.csv", "valid_ranks.parquet"]:
        assert (run_dir / name).exists()
    # our ranks (suite's tie rule) against RecBole's own evaluator (rounded to 4 decimals)
    for metric, value in run["recbole_test"].items():
        assert run["test"][metric] == pytest.approx(value, abs=5.1e-5), metric
    # the same users as the suite's own run: RecBole filtered nothing, split the same way
    ours = pd.read_parquet(workflow_run / "results/tiny/recgrela/default/L20/seed1/"
                           "test_ranks.parquet")
    theirs = pd.read_parquet(run_dir / "test_ranks.parquet")
    assert sorted(theirs.user_id) == sorted(ours.user_id) and len(theirs) == 60
    assert not (workflow_run / "results/tiny" / model / "default/L20/seed1/recbole_work").exists()


@pytest.mark.authors_code
def test_external_runs_join_the_tables_and_the_paired_test(workflow_run):
    main = (workflow_run / "reports/tables/main.md").read_text()
    assert "SASRec (RecBole)" in main and "GRU4Rec (RecBole)" in main
    assert "tiny: 2 baselines, 60 users" in main      # RecGRELA's paired test against both
    runs = (workflow_run / "reports/tables/runs.md").read_text()
    assert "recbole-sasrec" in runs and "recbole-gru4rec" in runs
    assert (workflow_run / "logs/recbole_env.log").exists() or \
        (ROOT / ".venvs/recbole/installed").exists()


@pytest.mark.authors_code
def test_the_authors_recgrela_trains_from_the_checked_copy_beside_ours(workflow_run):
    run = check_run_dir(workflow_run / "results/tiny/reference-recgrela/default/L20/seed1")
    assert run["reference_commit"] == reference.COMMIT
    # the reference config's model options, not RecBole's defaults: 4 GRELA blocks of 64
    options = run["config"]["recbole"]
    assert (options["num_layers"], options["hidden_size"], options["drop_path"]) == (4, 64, 0.1)
    assert (workflow_run / "resources/RecGRELA/.verified").read_text().strip() == \
        reference.COMMIT
    fidelity = (workflow_run / "reports/tables/fidelity.md").read_text()
    row = next(line for line in fidelity.splitlines() if "| RecGRELA | NDCG@10 |" in line)
    assert "(n=1)" in row.split("|")[5] and "(n=1)" in row.split("|")[6]   # ours, authors'
