"""Report tables: our numbers beside the paper's; unknown paper numbers are never invented."""
import json
import math

import pandas as pd
from scipy import stats

from recbench.report import NOT_AVAILABLE, dataset_stats_table, render_markdown, results_table

TEST = {"hit@5": 0.2, "hit@10": 0.3, "ndcg@5": 0.1, "ndcg@10": 0.15, "mrr@5": 0.08, "mrr@10": 0.09}


def write_run(root, dataset, model, max_len):
    run = root / dataset / model / f"L{max_len}" / "seed2020"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "test": TEST, "config": {"train": {"mode": "prefix"}}, "best_epoch": 3, "epochs_run": 5, "seconds_per_epoch": 1.5,
        "peak_memory_mb": 100.0, "device": "cpu"}))
    return run / "metrics.json"


def test_reference_log_shown_only_for_its_own_setting(tmp_path):
    paper = {"results": {}, "reference_log": {"ml-1m": {"recgrela": {
        "max_len": 200, "test": {"ndcg@10": 0.1959, "hit@10": 0.3311}}}}}
    files = [write_run(tmp_path, "ml-1m", "recgrela", 200), write_run(tmp_path, "ml-1m", "recgrela", 50),
             write_run(tmp_path, "ml-1m", "sasrec", 200)]
    table = results_table(files, paper).set_index(["model", "max_len"])
    assert table.loc[("recgrela", 200), "reference log ndcg@10"] == 0.1959
    assert pd.isna(table.loc[("recgrela", 50), "reference log ndcg@10"])   # other max_len
    assert pd.isna(table.loc[("sasrec", 200), "reference log hit@10"])
    assert table.loc[("recgrela", 200), "ndcg@10"] == 0.15
    text = render_markdown(table.reset_index())
    assert text.count(NOT_AVAILABLE) == 3 * 2 + 2 * 2   # every paper cell; log cells of 2 rows


def test_dataset_stats_unknown_paper_values_say_so():
    stats = {"ml-1m": {"n_users": 6040, "n_items": 3416, "n_interactions": 999611,
                       "avg_seq_len": 165.5, "sparsity": 0.95155}}
    paper = {"ml-1m": {"n_users": 6040, "n_items": None}}
    row = dataset_stats_table(stats, paper).iloc[0]
    assert row["paper users"] == 6040 and pd.isna(row["paper items"])
    assert "| ml-1m | 6040 | 6040 | 3416 | n/a" in render_markdown(dataset_stats_table(stats, paper))


def test_intervals_and_paired_tests_from_per_user_ranks(tmp_path):
    """The interval brackets the run's mean, the p-value is the Wilcoxon test of the per-user
    NDCG@10 differences (by hand here), and a run without its ranks file gets blanks."""
    ours = [1, 2, 4, 30, 1, 7, 12, 3, 2, 50]
    theirs = [2, 2, 9, 30, 5, 1, 40, 8, 6, 50]
    ndcg = lambda r: 1 / math.log2(r + 1) if r <= 10 else 0.0
    files = []
    for model, ranks in (("recgrela", ours), ("sasrec", theirs), ("gru4rec", None)):
        files.append(write_run(tmp_path, "ml-1m", model, 200))
        if ranks is not None:
            pd.DataFrame({"user_id": range(10, 20), "rank": ranks}).to_parquet(
                files[-1].parent / "test_ranks.parquet")
    table = results_table(files, {}).set_index("model")
    diff = [ndcg(a) - ndcg(b) for a, b in zip(theirs, ours)]
    assert table.loc["sasrec", "p vs recgrela"] == stats.wilcoxon(diff).pvalue
    assert pd.isna(table.loc["recgrela", "p vs recgrela"])              # not tested against itself
    mean = sum(ndcg(r) for r in theirs) / 10
    assert table.loc["sasrec", "ndcg@10 95% low"] < mean < table.loc["sasrec", "ndcg@10 95% high"]
    assert pd.isna(table.loc["gru4rec", "ndcg@10 95% low"]) and pd.isna(table.loc["gru4rec", "p vs recgrela"])


def test_identical_runs_are_not_different(tmp_path):
    files = []
    for model in ("recgrela", "sasrec"):
        files.append(write_run(tmp_path, "ml-1m", model, 50))
        pd.DataFrame({"user_id": [1, 2, 3], "rank": [1, 4, 20]}).to_parquet(
            files[-1].parent / "test_ranks.parquet")
    assert results_table(files, {}).set_index("model").loc["sasrec", "p vs recgrela"] == 1.0
