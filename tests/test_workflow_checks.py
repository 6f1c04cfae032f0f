"""What `snakemake --dry-run` says about a config before any job, in a copy of the repository:
a config mistake in one or two lines naming the key and the nearest valid one; an external
model's `rule:` checked against the workflow's rules; external models declared in a user's
config. (tests/test_workflow.py runs the whole DAG.)"""
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from recbench.workflow import check_config, config_problem

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "workflow" / "tiny.yaml"
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())


@pytest.fixture(scope="module")
def clone(tmp_path_factory, copy_workflow) -> Path:
    workdir = tmp_path_factory.mktemp("clone")
    copy_workflow(workdir)
    return workdir


def dry_run(clone: Path, tmp_path: Path, config: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile",
           str(path)]
    return subprocess.run(cmd, cwd=clone, capture_output=True, text=True, timeout=300)


def tiny(**changes) -> dict:
    return yaml.safe_load(TINY.read_text()) | changes


# --- item 9: a config mistake in one or two lines --------------------------------------------

def problem(config: dict) -> str:
    with pytest.raises(ValueError) as err:
        check_config(config, SCHEMA)
    return str(err.value)


@pytest.mark.parametrize("changes, said", [
    ({"train": {"epoch": 3}}, "config train.epoch: unknown key; did you mean 'epochs'?"),
    ({"datasetz": ["ml-1m"]}, "config datasetz: unknown key; did you mean 'datasets'?"),
    ({"profile": {"studies": {"s": {"max_lens": [10], "model": ["sasrec"]}}}},
     "config profile.studies.s.model: unknown key; did you mean 'models'?"),
    ({"groups": {"main": {"paper": "table4"}}},
     "config groups.main.paper: 'table4' is not one of ['table2', 'table3', 'fig4', "
     "'fig5_position_encoding', 'fig5_activation', 'fig8']; did you mean 'table3'?"),
    ({"seeds": "2020"}, "config seeds: '2020' is not of type array"),
    ({"train": {"device": "cuda7"}}, "config train.device: 'cuda7' does not match"),
    ({"xyzzy": 1}, "config xyzzy: unknown key; valid keys: data_mirror, dataset_registry,"),
])
def test_a_config_mistake_is_one_line_naming_the_key(changes, said):
    text = problem({"datasets": ["ml-1m"]} | changes)
    assert said in text
    assert "\n" not in text and len(text) < 400


def test_a_valid_config_passes():
    check_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), SCHEMA)


def test_the_problem_of_a_huge_value_is_shortened():
    err = next(jsonschema.Draft202012Validator(SCHEMA).iter_errors({"seeds": "x" * 5000}))
    assert len(config_problem(err)) < 200


def test_a_typo_fails_the_dry_run_in_two_lines_not_the_schema(clone, tmp_path):
    config = tiny()
    config["train"]["epoch"] = 3
    done = dry_run(clone, tmp_path, config)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "config train.epoch: unknown key; did you mean 'epochs'?" in said
    # Snakemake's own lines (profile, error header, two frames) and ours: no schema dump
    assert len(said.splitlines()) <= 8, said
    assert "additionalProperties" not in said and "description" not in said


def test_a_group_key_typo_names_the_nearest_key_at_dry_run(clone, tmp_path):
    config = tiny()
    config["groups"]["width"]["overides"] = config["groups"]["width"].pop("overrides")
    done = dry_run(clone, tmp_path, config)
    assert done.returncode != 0
    assert ("config groups.width.overides: unknown key; did you mean 'overrides'?"
            in done.stdout + done.stderr)


# --- item 8: external models declared in a user's config, run once when deterministic, their
# --- `rule:` checked at dry run

ENTRY = {"rule": "itemknn", "description": "item-to-item kNN", "display_name": "ItemKNN",
         "deterministic": True}


def load_workflow(**changes):
    from snakemake.utils import validate

    from recbench.workflow import Workflow

    config = tiny(**changes)
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return Workflow.load(config, ROOT / "config")


def test_a_users_external_model_joins_the_groups_and_runs_once_when_deterministic():
    flow = load_workflow(seeds=[1, 2], external_model_registry={"itemknn": ENTRY},
                    external_models=["itemknn"])
    assert flow.external["itemknn"] == ENTRY
    assert "recbole-sasrec" in flow.external                   # the shipped ones are kept
    paths = sorted(p for p in flow.runs if "/itemknn/" in p)
    assert paths == ["results/tiny/itemknn/default/L20/seed1"]  # the group's first seed only
    assert len([p for p in flow.runs if "/popularity/" in p]) == 2
    info = flow.model_info()
    assert info["itemknn"] == {"display_name": "ItemKNN", "deterministic": True}
    assert info["popularity"]["deterministic"] and not info["gru4rec"]["deterministic"]
    assert flow.group_layout("main")["deterministic"] == ["itemknn", "popularity"]
    # not deterministic: one run per seed
    flow = load_workflow(seeds=[1, 2], external_models=["itemknn"],
                    external_model_registry={"itemknn": ENTRY | {"deterministic": False}})
    assert len([p for p in flow.runs if "/itemknn/" in p]) == 2


@pytest.mark.parametrize("entry, said", [
    ({"rule": "itemknn"}, "config external_model_registry.itemknn: 'description' is a "
                          "required property"),
    (ENTRY | {"deterministic": "yes"},
     "config external_model_registry.itemknn.deterministic: 'yes' is not of type boolean"),
])
def test_a_bad_entry_in_a_users_config_names_its_key(entry, said):
    config = {"datasets": ["ml-1m"], "external_model_registry": {"itemknn": entry}}
    assert said in problem(config)


def test_an_external_rule_must_exist_and_write_the_run_folder():
    flow = load_workflow(external_model_registry={"itemknn": ENTRY | {"rule": "itemknn_typo"}})
    run = "results/{dataset,[^/]+}/{model,itemknn}/{variant,default}/L{max_len,\\d+}/" \
          "seed{seed,\\d+}/"
    rules = {"external_recbole": [run.replace("itemknn", "recbole-sasrec") + "metrics.json",
                                  run.replace("itemknn", "recbole-sasrec") + "test_ranks.parquet"],
             "itemknn": [run + "metrics.json", run + "test_ranks.parquet"]}
    with pytest.raises(ValueError, match=r"^config external_model_registry\.itemknn\.rule: no "
                                         r"rule 'itemknn_typo' in this workflow; did you mean "
                                         r"'itemknn'\?"):
        flow.check_external_rules(rules)
    flow = load_workflow(external_model_registry={"itemknn": ENTRY})
    flow.check_external_rules(rules)                          # constraints are no difference
    with pytest.raises(ValueError, match=r"rule 'itemknn' does not write results/\{dataset\}/"
                                         r"\{model\}/\{variant\}/L\{max_len\}/seed\{seed\}/"
                                         r"test_ranks\.parquet"):
        flow.check_external_rules(rules | {"itemknn": [run + "metrics.json"]})


def test_a_missing_rule_fails_the_dry_run_naming_the_key(clone, tmp_path):
    done = dry_run(clone, tmp_path, tiny(
        external_model_registry={"itemknn": ENTRY | {"rule": "itemknn_typo"}}))
    assert done.returncode != 0
    assert ("config external_model_registry.itemknn.rule: no rule 'itemknn_typo' in this "
            "workflow" in done.stdout + done.stderr)
    # the shipped catalogue too (the issue's `rule: itemknn_typo` ran)
    shipped = clone / "config" / "external_models.yaml"
    original = shipped.read_text()
    try:
        shipped.write_text(original.replace("rule: external_recbole", "rule: external_recbol",
                                            1))
        done = dry_run(clone, tmp_path, tiny())
        assert done.returncode != 0
        assert ("config/external_models.yaml recbole-sasrec.rule: no rule 'external_recbol' in "
                "this workflow; did you mean 'external_recbole'?" in done.stdout + done.stderr)
    finally:
        shipped.write_text(original)
