"""The cost grid: config -> cells (recbench/cost/grid.py), one cell's measurements and its
limits (recbench/cost/measure.py), slopes and tables (recbench/cost/cells.py)."""
from __future__ import annotations

import json

import pytest

from recbench.cost.cells import loglog_slope, memory_claim, read_cells, slopes
from recbench.cost.grid import expand_profile
from recbench.cost.measure import profile_cell, profile_in_subprocess
from recbench.plan.groups import ConfigError
from recbench.reporting.cost_tables import cost_tables
from recbench.reporting.render import to_markdown


def config(studies, **profile):
    return {"models": ["popularity", "sasrec", "recgrela"],
            "profile": {"device": "cpu", "batch_size": 8, "policies": ["stored", "recompute"],
                        "run_studies": None, "studies": studies} | profile}


def test_studies_expand_per_model_option_policy_and_length():
    grid = expand_profile(config({
        "length": {"max_lens": [50, 100]},
        "layers": {"models": ["recgrela", "sasrec"], "max_lens": [100],
                   "overrides": [{"num_layers": 1}, {"causal": True}]}}))
    length = {(c.model, c.policy, c.max_len) for c in grid["length"]}
    # popularity is not learned; only RecGRELA has a recompute policy
    assert length == {("sasrec", "stored", 50), ("sasrec", "stored", 100),
                      ("recgrela", "stored", 50), ("recgrela", "stored", 100),
                      ("recgrela", "recompute", 50), ("recgrela", "recompute", 100)}
    layers = {(c.model, c.variant, c.policy) for c in grid["layers"]}
    assert ("sasrec", "num_layers=1", "stored") in layers
    assert ("recgrela", "causal=true", "recompute") in layers
    assert not any(m == "sasrec" and "causal" in v for m, v, _ in layers)   # not its option
    cell = next(c for c in grid["layers"] if c.model == "recgrela" and c.policy == "recompute")
    assert cell.path.startswith("results/profile/cpu/recompute/recgrela/")
    assert cell.path.endswith("/L100/B8.json")


@pytest.mark.parametrize("studies, run, named", [
    ({"s": {"models": ["sasrecc"], "max_lens": [10]}}, None, "sasrecc"),
    ({"s": {"models": ["sasrec"], "max_lens": [10], "overrides": [{"hiden": 3}]}}, None,
     "profile.studies.s.overrides"),
    ({"s": {"max_lens": [10]}}, ["t"], "profile.run_studies"),
])
def test_a_bad_study_is_refused_by_name(studies, run, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        expand_profile(config(studies, run_studies=run))


def test_run_studies_selects():
    grid = expand_profile(config({"a": {"max_lens": [10]}, "b": {"max_lens": [20]}},
                                 run_studies=["b"]))
    assert list(grid) == ["b"]


def test_flops_grow_linearly_for_linear_attention_and_faster_for_softmax():
    def flops(model, L, **over):
        return profile_cell(model, L, 1, n_items=50, overrides=over, steps=1, warmup=0,
                            policy="stored")["flops_per_sequence"]
    linear = flops("recgrela", 128) / flops("recgrela", 64)
    quadratic = flops("sasrec", 512) / flops("sasrec", 256)
    assert 1.9 < linear < 2.1
    assert quadratic > 2.2


def test_recompute_policy_changes_memory_not_maths():
    stored = profile_cell("recgrela", 16, 2, n_items=30, steps=1, warmup=0, policy="stored")
    again = profile_cell("recgrela", 16, 2, n_items=30, steps=1, warmup=0, policy="recompute")
    assert stored["flops_per_sequence"] == again["flops_per_sequence"]
    assert stored["status"] == again["status"] == "ok"
    with pytest.raises(ValueError, match="no activation recomputation"):
        profile_cell("sasrec", 16, 2, n_items=30, policy="recompute")


def test_streaming_step_is_timed_for_the_causal_variant_only():
    causal = profile_cell("recgrela", 16, 2, n_items=30, steps=1, warmup=0,
                          overrides={"causal": True})
    reference = profile_cell("recgrela", 16, 2, n_items=30, steps=1, warmup=0)
    assert causal["stream_step_ms"] > 0 and "stream_step_ms" not in reference


def test_out_of_memory_and_time_limits_become_cells():
    cell = {"model": "sasrec", "max_len": 1600, "batch_size": 16, "n_items": 50,
            "steps": 1, "warmup": 0}
    oom = profile_in_subprocess(cell, timeout_s=300, memory_limit_gb=3)
    assert oom["status"] == "oom" and oom["reason"] == "out of memory (3 GB address space)"
    assert (oom["model"], oom["max_len"], oom["policy"]) == ("sasrec", 1600, "stored")
    slow = profile_in_subprocess(cell | {"max_len": 20}, timeout_s=0.5)
    assert slow["status"] == "timeout" and "0.5 s" in slow["reason"]


def test_slopes_claim_and_tables(tmp_path):
    paths = []
    for model, power in (("recgrela", 1), ("sasrec", 2)):
        for L in (100, 200, 400, 800):
            path = tmp_path / f"cpu/stored/{model}/default/L{L}/B8.json"
            path.parent.mkdir(parents=True)
            ok = not (model == "sasrec" and L == 800)
            cell = {"model": model, "policy": "stored", "max_len": L, "batch_size": 8,
                    "device": "cpu", "status": "ok" if ok else "timeout"}
            cell |= ({"peak_rss_mb": 100 + L ** power / 100 if L > 100 else 101,
                      "seconds_per_step": L ** power / 1e4} if ok
                     else {"reason": "over the time limit of 60 s"})
            path.write_text(json.dumps(cell))
            paths.append(path)
    cells = read_cells(paths)
    fitted = slopes(cells).set_index("label")
    assert fitted.loc["SASRec", "time_slope"] == pytest.approx(2.0)
    assert fitted.loc["RecGRELA", "time_tail_slope"] == pytest.approx(1.0)
    assert fitted.loc["SASRec", "first_failed"] == "TIMEOUT at L=800"
    assert loglog_slope([1], [1]) != loglog_slope([1], [1])        # NaN with one point
    claim = memory_claim(cells)
    assert "at max_len 400 RecGRELA uses 104 MB" in claim
    assert "SASRec (TIMEOUT at L=800)" in claim
    tables = cost_tables(cells, "t")
    memory = to_markdown(tables[0])
    assert "TIMEOUT: over the time limit of 60 s" in memory and "| RecGRELA |" in memory
    assert [t.title for t in tables][-1] == "Cost (t): log-log slopes against max_len"
