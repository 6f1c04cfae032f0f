"""Paired tests: Wilcoxon signed-rank per model against a reference, Holm-corrected."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from recbench.evaluation.significance import compare_to, per_user_values


def frame(values: dict[str, list[float]], users=None) -> pd.DataFrame:
    """{model: per-user values} -> the long (user, model, value) form compare_to takes."""
    rows = []
    for model, vals in values.items():
        for user, v in zip(users or range(len(vals)), vals):
            rows.append({"user": str(user), "model": model, "value": v})
    return pd.DataFrame(rows)


def test_a_clearly_better_reference_is_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 200)
    better = base + 0.05 + rng.normal(0, 0.01, 200)       # better on (nearly) every user
    result = compare_to(frame({"ref": better, "other": base}), "ref").set_index("model")
    row = result.loc["other"]
    assert row.n_users == 200
    assert row.mean_diff == pytest.approx((better - base).mean())
    assert row.p_value < 1e-30 and row.p_holm == row.p_value      # one comparison: no change
    assert bool(row.significant)


def test_direction_comes_from_the_signed_rank_test_not_the_mean():
    # 90 users where the reference is ahead by 0.01, 10 where it is behind by 0.2: the mean
    # difference is negative (-0.011), but the signed ranks favour the reference (R+ = 90 x
    # 45.5 = 4095 against R- = 955), so the test says the reference is better.
    base = np.linspace(0.3, 0.7, 100)
    diff = np.r_[np.full(90, 0.01), np.full(10, -0.2)]
    row = compare_to(frame({"ref": base + diff, "other": base}), "ref").iloc[0]
    assert row.mean_diff == pytest.approx(-0.011)
    assert row.r_plus == pytest.approx(4095)
    assert row.direction == "better"
    assert bool(row.significant)
    # the mirror image: worse, though its mean difference is positive
    row = compare_to(frame({"ref": base - diff, "other": base}), "ref").iloc[0]
    assert row.mean_diff > 0 and row.direction == "worse" and bool(row.significant)
    # no difference at all: no direction
    row = compare_to(frame({"ref": base, "other": base}), "ref").iloc[0]
    assert row.direction == "none"


def test_symmetric_differences_are_not_significant():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 8, 200) / 8          # eighths: the differences below are exact
    shift = np.where(np.arange(200) % 2 == 0, 0.25, -0.25)     # +0.25 for half, -0.25 for half
    result = compare_to(frame({"ref": base, "sym": base - shift}), "ref").iloc[0]
    assert result.p_value == pytest.approx(1.0)                 # rank sums exactly balance
    assert result.mean_diff == pytest.approx(0.0)
    assert not result.significant


def test_noise_alone_is_rejected_at_about_the_nominal_rate():
    # 400 models identical to the reference up to per-user noise. Under the null hypothesis
    # each raw test rejects at level 0.05 about 5% of the time (binomial, 400 trials: 95% of
    # outcomes within 2.9%-7.1%); Holm keeps the chance of any rejection at 5% (none here).
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 200)
    models = {"ref": base} | {f"m{i}": base + rng.normal(0, 0.01, 200) for i in range(400)}
    result = compare_to(frame(models), "ref")
    assert len(result) == 400
    assert 0.02 <= (result.p_value < 0.05).mean() <= 0.09
    assert not result.significant.any()


def test_holm_adjustment_by_hand():
    # Exact small-sample Wilcoxon: n users, every difference positive and distinct ->
    # two-sided p = 2 / 2^n: 0.0625 (n=5), 0.03125 (n=6), 0.015625 (n=7). Each model is
    # present for the first n users only, so it is compared on those.
    ref = [1.0 + 0.1 * k for k in range(7)]
    rows = frame({"ref": ref})
    for model, n in (("a", 5), ("b", 6), ("c", 7)):
        rows = pd.concat([rows, frame({model: [r - 0.1 * (k + 1) for k, r in
                                               enumerate(ref[:n])]})])
    result = compare_to(rows, "ref").set_index("model")
    assert result["n_users"].to_dict() == {"a": 5, "b": 6, "c": 7}
    assert result["p_value"].to_dict() == pytest.approx({"a": 0.0625, "b": 0.03125,
                                                         "c": 0.015625})
    # Holm, by hand: sort p ascending (c, b, a); multiply by 3, 2, 1; keep them non-decreasing.
    c = 3 * 0.015625                    # 0.046875
    b = max(c, 2 * 0.03125)             # 0.0625
    a = max(b, 1 * 0.0625)              # 0.0625
    assert result["p_holm"].to_dict() == pytest.approx({"a": a, "b": b, "c": c})
    # b is below 0.05 before the correction and not after it.
    assert result["significant"].to_dict() == {"a": False, "b": False, "c": True}


def test_identical_models_give_p_one_without_warnings():
    values = [0.0, 0.5, 1.0, 0.25]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # scipy would warn and return NaN here
        result = compare_to(frame({"ref": values, "same": values}), "ref")
    row = result.iloc[0]
    assert (row.statistic, row.p_value, row.p_holm, row.mean_diff) == (0.0, 1.0, 1.0, 0.0)
    assert not row.significant


def test_metric_column_selects_rows_and_errors_name_the_problem():
    rows = frame({"ref": [1.0, 0.0], "b": [0.0, 0.0]}).assign(metric="ndcg@10")
    other = frame({"ref": [0.0, 0.0], "b": [0.0, 0.0]}).assign(metric="hit@10")
    both = pd.concat([rows, other])
    assert compare_to(both, "ref", "ndcg@10").iloc[0].mean_diff == pytest.approx(0.5)
    assert compare_to(both, "ref", "hit@10").iloc[0].p_value == 1.0
    with pytest.raises(ValueError, match="reference model 'x'"):
        compare_to(rows, "x", "ndcg@10")
    with pytest.raises(ValueError, match="share no user"):
        compare_to(frame({"ref": [1.0]}, users=["u1"]).pipe(
            lambda f: pd.concat([f, frame({"b": [1.0]}, users=["u2"])])), "ref")


def test_per_user_values_from_ranks_averaged_over_seeds():
    seed1 = pd.DataFrame({"user_id": ["a", "b"], "rank": [1, 11]})
    seed2 = pd.DataFrame({"user_id": ["a", "b"], "rank": [3, 2]})
    out = per_user_values({"m": [seed1, seed2]}, "ndcg@10").set_index("user")["value"]
    # ndcg@10 = 1/log2(rank+1) within the top 10: a -> (1 + 1/2) / 2, b -> (0 + 1/log2 3) / 2
    assert out["a"] == pytest.approx(0.75)
    assert out["b"] == pytest.approx(0.5 / math.log2(3))
    hit = per_user_values({"m": [seed1]}, "hit@10").set_index("user")["value"]
    assert hit.to_dict() == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match="1-based"):
        per_user_values({"m": [pd.DataFrame({"user_id": ["a"], "rank": [0]})]}, "hit@10")
    with pytest.raises(ValueError, match="lack column"):
        per_user_values({"m": [pd.DataFrame({"user": ["a"], "rank": [1]})]}, "hit@10")
