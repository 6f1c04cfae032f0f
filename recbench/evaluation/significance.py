"""Paired significance tests between models on per-user test metrics.

Every model is evaluated on the same test users (leave-one-out: one target each), so two models
are compared user by user. `compare_to` runs, for each other model, a two-sided Wilcoxon
signed-rank test on the per-user differences (reference - model) and corrects the p-values for
the number of models compared with Holm's step-down method. The direction of a difference is the
test's own: the signed-rank sum R+ (ranks of the users where the reference is ahead) against its
null mean n(n+1)/4, not the sign of the mean difference (a few large losses can outweigh many
small wins in the mean while the ranks say the reference is better).

zero_method = "wilcox" (scipy's default, Wilcoxon's original): users on whom both models score
the same (typically both miss the top k, so both are 0) carry no sign and are dropped before
ranking; the test is then over the users where the models differ. If no user differs the test
is not run and p = 1 (scipy would warn and give NaN). method = "auto": with thousands of users
and tied differences this is the normal approximation with tie correction.

`per_user_values` turns saved per-user ranks (test_ranks.parquet: user_id, rank, 1-based) into
the per-user metric values these tests take, averaged over seeds.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from recbench.evaluation.metrics import per_user_metric

ZERO_METHOD = "wilcox"
ALPHA = 0.05


def per_user_values(ranks_by_model: Mapping[str, Sequence[pd.DataFrame]],
                    metric: str) -> pd.DataFrame:
    """Columns user, model, value: each user's `metric` (e.g. 'ndcg@10') from each seed's ranks
    (DataFrames with columns user_id, rank), averaged over that model's seeds."""
    frames = []
    for model, seeds in ranks_by_model.items():
        if not seeds:
            raise ValueError(f"per_user_values: model {model!r} has no ranks")
        for i, ranks in enumerate(seeds):
            missing = {"user_id", "rank"} - set(ranks.columns)
            if missing:
                raise ValueError(f"per_user_values: ranks #{i} of model {model!r} lack column(s) "
                                 f"{sorted(missing)}; expected test_ranks.parquet's user_id, rank")
            # torch.tensor copies: arrays read from parquet are read-only
            rank = torch.tensor(ranks["rank"].to_numpy(dtype=np.int64))
            if len(rank) and int(rank.min()) < 1:
                raise ValueError(f"per_user_values: ranks #{i} of model {model!r} contain rank "
                                 f"{int(rank.min())}; ranks are 1-based")
            frames.append(pd.DataFrame({"user": ranks["user_id"].astype(str).to_numpy(),
                                        "model": model,
                                        "value": per_user_metric(rank, metric).numpy()}))
    if not frames:
        return pd.DataFrame(columns=["user", "model", "value"])
    return (pd.concat(frames).groupby(["model", "user"], sort=False, as_index=False)["value"]
            .mean()[["user", "model", "value"]])


def compare_to(per_user: pd.DataFrame, reference: str, metric: str = "ndcg@10") -> pd.DataFrame:
    """Reference against every other model of `per_user` (columns user, model, value; if it has
    a `metric` column, only rows of `metric` are used).

    One row per other model: model, mean_diff (mean over common users of reference - model),
    statistic (Wilcoxon's, scipy's convention), r_plus (the signed-rank sum of the users where
    the reference is ahead), direction ("better" / "worse": r_plus above / below its null mean
    n(n+1)/4 over the n users that differ; "none" when equal), p_value (two-sided), p_holm
    (Holm-adjusted over the models compared), significant (p_holm < 0.05), n_users (users
    present for both).
    """
    missing = {"user", "model", "value"} - set(per_user.columns)
    if missing:
        raise ValueError(f"compare_to: per_user lacks column(s) {sorted(missing)}")
    if "metric" in per_user.columns:
        per_user = per_user[per_user["metric"] == metric]
    wide = per_user.pivot_table(index="user", columns="model", values="value", aggfunc="mean")
    if reference not in wide.columns:
        raise ValueError(f"compare_to: reference model {reference!r} has no {metric} values; "
                         f"models present: {sorted(wide.columns)}")
    rows = []
    for model in (m for m in wide.columns if m != reference):
        pair = wide[[reference, model]].dropna()
        if pair.empty:
            raise ValueError(f"compare_to: {reference!r} and {model!r} share no user")
        diff = (pair[reference] - pair[model]).to_numpy()
        if np.all(diff == 0):
            statistic, r_plus, p_value, direction = 0.0, 0.0, 1.0, "none"
        else:
            result = wilcoxon(diff, zero_method=ZERO_METHOD, alternative="two-sided")
            statistic, p_value = float(result.statistic), float(result.pvalue)
            # one-sided "greater": scipy's statistic is then R+ itself
            r_plus = float(wilcoxon(diff, zero_method=ZERO_METHOD,
                                    alternative="greater").statistic)
            n = int(np.count_nonzero(diff))
            centre = n * (n + 1) / 4
            direction = "better" if r_plus > centre else "worse" if r_plus < centre else "none"
        rows.append({"model": model, "mean_diff": float(diff.mean()), "statistic": statistic,
                     "r_plus": r_plus, "direction": direction, "p_value": p_value,
                     "n_users": len(pair)})
    table = pd.DataFrame(rows, columns=["model", "mean_diff", "statistic", "r_plus",
                                        "direction", "p_value", "n_users"])
    table["p_holm"] = (multipletests(table["p_value"], method="holm")[1] if len(table)
                       else np.empty(0))
    table["significant"] = table["p_holm"] < ALPHA
    return table[["model", "mean_diff", "statistic", "r_plus", "direction", "p_value", "p_holm",
                  "significant", "n_users"]]
