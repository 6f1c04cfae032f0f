"""Paper-layout tables on a tiny hand-made results tree: seeds, marks, Improv., reasons, tests."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.reporting.paper_numbers import paper_numbers
from recbench.reporting.paper_tables import (
    group_table,
    layers_table,
    main_table,
    runs_table,
    stats_table,
)
from recbench.reporting.render import to_html, to_latex, to_markdown, write_table
from recbench.reporting.tables import run_key

PAPER = paper_numbers(Path(__file__).resolve().parents[1] / "reports" / "paper_numbers.yaml")
USERS = [f"u{i}" for i in range(200)]
OOM = ("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.8 "
       "GiB of which 1.2 GiB is free.")


PAPER_TRAIN = {"epochs": 300, "stopping_step": 20}     # the paper's budget on ML-1M (§4.1.1)


def write_run(root, model, seed, ndcg10=None, status="ok", reason=None, variant="default",
              max_len=200, ranks=None, dataset="ml-1m", memory_mb=2048.0, train=PAPER_TRAIN,
              eval_mode="full"):
    """One run folder as the workflow writes it. Only ndcg@10 is set by hand; the other
    metrics are ndcg@10 + fixed offsets so that rows differ. `train` = the resolved train
    settings recorded under config.train (None: no config recorded)."""
    run = root / dataset / model / variant / f"L{max_len}" / f"seed{seed}"
    run.mkdir(parents=True)
    test = ({"hit@5": ndcg10 + 0.05, "ndcg@5": ndcg10 - 0.03, "mrr@5": ndcg10 - 0.05,
             "hit@10": ndcg10 + 0.13, "ndcg@10": ndcg10, "mrr@10": ndcg10 - 0.04}
            if status == "ok" else {})
    (run / "metrics.json").write_text(json.dumps({
        "dataset": dataset, "model": model, "variant": variant, "max_len": max_len,
        "seed": seed, "status": status, "reason": reason, "valid": test, "test": test,
        "best_epoch": 3 if status == "ok" else None, "epochs_run": 5,
        "seconds_per_epoch": 10.0 + seed, "peak_memory_mb": memory_mb,
        "peak_memory_kind": "cuda_max_allocated", "device": "cuda:0", "eval_mode": eval_mode,
        **({"config": {"model": model, "train": dict(train, eval_mode=eval_mode)}}
           if train is not None else {})}))
    if ranks is not None:
        pd.DataFrame({"user_id": USERS, "rank": ranks}).to_parquet(run / "test_ranks.parquet")


def read_tree(root):
    """What the table scripts do: every metrics.json, and the test ranks beside it."""
    runs, ranks = [], {}
    for path in sorted(Path(root).rglob("metrics.json")):
        run = json.loads(path.read_text())
        runs.append(run)
        if (path.parent / "test_ranks.parquet").exists():
            ranks[run_key(run)] = pd.read_parquet(path.parent / "test_ranks.parquet")
    return runs, ranks


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "results"
    # RecGRELA: 3 seeds, ndcg@10 0.20, 0.21, 0.25 -> mean 0.22, std (ddof=1) sqrt(7e-4).
    for seed, v in ((1, 0.20), (2, 0.21), (3, 0.25)):
        write_run(root, "recgrela", seed, v, ranks=rng.integers(1, 4, 200))     # ranks 1-3
    # SIGMA: 2 seeds 0.18, 0.20 -> 0.19 (second best); ranks 4-12: worse on every user.
    for seed, v in ((1, 0.18), (2, 0.20)):
        write_run(root, "sigma", seed, v, ranks=rng.integers(4, 13, 200))
    write_run(root, "recblr", 1, 0.17, ranks=rng.integers(4, 13, 200))
    write_run(root, "recblr", 2, status="failed", reason="loss is NaN at epoch 3")
    write_run(root, "linrec", 1, status="oom", reason=OOM)
    write_run(root, "recgrela", 1, 0.10, max_len=50)               # another setting: not mixed in
    write_run(root, "recgrela", 1, 0.19, variant="position_encoding=none")
    write_run(root, "recgrela", 1, 0.18, variant="num_layers=2", memory_mb=1536.0)
    return root


def cell(table, row, column):
    return table.cells.loc[row, column]


def test_table2_cells_marks_improv_and_significance(tree):
    runs, ranks = read_tree(tree)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks)
    ours, paper = ("ML-1M", "NDCG@10", "ours"), ("ML-1M", "NDCG@10", "paper")
    std = math.sqrt(((0.20 - 0.22) ** 2 + (0.21 - 0.22) ** 2 + (0.25 - 0.22) ** 2) / (3 - 1))
    assert f"{std:.4f}" == "0.0265"
    assert cell(table, ours, "RecGRELA") == "0.2200 ± 0.0265 (n=3) *"
    assert cell(table, ours, "SIGMA") == "0.1900 ± 0.0141 (n=2)"    # sqrt(2e-4), ddof=1
    assert cell(table, paper, "RecGRELA") == "0.1959" and cell(table, paper, "SIGMA") == "0.1898"
    # Marks among ours: RecGRELA best, SIGMA second, nothing on the paper row.
    assert table.marks.loc[ours, "RecGRELA"] == "best"
    assert table.marks.loc[ours, "SIGMA"] == "second"
    assert (table.marks.loc[ours].drop(["RecGRELA", "SIGMA"]) == "").all()
    assert (table.marks.loc[paper] == "").all()
    # Improv.: 0.22 / 0.19 - 1 = 15.79% over SIGMA (ours) beside the printed 2.19%, which is
    # over RecBLR (0.1959 / 0.1917 - 1, the paper's best baseline of the row)
    assert cell(table, ours, "Improv.") == "+15.79% vs SIGMA"
    assert cell(table, paper, "Improv.") == "+2.19% vs RecBLR"
    assert cell(table, ("ML-1M", "HR@5", "paper"), "Improv.") == "+1.68% vs SIGMA"
    # Runs that did not give a number say why.
    assert cell(table, ours, "LRURec") == "not run"
    assert cell(table, ours, "LinRec").startswith("OOM at L=200: CUDA out of memory.")
    assert cell(table, ours, "LinRec").endswith("...")          # shortened in the cell
    assert cell(table, ours, "RecBLR") == ("0.1700 (n=1) (+1 not ok: failed: loss is NaN at "
                                           "epoch 3)")
    data = table.data.set_index(["metric", "model"])
    assert data.loc[("ndcg@10", "linrec"), "problems"] == f"OOM at L=200: {OOM}"   # whole
    assert data.loc[("ndcg@10", "recgrela"), "ours_mean"] == pytest.approx(0.22)
    assert data.loc[("ndcg@10", "improv"), "best_baseline"] == "sigma"
    assert set(table.data["max_len"]) == {200}          # Fig. 3 picks its max_len by it
    assert data.loc[("ndcg@10", "recgrela"), "p_holm_vs_best"] < 1e-10
    assert any("Wilcoxon" in n and "Holm" in n and "200 users" in n for n in table.notes)
    assert any("leave-one-out" in n and "max_len 200" in n for n in table.notes)


def test_markdown_and_latex_render_marks(tree, tmp_path):
    runs, ranks = read_tree(tree)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    md = to_markdown(table)
    assert "| ML-1M | NDCG@10 | ours |" in md and "|  |  | paper |" in md
    assert "**0.2200 ± 0.0265 (n=3) \\***" in md and "<u>0.1900 ± 0.0141 (n=2)</u>" in md
    tex = to_latex(table)
    assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex and "\\toprule" in tex
    assert "\\textbf{0.2200 $\\pm$ 0.0265 (n=3) *}" in tex
    assert "\\underline{0.1900 $\\pm$ 0.0141 (n=2)}" in tex
    assert "15.79\\%" in tex and "max\\_len" in tex and "p \\textless{} 0.05" in tex
    write_table(table, tmp_path / "t2.md", tmp_path / "t2.csv", tmp_path / "t2.tex")
    assert (tmp_path / "t2.md").read_text() == md and (tmp_path / "t2.tex").read_text() == tex
    csv = pd.read_csv(tmp_path / "t2.csv").set_index("model")
    assert csv.loc["recgrela", "ours_mean"] == pytest.approx(0.22)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_html_renders_the_table_as_published(tree, tmp_path):
    """The report's page of a table: the Markdown's cells and marks, the paper's rows told
    apart, the notes under it, everything escaped."""
    runs, ranks = read_tree(tree)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    page = to_html(table, head="Table 2 (reduced)", title="main")
    assert page.startswith("<!DOCTYPE html>") and "<h1>main</h1>" in page
    assert '<p class="head">Table 2 (reduced)</p>' in page
    assert '<td class="best">0.2200 ± 0.0265 (n=3) *</td>' in page        # bold, with its mark
    assert '<td class="second">0.1900 ± 0.0141 (n=2)</td>' in page        # underlined
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    rows = re.findall(r"<tr( class=\"[^\"]*\")?>(.*?)</tr>", body)
    assert len(rows) == len(table.cells)
    paper_rows = [r for cls, r in rows if "paper" in cls]
    assert len(paper_rows) == len(rows) // 2 and "<td>0.1959</td>" in paper_rows[0]
    assert '<th class="source">ours</th>' in rows[0][1] and "ML-1M" in rows[0][1]
    assert "ML-1M" not in paper_rows[0]                    # a repeated label is left blank
    notes = re.findall(r"<li>(.*?)</li>", page)
    assert len(notes) == len(table.notes) and any("Wilcoxon" in n for n in notes)
    assert "p &lt; 0.05" in page and "p < 0.05" not in page      # escaped
    write_table(table, *(tmp_path / f"t2.{e}" for e in ("md", "csv", "tex")),
                html_path=tmp_path / "t2.html", head="Table 2 (reduced)", title="main")
    assert (tmp_path / "t2.html").read_text() == page


def test_a_deterministic_model_reads_one_number_not_a_spread(tmp_path):
    """Popularity (not learned) gives the same number whatever the seed: no '± 0.0000 (n=2)'."""
    rng = np.random.default_rng(0)
    for seed in (1, 2):
        write_run(tmp_path, "popularity", seed, 0.05, ranks=rng.integers(5, 20, 200))
        write_run(tmp_path, "recgrela", seed, 0.20 + 0.01 * seed, ranks=rng.integers(1, 4, 200))
    runs, ranks = read_tree(tmp_path)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"],
                       deterministic=["popularity"])
    ours = ("ML-1M", "NDCG@10", "ours")
    assert cell(table, ours, "Pop") == "0.0500 (deterministic)"
    assert cell(table, ours, "RecGRELA").startswith("0.2150 ± 0.0071 (n=2)")
    assert any("(deterministic) = a model whose result does not depend on the seed (Pop)" in n
               for n in table.notes)
    # not declared deterministic: the usual cell; declared but differing seeds: the spread
    plain = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    assert cell(plain, ours, "Pop") == "0.0500 ± 0.0000 (n=2)"
    odd = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"],
                     deterministic=["recgrela"])
    assert cell(odd, ours, "RecGRELA").startswith("0.2150 ± 0.0071 (n=2)")
    group = group_table(runs, PAPER, dataset="ml-1m", model="popularity", max_len=200,
                        rows=["default"], metrics=["ndcg@10"], deterministic={"popularity"})
    assert group.cells.loc[("default", "ours"), "NDCG@10"] == "0.0500 (deterministic)"


def test_no_mark_when_the_reference_is_not_significantly_better(tree):
    runs, ranks = read_tree(tree)
    same = ranks[("ml-1m", "recgrela", "default", 200, 1)]
    for key in list(ranks):
        ranks[key] = same                     # every model ranks every user identically
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    assert cell(table, ("ML-1M", "NDCG@10", "ours"), "RecGRELA") == "0.2200 ± 0.0265 (n=3)"
    # Without ranks there is no test, and the note says so instead of crashing.
    table = main_table(runs, PAPER, max_len=200, metrics=["ndcg@10"])
    assert not cell(table, ("ML-1M", "NDCG@10", "ours"), "RecGRELA").endswith("*")
    assert any("Not tested" in n and "ranks missing" in n for n in table.notes)


def test_significantly_worse_is_marked_as_such_not_as_better(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    for seed, v in ((1, 0.12), (2, 0.13)):     # RecGRELA worse than SIGMA on every user
        write_run(root, "recgrela", seed, v, ranks=rng.integers(4, 13, 200))
        write_run(root, "sigma", seed, v + 0.08, ranks=rng.integers(1, 4, 200))
    runs, ranks = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    shown = cell(table, ("ML-1M", "NDCG@10", "ours"), "RecGRELA")
    assert shown.endswith(" †") and "*" not in shown
    assert cell(table, ("ML-1M", "NDCG@10", "ours"), "Improv.").startswith("-")


def test_significance_mark_takes_its_direction_from_the_test(tmp_path):
    # 160 users: RecGRELA at rank 2 where SIGMA is at rank 3 (+0.13 NDCG@10 each); 40 users:
    # RecGRELA misses (rank 11) where SIGMA hits at rank 1 (-1 each). The mean difference is
    # negative, the signed-rank test says RecGRELA is better: "*", not "†".
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.10, ranks=np.r_[np.full(160, 2), np.full(40, 11)])
    write_run(root, "sigma", 1, 0.20, ranks=np.r_[np.full(160, 3), np.full(40, 1)])
    runs, ranks = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    shown = cell(table, ("ML-1M", "NDCG@10", "ours"), "RecGRELA")
    assert shown.endswith(" *") and "†" not in shown
    assert cell(table, ("ML-1M", "NDCG@10", "ours"), "Improv.").startswith("-")


def test_paper_values_only_beside_the_same_max_len(tree):
    runs, _ = read_tree(tree)
    table = main_table(runs, PAPER, max_len=50, metrics=["ndcg@10"])
    assert cell(table, ("ML-1M", "NDCG@10", "ours"), "RecGRELA") == "0.1000 (n=1)"
    assert (table.cells.loc[("ML-1M", "NDCG@10", "paper")] == "n/a").all()


def test_paper_values_only_beside_the_same_variant_and_train_settings(tmp_path):
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.20)                                     # as the paper
    write_run(root, "sigma", 1, 0.18, train={"epochs": 2, "stopping_step": 1})
    write_run(root, "linrec", 1, 0.17, variant="num_layers=1")
    write_run(root, "recblr", 1, 0.16, eval_mode="uni100")
    write_run(root, "lrurec", 1, 0.15, train=None)                         # nothing recorded
    write_run(root, "mamba4rec", 1, 0.15, dataset="ml-20m")   # ML-20M's patience is 10, not 20
    runs, _ = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, metrics=["ndcg@10"],
                       variants={"linrec": "num_layers=1"})
    paper = table.cells.loc[("ML-1M", "NDCG@10", "paper")]
    assert paper["RecGRELA"] == "0.1959" and paper["Improv."] == "+2.19% vs RecBLR"
    for model in ("SIGMA", "LinRec (num_layers=1)", "RecBLR", "LRURec"):
        assert paper[model] == "n/a", model
    assert paper["EulerFormer"] == "0.1768"          # not run: the paper's number, nothing beside
    assert table.cells.loc[("ML-20M", "NDCG@10", "paper"), "Mamba4Rec"] == "n/a"
    note = next(n for n in table.notes if n.startswith("Paper value not shown"))
    assert "SIGMA: epochs 2 (paper 300), stopping_step 1 (paper 20)" in note
    assert "LinRec (num_layers=1): variant num_layers=1 (paper: default)" in note
    assert "RecBLR: eval_mode uni100 (paper full)" in note
    assert "LRURec: train settings not recorded" in note
    assert "Mamba4Rec: stopping_step 20 (paper 10)" in note
    data = table.data.set_index(["dataset", "model"])
    assert math.isnan(data.loc[("ml-1m", "sigma"), "paper"])
    # the reference itself off the paper's settings: its Improv. has no paper value either
    write_run(root, "recgrela", 2, 0.21, train={"epochs": 2, "stopping_step": 1})
    runs, _ = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, metrics=["ndcg@10"])
    paper = table.cells.loc[("ML-1M", "NDCG@10", "paper")]
    assert paper["RecGRELA"] == "n/a" and paper["Improv."] == "n/a"


def test_table2_keeps_every_variant_of_a_model(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.22, ranks=rng.integers(1, 4, 200))
    write_run(root, "sasrec", 1, 0.15, ranks=rng.integers(4, 13, 200))
    write_run(root, "sasrec", 1, 0.19, variant="attention=sdpa", ranks=rng.integers(2, 13, 200))
    write_run(root, "sasrec", 1, 0.30, variant="num_layers=1")          # not asked for
    runs, ranks = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"],
                       variants={"sasrec": ["default", "attention=sdpa"]})
    ours = table.cells.loc[("ML-1M", "NDCG@10", "ours")]
    assert ours["SASRec"] == "0.1500 (n=1)"
    assert ours["SASRec (attention=sdpa)"] == "0.1900 (n=1)"
    assert not any("num_layers=1" in c for c in table.cells.columns)
    assert list(table.cells.columns[-2:]) == ["RecGRELA", "Improv."]
    # the best baseline is the better of the two SASRec variants
    assert ours["Improv."] == f"{0.22 / 0.19 - 1:+.2%} vs SASRec (attention=sdpa)"
    rows = table.data[table.data.model == "sasrec"].set_index("variant")
    assert rows.loc["default", "ours_mean"] == pytest.approx(0.15)
    assert rows.loc["attention=sdpa", "ours_mean"] == pytest.approx(0.19)
    assert table.cells.loc[("ML-1M", "NDCG@10", "paper"), "SASRec (attention=sdpa)"] == "n/a"
    # a single variant given as a string still works
    one = main_table(runs, PAPER, max_len=200, metrics=["ndcg@10"],
                     variants={"sasrec": "attention=sdpa"})
    assert one.cells.loc[("ML-1M", "NDCG@10", "ours"), "SASRec (attention=sdpa)"] == "0.1900 (n=1)"


def test_the_authors_code_of_recgrela_is_not_one_of_its_baselines(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.22, ranks=rng.integers(1, 4, 200))
    write_run(root, "reference-recgrela", 1, 0.25, ranks=rng.integers(1, 3, 200))
    write_run(root, "sasrec", 1, 0.15, ranks=rng.integers(4, 13, 200))
    runs, ranks = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, test_ranks=ranks, metrics=["ndcg@10"])
    ours = table.cells.loc[("ML-1M", "NDCG@10", "ours")]
    assert ours["RecGRELA (authors' code)"] == "0.2500 (n=1)"       # shown beside ours
    # ... but Improv. and the paired test are against the best real baseline
    assert ours["Improv."].endswith("vs SASRec")
    assert "1 baselines, 200 users" in to_markdown(table)


def test_nothing_run_still_renders_the_paper_layout():
    table = main_table([], PAPER, max_len=200, metrics=["hit@10"])
    assert list(table.cells.index.get_level_values("dataset").unique()) == [
        "ML-1M", "ML-20M", "ML-32M", "LFM-1B", "Netflix"]
    assert (table.cells.xs("ours", level="source").drop(columns="Improv.") == "not run").all().all()
    assert cell(table, ("Netflix", "HR@10", "paper"), "RecGRELA") == "0.1386"
    assert cell(table, ("Netflix", "HR@10", "paper"), "Improv.") == "+1.32% vs LinRec"
    every = main_table([], PAPER, max_len=200, metrics=["mrr@10"])      # a tie in the paper
    assert cell(every, ("Netflix", "MRR@10", "paper"), "Improv.") == "+4.98% vs LinRec / SIGMA"
    assert "**" not in to_markdown(table)


def test_layers_table_beside_table3(tree):
    runs, _ = read_tree(tree)
    table = layers_table(runs, PAPER)
    assert list(table.cells.index.get_level_values("variant").unique()) == [
        "1 (num_layers=1)", "2 (num_layers=2)", "3 (num_layers=3)", "4 (default)",
        "5 (num_layers=5)", "6 (num_layers=6)"]
    assert cell(table, ("2 (num_layers=2)", "ours"), "NDCG@10") == "0.1800 (n=1)"
    assert cell(table, ("2 (num_layers=2)", "ours"), "memory (GB)") == "1.50 (n=1)"  # 1536/1024
    assert cell(table, ("4 (default)", "ours"), "s/epoch") == "12.00 ± 1.00 (n=3)"   # 11, 12, 13
    assert cell(table, ("4 (default)", "paper"), "memory (GB)") == "12.70"
    assert cell(table, ("4 (default)", "paper"), "HR@5") == "0.1865"       # Table 3's own
    assert cell(table, ("1 (num_layers=1)", "ours"), "HR@5") == "not run"
    assert any("cuda_max_allocated" in n for n in table.notes)


def test_group_table_labels_variants_and_adds_unlisted_ones(tree):
    runs, _ = read_tree(tree)
    table = group_table(runs, PAPER, dataset="ml-1m", model="recgrela", max_len=200,
                        block="fig4", metrics=["ndcg@10", "mrr@10"])
    names = list(table.cells.index.get_level_values("variant").unique())
    assert names[-1] == "num_layers=2"             # run, but not in Fig. 4: appended, no label
    row = ("w/o RoPE (position_encoding=none)", "ours")
    assert cell(table, row, "NDCG@10") == "0.1900 (n=1)"
    assert cell(table, ("w/o RoPE (position_encoding=none)", "paper"), "NDCG@10") == "0.1916"
    assert cell(table, ("w/o Droppath (drop_path=0.0)", "ours"), "MRR@10") == "not run"
    # A length sweep: rows are max_len values of the default variant; the paper has none.
    sweep = group_table(runs, PAPER, dataset="ml-1m", model="recgrela", by="max_len",
                        metrics=["ndcg@10"])
    assert list(sweep.cells.index.get_level_values("max_len").unique()) == ["L=50", "L=200"]
    assert cell(sweep, ("L=50", "ours"), "NDCG@10") == "0.1000 (n=1)"
    assert cell(sweep, ("L=200", "paper"), "NDCG@10") == "n/a"
    assert any("prints no numbers" in n for n in sweep.notes)


def test_group_and_runs_tables_show_paper_values_only_beside_runs_trained_as_the_paper(
        tmp_path):
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.19, variant="position_encoding=none",
              train={"epochs": 3, "stopping_step": 20})         # a CPU budget
    write_run(root, "recgrela", 1, 0.20)                         # the paper's budget
    runs, _ = read_tree(root)
    table = group_table(runs, PAPER, dataset="ml-1m", model="recgrela", max_len=200,
                        block="fig4", metrics=["ndcg@10"])
    assert cell(table, ("w/o RoPE (position_encoding=none)", "paper"), "NDCG@10") == "n/a"
    assert cell(table, ("RecGRELA (Full Model) (default)", "paper"), "NDCG@10") == "0.1959"
    assert any("w/o RoPE (position_encoding=none): epochs 3 (paper 300)" in n
               for n in table.notes)
    every = runs_table(runs, PAPER)
    assert cell(every, ("ml-1m", "recgrela", "position_encoding=none", 200, 1),
                "paper NDCG@10") == "n/a"
    assert cell(every, ("ml-1m", "recgrela", "default", 200, 1), "log HR@10") == "0.3311"


def test_stats_table_beside_table1_with_the_padding_note():
    stats = {"ml-1m": {"n_users": 6040, "n_items": 3416, "n_interactions": 999611,
                       "avg_seq_len": 165.4985, "sparsity": 0.951552},
             "ml-100k": {"n_users": 943, "n_items": 1349, "n_interactions": 99287,
                         "avg_seq_len": 105.29, "sparsity": 0.921949}}
    table = stats_table(stats, PAPER)
    assert cell(table, ("ML-1M", "ours"), "#users") == "6,040"
    assert cell(table, ("ML-1M", "paper"), "#users") == "6,041"
    assert cell(table, ("ML-1M", "ours"), "avg. IA") == "292.6"      # 999611 / 3416
    assert cell(table, ("ML-1M", "paper"), "sparsity") == "95.15%"
    assert (table.cells.loc[("ML-100K", "paper")] == "n/a").all()
    assert any("padding" in n and "paper - 1" in n for n in table.notes)


def test_runs_table_reads_identity_from_the_file_not_its_path(tree):
    moved = tree / "elsewhere" / "x"
    moved.mkdir(parents=True)
    src = tree / "ml-1m" / "recgrela" / "default" / "L200" / "seed1" / "metrics.json"
    (moved / "metrics.json").write_text(src.read_text().replace('"seed": 1', '"seed": 7'))
    runs, _ = read_tree(tree)
    table = runs_table(runs, PAPER)
    row = ("ml-1m", "recgrela", "default", 200, 7)
    assert cell(table, row, "NDCG@10") == "0.2000"
    assert cell(table, row, "paper NDCG@10") == "0.1959"
    assert cell(table, row, "log HR@10") == "0.3311"
    assert cell(table, ("ml-1m", "recgrela", "num_layers=2", 200, 1), "paper NDCG@10") == "0.1838"
    assert cell(table, ("ml-1m", "linrec", "default", 200, 1), "status").startswith("OOM at L=200")
    assert cell(table, ("ml-1m", "recgrela", "default", 50, 1), "log NDCG@10") == "n/a"
    with pytest.raises(ValueError, match="lacks \\['variant'\\]"):
        runs_table([{"dataset": "d", "model": "m", "max_len": 1, "seed": 1, "status": "ok"}],
                   PAPER)


def test_protocol_note_says_how_targets_were_ranked(tmp_path):
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.2)
    runs, _ = read_tree(root)
    full = to_markdown(group_table(runs, PAPER, dataset="ml-1m", model="recgrela", max_len=200))
    assert "full ranking over all items" in full and "negatives per user" not in full
    sampled = [run | {"eval_mode": "pop100"} for run in runs]
    text = to_markdown(group_table(sampled, PAPER, dataset="ml-1m", model="recgrela",
                                   max_len=200))
    assert "100 popularity-drawn negatives per user" in text and "full ranking" not in text


def test_bf16_runs_say_so_and_stand_without_the_paper_value(tmp_path):
    """train.precision: a bf16 run is named in the protocol line, and the paper's value (fp32)
    is not shown beside it; a run recorded before the setting counts as fp32."""
    root = tmp_path / "results"
    write_run(root, "recgrela", 1, 0.20, train=dict(PAPER_TRAIN, precision="bf16"))
    write_run(root, "sigma", 1, 0.18)                     # no precision recorded: fp32
    runs, _ = read_tree(root)
    table = main_table(runs, PAPER, max_len=200, metrics=["ndcg@10"])
    paper = table.cells.loc[("ML-1M", "NDCG@10", "paper")]
    assert paper["RecGRELA"] == "n/a" and paper["SIGMA"] != "n/a"
    note = next(n for n in table.notes if n.startswith("Paper value not shown"))
    assert "RecGRELA: precision bf16 (paper fp32)" in note
    protocol = next(n for n in table.notes if n.startswith("Protocol:"))
    assert "bfloat16 autocast" in protocol and "float32 training" in protocol
