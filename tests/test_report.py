"""Report tables: our numbers beside the paper's; unknown paper numbers are never invented."""
import json

import pandas as pd

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
