"""bf16 autocast against fp32: test NDCG@10 of every model on one dataset, paired per user
(issue 28, item 2; a measurement, not a test).

For each model, seed and precision, one run of the training engine (recbench.training.engine
`train_and_evaluate`) with the same budget: `--epochs` epochs (no early stopping inside it),
batch 256, max_len `--max-len`, prefix mode, full ranking. Runs are kept under `--runs`
(default results/precision/<dataset>/<model>/<precision>/seed<S>): a finished run is read, not
retrained, so the script can be stopped and started again, and the table redrawn from what has
finished (`--table-only`).

The table: mean test NDCG@10 over the seeds both precisions finished, their difference, and a
two-sided Wilcoxon signed-rank test over the test users of each user's NDCG@10 averaged over
those seeds (recbench.evaluation.significance, the test of the paper tables). A model is "fit
for bf16" at this budget when p > 0.05. Both precisions rank in float32 (the engine's
`evaluate`), so the table compares training arithmetic only.

    RECBENCH_DATA_MIRROR=../shared/data snakemake --cores 2 --configfile config/ml100k.yaml \
        data/processed/ml-100k/sequences.parquet            # the processed dataset, once
    python benchmarks/precision_accuracy.py --models recgrela,sasrec --seeds 1,2,3 \
        --out reports/measured/bf16_cpu/ml100k
"""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import pandas as pd
import torch

from models import model_class
from recbench.evaluation.significance import compare_to, per_user_values
from recbench.runtime import git_commit
from recbench.training.engine import train_and_evaluate
from train_throughput import machine   # the CPU line of the step-time benchmark (same folder)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["popularity", "gru4rec", "sasrec", "bert4rec", "linrec", "lrurec", "mamba4rec",
          "recgrela", "recblr", "echomamba4rec", "eulerformer", "sigma"]
PRECISIONS = ("fp32", "bf16")
METRIC = "ndcg@10"


def run_dir(runs: Path, model: str, precision: str, seed: int) -> Path:
    return runs / model / precision / f"seed{seed}"


def train(a, runs: Path) -> None:
    for model in a.models:
        for seed in a.seeds:
            for precision in PRECISIONS:
                train_cfg = {"epochs": a.epochs, "batch_size": a.batch, "eval_batch_size": 1024,
                             "precision": precision, "device": "cpu"}
                result = train_and_evaluate(a.dataset_dir, run_dir(runs, model, precision, seed),
                                            model, {}, train_cfg, max_len=a.max_len, seed=seed)
                print(f"{model} {precision} seed {seed}: {METRIC} {result['test'][METRIC]:.4f}, "
                      f"{result['seconds_per_epoch']:.0f} s/epoch", flush=True)


def table(a, runs: Path) -> pd.DataFrame:
    rows = []
    for model in a.models:
        seeds = [s for s in a.seeds if all((run_dir(runs, model, p, s) / "metrics.json").exists()
                                           for p in PRECISIONS)]
        if not seeds:
            rows.append({"model": model, "seeds": 0})
            continue
        metrics = {p: [json.loads((run_dir(runs, model, p, s) / "metrics.json").read_text())
                       for s in seeds] for p in PRECISIONS}
        ranks = {p: [pd.read_parquet(run_dir(runs, model, p, s) / "test_ranks.parquet")
                     for s in seeds] for p in PRECISIONS}
        test = compare_to(per_user_values(ranks, METRIC), reference="fp32", metric=METRIC).iloc[0]
        mean = {p: sum(m["test"][METRIC] for m in metrics[p]) / len(seeds) for p in PRECISIONS}
        rows.append({
            "model": model, "seeds": len(seeds), "learned": model_class(model).learned,
            "ndcg10_fp32": mean["fp32"], "ndcg10_bf16": mean["bf16"],
            "change_pct": 100 * (mean["bf16"] - mean["fp32"]) / mean["fp32"],
            "p_value": test["p_value"], "n_users": int(test["n_users"]),
            "s_per_epoch_fp32": sum(m["seconds_per_epoch"] for m in metrics["fp32"]) / len(seeds),
            "s_per_epoch_bf16": sum(m["seconds_per_epoch"] for m in metrics["bf16"]) / len(seeds),
            "commits": " ".join(sorted({(m["git_commit"] or "?")[:7]
                                        for p in PRECISIONS for m in metrics[p]})),
        })
    return pd.DataFrame(rows)


def markdown(a, frame: pd.DataFrame) -> str:
    lines = ["| model | seeds | NDCG@10 fp32 | NDCG@10 bf16 | change | paired p | fit for bf16 "
             "| s/epoch fp32 | s/epoch bf16 |", "|---" * 9 + "|"]
    for r in frame.to_dict("records"):
        if not r["seeds"]:
            lines.append(f"| {r['model']} | 0 | not run | not run | | | | | |")
            continue
        fit = ("yes" if r["p_value"] > 0.05 else "no") if r["learned"] else "(not learned)"
        lines.append(f"| {r['model']} | {r['seeds']} | {r['ndcg10_fp32']:.4f} | "
                     f"{r['ndcg10_bf16']:.4f} | {r['change_pct']:+.1f}% | {r['p_value']:.3g} | "
                     f"{fit} | {r['s_per_epoch_fp32']:.0f} | {r['s_per_epoch_bf16']:.0f} |")
    m = machine()
    cpu = m["cpu"]
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if m[f])
    head = [f"> {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit "
            f"{(git_commit() or '?')[:7]}, {cpu} ({isa or 'no AVX-512'}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s) per run.",
            f"> Command: `python benchmarks/precision_accuracy.py --dataset-dir {a.dataset_dir} "
            f"--models {','.join(a.models)} --seeds {','.join(map(str, a.seeds))} --epochs "
            f"{a.epochs} --max-len {a.max_len}`", "",
            f"# bf16 autocast against fp32 on {Path(a.dataset_dir).name}", "",
            f"Budget per run: {a.epochs} epoch(s), batch {a.batch}, max_len {a.max_len}, prefix "
            "mode, full ranking, test split. Paired p: two-sided Wilcoxon signed-rank over the "
            "test users of each user's NDCG@10 averaged over the seeds (fit for bf16: p > 0.05). "
            "The commits column of the CSV names the code of each model's runs.", ""]
    return "\n".join(head + lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset-dir", default="data/processed/ml-100k")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", help="run folders (default results/precision/<dataset>)")
    p.add_argument("--out", help="write OUT.md and OUT.csv")
    p.add_argument("--table-only", action="store_true", help="no training: the table of what finished")
    a = p.parse_args()
    a.models = a.models.split(",")
    unknown = sorted(set(a.models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; known: {MODELS}")
    a.seeds = [int(s) for s in a.seeds.split(",")]
    torch.set_num_threads(a.threads)
    runs = Path(a.runs or ROOT / "results" / "precision" / Path(a.dataset_dir).name)
    if not a.table_only:
        train(a, runs)
    frame = table(a, runs)
    text = markdown(a, frame)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out + ".md").write_text(text)
        frame.to_csv(a.out + ".csv", index=False)


if __name__ == "__main__":
    main()
