"""docs/adding_a_model.md, followed once, step by step and in its order: a new model written in
this file (step 1), registered (2), put through the contract test's checks (3), checked against
a slow explicit loop (4), and run from the guide's own config block through the experiment
expansion and the engine (5). Then the guide's other way, a baseline as a rule: its config
block, rule, include line and script, added to a copy of the project and run by Snakemake
(test_rule_...). If this test breaks, the guide is out of date."""
from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from model_contract import CHECKS, builder, make_batch
from torch import nn

import models
from models.base import SequentialRecommender
from recbench.data.batching import SequenceData
from recbench.plan import groups as experiments
from recbench.training import engine

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "adding_a_model.md"
NAME = "recent_conv"


# --- step 1: the model file (here: this test module) -----------------------------------------
@dataclass
class Config:
    """RecentConv's hyperparameters (the guide's shared names: hidden_size, dropout)."""
    hidden_size: int = 32      # d
    kernel_size: int = 3       # k: how many recent items each position mixes
    dropout: float = 0.1


class RecentConv(SequentialRecommender):
    """h_t = W (sum_{j<k} c_j * e_{t-j}) + b: a causal depthwise convolution over the last k
    item embeddings (e = self.item_embedding, c_j = conv.weight[:, 0, k-1-j]), scored against
    the tied embedding. Symbols -> variables: W, b = proj; c = conv (its bias added too)."""
    Config = Config
    causal = True   # h_t sees items t-k+1 .. t only (padding_invariant follows: True)
    display_name = "RecentConv"     # tables and legends (else the registry name, recent_conv)

    def __init__(self, n_items, config):
        super().__init__(n_items, config)
        d, k = config.hidden_size, config.kernel_size
        self.item_embedding = nn.Embedding(n_items, d, padding_idx=0)
        # left padding of k - 1 and keeping the first L outputs makes the convolution causal
        self.conv = nn.Conv1d(d, d, k, padding=k - 1, groups=d)
        self.proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, item_seq, seq_len):
        L = item_seq.size(1)
        emb = self.dropout(self.item_embedding(item_seq))                    # (B, L, d)
        mixed = self.conv(emb.transpose(1, 2))[..., :L].transpose(1, 2)      # (B, L, d)
        return self.proj(mixed)


def test_step1_the_file_builds_from_its_config_defaults():
    model = RecentConv(20, Config()).eval()
    item_seq, seq_len, _ = make_batch(20, batch=3, length=5)
    assert model(item_seq, seq_len).shape == (3, 5, Config().hidden_size)
    assert model.full_sort_predict(item_seq, seq_len).shape == (3, 20)


# --- step 2: one registry line ---------------------------------------------------------------
@pytest.fixture
def registered(monkeypatch):
    # In the project this is an entry in models/__init__.py's REGISTRY; monkeypatch keeps the
    # example out of the other tests' registry.
    monkeypatch.setitem(models.REGISTRY, NAME, f"{__name__}:RecentConv")
    return NAME


def test_step2_register_and_build_by_name(registered):
    model = models.build_model(registered, 20, hidden_size=8, kernel_size=2)
    assert isinstance(model, RecentConv)
    assert (model.config.hidden_size, model.config.kernel_size, model.config.dropout) == (8, 2, 0.1)
    with pytest.raises(ValueError, match=r"no option\(s\) \['kernel'\].*'kernel_size'"):
        models.build_model(registered, 20, kernel=2)


# --- step 3: the contract test's checks -------------------------------------------------------
def test_step3_contract_checks(registered):
    # tests/test_model_contract.py runs these on every name in REGISTRY; here on the example
    build = builder(registered)
    for check in CHECKS:
        check(build)


# --- step 4: an equation test against a slow explicit form ------------------------------------
def test_step4_forward_matches_a_loop_over_positions(registered):
    torch.manual_seed(0)
    model = models.build_model(registered, 20, hidden_size=4, kernel_size=3).double().eval()
    item_seq, seq_len, _ = make_batch(20, batch=2, length=6)
    E, c, c0 = model.item_embedding.weight, model.conv.weight[:, 0], model.conv.bias  # c (d, k)
    W, b = model.proj.weight, model.proj.bias
    k = c.shape[1]
    want = torch.zeros(2, 6, 4, dtype=torch.float64)
    for n in range(2):
        for t in range(6):
            mixed = c0.clone()
            for j in range(k):                        # e_{t-j} meets tap k-1-j
                if t - j >= 0:
                    mixed += c[:, k - 1 - j] * E[item_seq[n, t - j]]
            want[n, t] = W @ mixed + b
    with torch.no_grad():
        torch.testing.assert_close(model(item_seq, seq_len), want, rtol=1e-12, atol=1e-12)


# --- step 5: the guide's config block, expanded and run by the engine ---------------------------
def guide_config_block() -> dict:
    """The YAML block of the guide's section 5, for `mymodel` = this example."""
    section = GUIDE.read_text().split("## 5.")[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block.replace("mymodel", NAME))


def test_step5_put_it_in_an_experiment(registered, tmp_path):
    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text())
    train = {"epochs": 1, "batch_size": 64, "eval_batch_size": 64, "device": "cpu"}
    config = {"datasets": ["toy"], "max_lens": [10], "seeds": [1], "model_overrides": {},
              "groups": {"main": {}}, "run_groups": ["main"], "train_by_dataset": {},
              "train": train} | guide_config_block()
    assert config["models"] == ["sasrec", NAME]
    runs = experiments.all_runs(experiments.expand_groups(config, schema, {"toy": {}}))
    assert sorted(runs) == ["results/toy/recent_conv/hidden_size=128/L10/seed1",
                            "results/toy/sasrec/default/L10/seed1"]
    run = runs["results/toy/recent_conv/hidden_size=128/L10/seed1"]
    assert run.overrides == {"hidden_size": 128, "dropout": 0.1}

    rng = np.random.default_rng(0)
    sequences = [list(rng.integers(1, 30, size=rng.integers(5, 15))) for _ in range(40)]
    data = SequenceData.from_lists(sequences, n_items=30)
    result = engine.run_training(data, tmp_path / run.path, run.model, run.overrides, run.train,
                                 dataset=run.dataset, max_len=run.max_len, seed=run.seed,
                                 variant=run.variant)
    on_disk = tmp_path / run.path
    assert (on_disk / "metrics.json").exists()
    assert result["epochs_run"] == 1 and result["n_test_users"] == 40
    assert result["config"]["model_config"] == {"hidden_size": 128, "kernel_size": 3, "dropout": 0.1}
    # the stored metrics are the per-user test ranks' means (1-based ranks)
    ranks = pd.read_parquet(on_disk / "test_ranks.parquet")["rank"].to_numpy()
    assert len(ranks) == 40
    assert result["test"]["hit@10"] == pytest.approx(np.mean(ranks <= 10), abs=1e-12)
    ndcg = np.mean([1 / math.log2(r + 1) if r <= 10 else 0.0 for r in ranks])
    assert result["test"]["ndcg@10"] == pytest.approx(ndcg, abs=1e-6)


def test_step5_its_display_name_reaches_the_reporting_rules(registered):
    """The workflow hands each reporting rule the names the model files declare (params)."""
    from snakemake.utils import validate

    from recbench.names import declare, display_name
    from recbench.workflow import Workflow

    config = {"datasets": ["synthetic"], "max_lens": [10], "seeds": [1],
              "run_groups": ["main"], "groups": {"main": {}}} | guide_config_block()
    validate(config, str(ROOT / "config" / "schema.yaml"))
    info = Workflow.load(config, ROOT / "config").model_info()
    assert info[NAME] == {"display_name": "RecentConv", "deterministic": False}
    assert info["sasrec"]["display_name"] is None
    try:
        declare(info)                                  # what a reporting script does first
        assert (display_name(NAME), display_name("sasrec")) == ("RecentConv", "SASRec")
    finally:
        declare({})


# --- the other way: a baseline as a rule (the guide's last section), in a copy of the project ---

def guide_files() -> dict[str, str]:
    """The guide's code blocks of the rule path, by the file named on their first line."""
    section = GUIDE.read_text().split("## Another way: a model as a rule")[1]
    blocks = re.findall(r"```(?:yaml|python)\n(.*?)```", section, re.S)
    files = {}
    for block in blocks:
        block = textwrap.dedent(block)
        first, _, body = block.partition("\n")
        files[first.removeprefix("# ").strip()] = body
    return files


@pytest.fixture(scope="module")
def rule_baseline(tmp_path_factory, copy_workflow):
    """A copy of the project with the guide's rule-baseline added, step by step, and run."""
    import subprocess
    import sys

    files = guide_files()
    assert set(files) == {"my_config.yaml", "rules/itemknn.smk", "Snakefile",
                          "scripts/itemknn.py"}
    work = tmp_path_factory.mktemp("project")
    copy_workflow(work)
    # step 2 and 4: the rule file and its script; step 3: the include, after the others
    (work / "rules" / "itemknn.smk").write_text(files["rules/itemknn.smk"])
    (work / "scripts" / "itemknn.py").write_text(files["scripts/itemknn.py"])
    snakefile = (work / "Snakefile").read_text()
    last = snakefile.rindex("include:")
    end = snakefile.index("\n", last) + 1
    (work / "Snakefile").write_text(snakefile[:end] + files["Snakefile"] + snakefile[end:])
    # step 1: the user's config (the workflow test's tiny dataset, two seeds, Table 2 only)
    tiny = yaml.safe_load((ROOT / "tests" / "workflow" / "tiny.yaml").read_text())
    config = tiny | {"models": ["popularity"], "seeds": [1, 2], "run_groups": ["main"],
                     "profile": {"run_studies": []}} | yaml.safe_load(files["my_config.yaml"])
    (work / "my_config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args):
        # targets first: --configfile takes several files
        return subprocess.run([sys.executable, "-m", "snakemake", *args, "--cores", "2",
                               "--configfile", "my_config.yaml"], cwd=work,
                              capture_output=True, text=True, timeout=900)
    return work, snakemake


def test_rule_step1_to_3_the_dry_run_lists_one_run_and_lint_passes(rule_baseline):
    work, snakemake = rule_baseline
    dry = snakemake("--dry-run", "reports/tables/main.md")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = re.findall(r"rule itemknn:\n\s+input:.*?\n\s+output: ([^\n]+)", dry.stdout, re.S)
    assert len(jobs) == 1 and "results/tiny/itemknn/default/L20/seed1/metrics.json" in jobs[0]
    lint = snakemake("--lint")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]


def test_rule_step4_its_runs_join_the_table_and_the_curves(rule_baseline):
    work, snakemake = rule_baseline
    done = snakemake("reports/tables/main.md", "reports/figures/curves_main.png")
    assert done.returncode == 0, done.stderr[-3000:]
    run = work / "results/tiny/itemknn/default/L20"
    assert (run / "seed1/metrics.json").exists() and not (run / "seed2").exists()   # once
    table = (work / "reports/tables/main.md").read_text()
    head = next(line for line in table.splitlines() if line.startswith("| dataset"))
    assert "ItemKNN" in head and "itemknn" not in head                # its display name
    ours = next(line for line in table.splitlines() if "| HR@10 | ours |" in line)
    cells = dict(zip([h.strip() for h in head.split("|")], [c.strip() for c in ours.split("|")]))
    assert re.fullmatch(r"(\*\*|<u>)?0\.\d{4} \(deterministic\)(\*\*|</u>)?", cells["ItemKNN"])
    assert re.fullmatch(r"(\*\*|<u>)?0\.\d{4} \(deterministic\)(\*\*|</u>)?", cells["Pop"])
    # no history.csv: the curves are drawn without it, and say so
    log = (work / "logs/figures/curves_main.log").read_text()
    assert "no history.csv beside metrics.json: ItemKNN (1 run)" in log
