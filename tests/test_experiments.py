"""Experiment groups (recbench/plan/groups.py): expansion into runs, variant names, and every
config mistake refused with the key named, before any job runs."""
import copy
from pathlib import Path

import pytest
import yaml

from recbench.plan.groups import ConfigError, all_runs, expand_groups, group_runs

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
DATASETS = {"toy": {}, "other": {}}

BASE = {
    "datasets": ["toy"], "models": ["popularity", "recgrela"], "max_lens": [20], "seeds": [1, 2],
    "model_overrides": {}, "train": {"epochs": 3, "stopping_step": 1}, "train_by_dataset": {},
    "run_groups": ["main"], "groups": {"main": {}},
}


def config(**changes):
    return copy.deepcopy(BASE) | changes


def paths(groups, name):
    return [run.path for run in group_runs(groups, name)]


def test_main_group_is_the_cross_product_of_the_top_level_lists():
    groups = expand_groups(config(), SCHEMA, DATASETS)
    assert paths(groups, "main") == [
        "results/toy/popularity/default/L20/seed1", "results/toy/popularity/default/L20/seed2",
        "results/toy/recgrela/default/L20/seed1", "results/toy/recgrela/default/L20/seed2"]


def test_overrides_name_variants_and_a_shared_run_is_trained_once():
    cfg = config(run_groups=["main", "layers"], groups={
        "main": {}, "layers": {"models": ["recgrela"], "seeds": [1],
                               "overrides": [{"num_layers": 1}, {"num_layers": 4}]}})
    groups = expand_groups(cfg, SCHEMA, DATASETS)
    assert paths(groups, "layers") == ["results/toy/recgrela/num_layers=1/L20/seed1",
                                       "results/toy/recgrela/default/L20/seed1"]
    # the 4-layer run is main's default run: one object, one folder
    assert group_runs(groups, "layers")[1] is group_runs(groups, "main")[2]
    assert len(all_runs(groups)) == 5


def test_options_apply_only_to_the_models_that_have_them():
    cfg = config(groups={"main": {"overrides": [{}, {"gate": False}]}})
    runs = paths(expand_groups(cfg, SCHEMA, DATASETS), "main")
    assert "results/toy/recgrela/gate=false/L20/seed1" in runs
    assert not any("popularity/gate" in r for r in runs)


def test_sweeps_are_one_factor_at_a_time():
    cfg = config(groups={"main": {"models": ["recgrela"], "seeds": [1], "sweeps": {
        "max_len": {"max_lens": [10, 20]},
        "layers": {"overrides": [{"num_layers": 2}]}}}})
    groups = expand_groups(cfg, SCHEMA, DATASETS)
    assert paths(groups, "main") == [
        "results/toy/recgrela/default/L10/seed1", "results/toy/recgrela/default/L20/seed1",
        "results/toy/recgrela/num_layers=2/L20/seed1"]
    sections = {name: [run.path for run in runs] for name, runs in groups["main"].items()}
    assert sections == {"max_len": paths(groups, "main")[:2],
                        "layers": ["results/toy/recgrela/num_layers=2/L20/seed1"]}


def test_train_settings_merge_config_then_dataset_then_group():
    cfg = config(datasets=["toy", "other"], models=["popularity"], seeds=[1],
                 train_by_dataset={"other": {"stopping_step": 10, "epochs": 5}},
                 groups={"main": {"train": {"epochs": 7}}})
    toy, other = group_runs(expand_groups(cfg, SCHEMA, DATASETS), "main")
    assert toy.train == {"epochs": 7, "stopping_step": 1}
    assert other.train == {"epochs": 7, "stopping_step": 10}


@pytest.mark.parametrize("changes, named", [
    ({"models": ["sasrecc"]}, "sasrecc"),
    ({"model_overrides": {"sasrec": {"hiden_size": 32}}}, "hiden_size"),
    ({"model_overrides": {"recgrela": {"num_heads": 3}}}, "num_heads"),   # 64 % 3 != 0
    ({"run_groups": ["main", "layerz"]}, "layerz"),
    ({"groups": {"main": {"overrides": [{"num_layerz": 2}]}}}, "num_layerz"),
    ({"groups": {"main": {"datasetz": ["toy"]}}}, "datasetz"),
    ({"groups": {"main": {"datasets": ["ml-3m"]}}}, "ml-3m"),
    ({"groups": {"main": {"train": {"epoch": 3}}}}, "epoch"),
    ({"groups": {"main": {"train": {"epochs": "3"}}}}, "epochs"),
    ({"train_by_dataset": {"toy": {"stoping_step": 3}}}, "stoping_step"),
    ({"train_by_dataset": {"ml-3m": {"stopping_step": 3}}}, "ml-3m"),
])
def test_config_mistakes_are_refused_naming_the_key(changes, named):
    with pytest.raises(ConfigError, match=named):
        expand_groups(config(**changes), SCHEMA, DATASETS)


def test_one_run_asked_for_with_two_train_settings_is_refused():
    cfg = config(run_groups=["main", "short"],
                 groups={"main": {}, "short": {"train": {"epochs": 1}}})
    with pytest.raises(ConfigError, match=r"groups.short and groups.main .*\['epochs'\]"):
        expand_groups(cfg, SCHEMA, DATASETS)
