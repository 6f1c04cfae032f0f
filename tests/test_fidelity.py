"""Ours beside the authors' code: reference cells in the cost grid (recbench/cost/grid.py,
recbench/cost/measure.py) and the fidelity tables (recbench/reporting/fidelity.py)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from recbench.cost.cells import read_cells
from recbench.cost.grid import expand_profile
from recbench.cost.measure import count_parameters, profile_in_subprocess, saved_activation_mb
from recbench.external import authors_code as reference
from recbench.plan.groups import ConfigError
from recbench.reporting.fidelity import accuracy_table, cost_table
from recbench.reporting.render import to_markdown

needs_checkout = pytest.mark.skipif(reference.find_checkout() is None,
                                    reason=f"no reference checkout in {reference.candidates()}")


def profile_config(models, max_lens=(50,)):
    return {"models": ["sasrec", "recgrela"],
            "profile": {"device": "cpu", "batch_size": 8, "policies": ["stored", "recompute"],
                        "run_studies": None,
                        "studies": {"fidelity": {"models": models, "max_lens": list(max_lens)}}}}


def test_reference_cells_are_stored_policy_default_variant_beside_ours():
    cells = expand_profile(profile_config(["recgrela", "reference-recgrela"]))["fidelity"]
    got = {(c.model, c.policy, c.variant) for c in cells}
    # ours has both memory policies; the authors' code keeps every activation (stored only)
    assert got == {("recgrela", "stored", "default"), ("recgrela", "recompute", "default"),
                   ("reference-recgrela", "stored", "default")}


def test_a_reference_model_that_needs_cuda_or_does_not_exist_is_refused_by_name():
    for name in ("reference-mamba4rec", "reference-nothing"):
        with pytest.raises(ConfigError, match=rf"profile\.studies\.fidelity\.models.*{name}"):
            expand_profile(profile_config([name]))


def test_a_complex_parameter_counts_as_two_real_numbers():
    module = torch.nn.Module()
    module.real = torch.nn.Parameter(torch.zeros(3, 4))
    module.complex = torch.nn.Parameter(torch.zeros(5, dtype=torch.cfloat))
    module.frozen = torch.nn.Parameter(torch.zeros(7), requires_grad=False)
    assert count_parameters(module) == 12 + 2 * 5


class Scaled(torch.nn.Module):
    """loss = sum(exp(seq * w)): autograd keeps exp's output and mul's input (not w)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1000))

    def calculate_loss(self, item_seq, seq_len, target):
        x = item_seq.float()
        return torch.exp(x * self.w).sum()


def test_saved_activations_count_each_kept_tensor_once_and_no_parameter():
    seq = torch.zeros(64, 1000, dtype=torch.long)
    # mul keeps x (64 x 1000 float32) and exp keeps its output (the same size); w is a parameter
    assert saved_activation_mb(Scaled(), seq, None, None) == pytest.approx(2 * 64 * 1000 * 4
                                                                           / 2**20)


@needs_checkout
def test_the_authors_recgrela_is_measured_in_a_cell_like_ours():
    cell = {"model": "reference-recgrela", "max_len": 20, "batch_size": 4, "n_items": 60,
            "steps": 1, "warmup": 0}
    theirs = profile_in_subprocess(cell, timeout_s=300)
    ours = profile_in_subprocess(cell | {"model": "recgrela"}, timeout_s=300)
    assert theirs["status"] == ours["status"] == "ok", (theirs, ours)
    assert theirs["params"] == ours["params"]        # the same architecture and sizes
    for key in ("peak_rss_mb", "saved_activation_mb", "seconds_per_step"):
        assert theirs[key] > 0


def write_cells(tmp_path, rows):
    paths = []
    for i, row in enumerate(rows):
        cell = {"policy": "stored", "batch_size": 256, "device": "cpu", "status": "ok",
                "params": 1000, "saved_activation_mb": 100.0, "seconds_per_step": 1.0} | row
        path = tmp_path / cell["model"] / "default" / f"L{cell['max_len']}" / f"B{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cell))
        paths.append(path)
    return read_cells(paths)


def test_cost_table_sets_each_model_beside_its_reference_and_flags_over_ten_percent(tmp_path):
    cells = write_cells(tmp_path, [
        {"model": "recgrela", "max_len": 200, "peak_rss_mb": 1050.0},
        {"model": "reference-recgrela", "max_len": 200, "peak_rss_mb": 1000.0},
        {"model": "linrec", "max_len": 200, "peak_rss_mb": 800.0, "saved_activation_mb": 60.0},
        {"model": "reference-linrec", "max_len": 200, "peak_rss_mb": 1000.0},
        {"model": "mamba4rec", "max_len": 200, "peak_rss_mb": 900.0},
    ])
    table = cost_table(cells, "fidelity")
    diff = table.cells["memory: ours vs authors'"]
    assert diff[("RecGRELA", 200)] == "+5.0%"
    assert diff[("LinRec", 200)] == "-20.0% (over 10%)"
    assert table.cells.loc[("Mamba4Rec", 200), "memory MB (authors')"] == "needs CUDA"
    text = to_markdown(table)
    assert "at every length: RecGRELA." in text
    # the gap and the part of it the kept activations explain: -200 MB, of which -40 MB
    assert "LinRec: -20.0% at L=200 (-200 MB), of which the activations kept for backward " \
           "differ by -40 MB" in text


def test_the_memory_claim_is_checked_on_ours_and_on_the_authors_code_apart(tmp_path):
    # ours: RecGRELA lowest; the authors' code: their LinRec below their RecGRELA
    cells = write_cells(tmp_path, [
        {"model": m, "max_len": L, "peak_rss_mb": mb} for m, L, mb in [
            ("recgrela", 50, 100.0), ("recgrela", 200, 400.0),
            ("linrec", 50, 150.0), ("linrec", 200, 600.0),
            ("reference-recgrela", 50, 100.0), ("reference-recgrela", 200, 400.0),
            ("reference-linrec", 50, 90.0), ("reference-linrec", 200, 300.0)]])
    notes = cost_table(cells, "fidelity").notes
    ours = next(n for n in notes if n.startswith("Memory claim on our"))
    theirs = next(n for n in notes if n.startswith("Memory claim on the authors'"))
    assert "LinRec 1.50x of that: the claim holds" in ours
    assert "LinRec 0.75x of that: the claim does not hold" in theirs
    assert "reference" not in theirs          # the authors' models are named as models


def run(model, seed, ndcg):
    return {"dataset": "ml-100k", "model": model, "variant": "default", "max_len": 50,
            "seed": seed, "status": "ok", "test": {"ndcg@10": ndcg, "hit@10": 2 * ndcg}}


def ranks(values):
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(len(values))], "rank": values})


def test_accuracy_table_pairs_ours_with_the_authors_over_users():
    runs = [run("recgrela", 1, 0.30), run("recgrela", 2, 0.32),
            run("reference-recgrela", 1, 0.20), run("reference-recgrela", 2, 0.22)]
    # 40 users: ours ranks each target 1st, the authors' 5th -> ours better on every user
    test_ranks = {("ml-100k", "recgrela", "default", 50, s): ranks([1] * 40) for s in (1, 2)}
    test_ranks |= {("ml-100k", "reference-recgrela", "default", 50, s): ranks([5] * 40)
                   for s in (1, 2)}
    table = accuracy_table(runs, test_ranks)
    row = table.cells.loc[("ML-100K", 50, "RecGRELA", "NDCG@10")]
    assert row["ours"] == "0.3100 ± 0.0141 (n=2)"
    assert row["authors'"] == "0.2100 ± 0.0141 (n=2)"
    assert row["ours - authors'"] == "+0.1000"
    assert row["ours vs authors'"] == "better"
    assert float(row["Wilcoxon p"]) < 1e-6


def test_identical_rankings_show_no_difference_and_a_missing_side_reads_not_run():
    runs = [run("linrec", 1, 0.2), run("reference-linrec", 1, 0.2), run("lrurec", 1, 0.1)]
    same = ranks([1, 3, 12, 2])
    test_ranks = {("ml-100k", m, "default", 50, 1): same for m in ("linrec", "reference-linrec",
                                                                    "lrurec")}
    table = accuracy_table(runs, test_ranks)
    assert table.cells.loc[("ML-100K", 50, "LinRec", "NDCG@10"), "ours vs authors'"] \
        == "no difference"
    assert table.cells.loc[("ML-100K", 50, "LRURec", "NDCG@10"), "authors'"] == "not run"


def test_the_figure_draws_the_panels_the_table_has(tmp_path):
    from recbench.reporting.figures import fidelity_figure
    from recbench.reporting.render import write_table

    cells = write_cells(tmp_path, [
        {"model": "recgrela", "max_len": 200, "peak_rss_mb": 1050.0},
        {"model": "reference-recgrela", "max_len": 200, "peak_rss_mb": 1000.0},
        {"model": "linrec", "max_len": 800, "status": "oom"},
        {"model": "reference-linrec", "max_len": 800, "peak_rss_mb": 1000.0}])
    runs = [run("recgrela", 1, 0.3), run("reference-recgrela", 1, 0.2)]
    test_ranks = {("ml-100k", m, "default", 50, 1): ranks([1, 2, 3]) for m in
                  ("recgrela", "reference-recgrela")}
    both = [cost_table(cells, "fidelity"), accuracy_table(runs, test_ranks)]
    out = {k: tmp_path / f"t.{k}" for k in ("md", "csv", "tex")}
    for tables, panels in [(both, ["memory", "time", "accuracy"]), (both[1:], ["accuracy"])]:
        write_table(tables, out["md"], out["csv"], out["tex"])
        drawn = fidelity_figure(pd.read_csv(out["csv"]), tmp_path / "f.png", tmp_path / "f.svg")
        assert drawn == panels and (tmp_path / "f.png").stat().st_size > 0
    with pytest.raises(ValueError, match="neither cost nor accuracy"):
        fidelity_figure(pd.DataFrame({"x": [1]}), tmp_path / "g.png", tmp_path / "g.svg")
