"""recbench.reporting.paper_numbers: variant names, and the paper-numbers loader's grammar and errors."""
import textwrap

import pytest

from recbench.plan.variants import variant_name
from recbench.reporting.paper_numbers import COLUMNS, paper_numbers

DEFAULTS = {"num_layers": 4, "position_encoding": "rope", "activation": None, "drop_path": 0.1,
            "dropout": 0.1, "num_heads": 4, "local_shortcut": True, "gate": True,
            "input_proj": True}


@pytest.mark.parametrize("overrides, name", [
    ({}, "default"),
    ({"num_layers": 4, "gate": True, "activation": None}, "default"),   # all equal defaults
    ({"num_layers": 1}, "num_layers=1"),
    ({"position_encoding": "none"}, "position_encoding=none"),
    ({"drop_path": 0.0}, "drop_path=0.0"),
    ({"drop_path": 0}, "drop_path=0.0"),                 # an int for a float option: one run
    ({"local_shortcut": False, "gate": False}, "gate=false+local_shortcut=false"),   # sorted
    ({"activation": "relu", "num_layers": 4}, "activation=relu"),
    ({"dropout": 1e-05}, "dropout=1e-05"),
])
def test_variant_name(overrides, name):
    assert variant_name(overrides, DEFAULTS) == name


def test_variant_name_keeps_bools_and_numbers_apart():
    assert variant_name({"flag": 1}, {"flag": True}) == "flag=1"      # 1 == True in Python
    assert variant_name({"flag": None}, {"flag": False}) == "flag=null"


@pytest.mark.parametrize("overrides, message", [
    ({"num_layer": 2}, "'num_layer' is not an option"),
    ({"activation": "a/b"}, "cannot be written"),
    ({"activation": "true"}, "cannot be written"),      # would read back as a bool
    ({"activation": "x+y"}, "cannot be written"),
    ({"num_heads": [1, 2]}, "only scalars"),
])
def test_variant_name_refuses_what_cannot_name_a_folder(overrides, message):
    with pytest.raises(ValueError, match=message):
        variant_name(overrides, DEFAULTS)


def load(tmp_path, text):
    path = tmp_path / "paper.yaml"
    path.write_text(textwrap.dedent(text))
    return paper_numbers(path)


def test_loader_walks_rows_and_columns(tmp_path):
    table = load(tmp_path, """
        t:
          source: "Table X"
          variant: default
          max_len: 200
          rows: [dataset, metric]
          columns: {model: [a, b]}
          values:
            d1: {hit@5: [0.1, 0.2], ndcg@5: [0.3, 0.4]}
        f:
          source: "Fig. Y"
          dataset: d1
          model: a
          rows: [variant]
          columns: {metric: [ndcg@10]}
          labels: {default: "Full", x=1: "w/o x"}
          values: {default: [0.5], x=1: [0.6]}
        """)
    assert list(table.columns) == COLUMNS
    row = table[(table.block == "t") & (table.model == "b") & (table.metric == "ndcg@5")].iloc[0]
    assert (row.dataset, row.variant, row.value, row.max_len, row.source) == \
        ("d1", "default", 0.4, 200, "Table X")
    fig = table[table.block == "f"].set_index("variant")
    assert fig.loc["x=1", "label"] == "w/o x" and fig.loc["x=1", "value"] == 0.6
    assert fig["max_len"].isna().all()          # not given: unknown, not invented


@pytest.mark.parametrize("body, message", [
    ("t: {rows: [metric], dataset: d, model: m, variant: v, values: {a: 1}}", "needs a `source`"),
    ("t: {source: s, rows: [metric], dataset: d, model: m, values: {a: 1}}",
     "'variant' must be given exactly once"),
    ("t: {source: s, dataset: d, model: m, variant: v, rows: [metric], columns: {split: [x]},"
     " values: {a: [1]}}", "may only walk"),
    ("t: {source: s, dataset: d, model: m, variant: v, rows: [metric], values: {a: '0.1'}}",
     "t'.*a: expected a number"),
    ("t: {source: s, dataset: d, model: m, variant: v, rows: [metric], values: {a: [1, 2]}}",
     "expected a number"),
    ("t: {source: s, dataset: d, model: m, rows: [variant], columns: {metric: [x, y]},"
     " values: {default: [1]}}", "list of 2 numbers"),
    ("t: {source: s, dataset: d, model: m, variant: v, rows: [metric], values: {a: 1},"
     " labels: {b: B}}", "labels for rows that have no values"),
    ("t: {source: s, sourse: s2, dataset: d, model: m, variant: v, rows: [metric], values: {}}",
     "unknown key"),
])
def test_loader_errors_name_the_block_and_the_problem(tmp_path, body, message):
    with pytest.raises(ValueError, match=message) as err:
        load(tmp_path, body)
    assert "block 't'" in str(err.value)
