"""The HTML report's layout: categories named after the paper's tables and figures (from each
group's and cost study's `paper` key), and the front page (recbench/reporting/front_page.py)
as reStructuredText that renders without a warning, with a link to each category."""
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from docutils.core import publish_parts
from snakemake.utils import validate

from recbench.reporting.front_page import front_page
from recbench.workflow import Workflow

ROOT = Path(__file__).resolve().parents[1]


def workflow_of(*files: str) -> Workflow:
    config: dict = {}
    for name in files:           # as Snakemake merges --configfile over config/config.yaml
        config = merge(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return Workflow.load(config, ROOT / "config")


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def quickstart() -> Workflow:
    return workflow_of("config.yaml", "quickstart.yaml")


def test_categories_are_the_papers_tables_and_figures(quickstart):
    assert {g: quickstart.group_category(g) for g in quickstart.groups} == {
        "main": "Table 2", "layers": "Table 3", "ablation": "Fig. 4",
        "position_encoding": "Fig. 5", "activation": "Fig. 5", "sensitivity": "Fig. 8",
        "length_sweep": "Beyond the paper", "tuned": "Beyond the paper"}
    assert quickstart.study_category("length") == "Beyond the paper"
    assert quickstart.categories() == [
        "Table 1", "Table 2", "Table 3", "Fig. 3", "Fig. 4", "Fig. 5", "Fig. 8",
        "Beyond the paper", "Training curves", "Hyperparameter search", "Every run"]


def test_the_paper_run_files_its_cost_studies_under_fig6_and_fig7():
    paper = workflow_of("config.yaml")
    assert {s: paper.study_category(s) for s in paper.profile} == {
        "length": "Beyond the paper", "attention": "Beyond the paper", "layers": "Fig. 6",
        "paper_lengths": "Fig. 7", "streaming": "Beyond the paper", "heads": "Fig. 7"}


def run(model, seed, status="ok", device="cpu"):
    return {"dataset": "synthetic", "model": model, "variant": "default", "max_len": 30,
            "seed": seed, "status": status, "device": device, "threads": 1,
            "torch": "2.13.0", "python": "3.11.7", "git_commit": "0123456789abcdef",
            "config": {"train": {"epochs": 2, "stopping_step": 1}}}


def render(rst: str, categories) -> str:
    """As `snakemake --report` does: a link target per category, then docutils."""
    targets = "\n".join(f".. _{c}: javascript:app.showCategory('{quote(c)}')"
                        for c in categories)
    return publish_parts(rst + "\n\n" + targets, writer="html",
                         settings_overrides={"report_level": 1})["html_body"]


def test_front_page_says_what_ran_on_what_data_and_hardware(quickstart):
    layout = quickstart.front_page_layout(["config/quickstart.yaml", "config/config.yaml"])
    runs = [run("recgrela", 1), run("recgrela", 2), run("sasrec", 1, status="oom"),
            run("popularity", 1, device="cuda:0 (NVIDIA H100)")]
    stats = {"synthetic": {"n_users": 1000, "n_items": 500, "n_interactions": 40000,
                           "avg_seq_len": 40.0, "sparsity": 0.92}}
    cells = [{"status": "ok", "device": "cpu"}, {"status": "oom", "device": "cpu"}]
    rst = front_page(runs, stats, cells, layout, host="Linux, Xeon, 2 logical cores")
    assert "* 4 runs (3 ok, 1 oom) of 3 models (RecGRELA, SASRec, Pop)" in rst
    assert "Config ``config/quickstart.yaml`` over ``config/config.yaml``." in rst
    assert "`Table 2`_: ``main``" in rst and "`Fig. 5`_: ``position_encoding``" in rst
    assert "synthetic: generated offline (seeded synthetic data); 1,000 users, 500 items, " \
           "40,000 interactions" in rst
    assert "``cpu`` (3 runs)" in rst and "``cuda:0 (NVIDIA H100)`` (1 runs)" in rst
    assert "2 cost cells" in rst and "Linux, Xeon, 2 logical cores" in rst
    assert "1 CPU thread each; cost cells measured on cpu." in rst
    page = render(rst, layout["categories"])
    assert "system-message" not in page, page        # no docutils warning on the page
    for category in layout["categories"]:       # each a link to its category
        assert f"showCategory('{quote(category)}')\">{category}</a>" in page, category


def test_text_from_the_config_cannot_break_the_page():
    layout = {"categories": ["Table 2"], "configfiles": ["my_*config*_{{x}}.yaml"],
              "groups": [{"name": "a_b*", "description": "", "category": "Table 2",
                          "runs": 1}], "studies": [], "datasets": {}, "tuning": []}
    rst = front_page([run("recgrela", 1)], {}, [], layout)
    assert "{{" not in rst                            # Snakemake renders the page with Jinja
    assert "system-message" not in render(rst, ["Table 2"])
