"""Rule train: data/processed/{dataset}/ -> results/{dataset}/{model}/L{max_len}/seed{seed}/.

Trains one model under the RecBole protocol, evaluates it by full ranking and writes
metrics.json, history.csv and per-user ranks (recbench/engine.py). Rerunning a killed job
resumes from its checkpoint; a finished run is never retrained. Configuration errors and a
diverged run print one message naming the run and exit 1.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from recbench.engine import train_and_evaluate


def main(dataset_dir, run_dir, model, overrides: dict, train: dict, max_len: int, seed: int) -> int:
    train = dict(train)
    torch.set_num_threads(int(train.pop("threads", torch.get_num_threads())))
    train.update(max_len=int(max_len), seed=int(seed), progress=sys.stderr.isatty())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        result = train_and_evaluate(dataset_dir, run_dir, model, overrides, train)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as err:
        print(f"train: {err}", file=sys.stderr)
        if sys.stderr is not sys.__stderr__:  # under Snakemake: on the console too
            print(f"train: {err}", file=sys.__stderr__)
        return 1
    print(json.dumps(result["test"]), file=sys.stderr)
    return 0


if __name__ == "__main__" and "snakemake" not in globals():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("model")
    p.add_argument("--max-len", type=int, default=200)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--overrides", default="{}", help="JSON dict of model Config overrides")
    p.add_argument("--train", default="{}", help="JSON dict of train settings (epochs, mode, ...)")
    a = p.parse_args()
    run = f"results/{a.dataset}/{a.model}/L{a.max_len}/seed{a.seed}"
    sys.exit(main(f"data/processed/{a.dataset}", run, a.model, json.loads(a.overrides),
                  json.loads(a.train), a.max_len, a.seed))
elif "snakemake" in globals():
    sys.stderr = open(snakemake.log[0], "a")  # append: a resumed job keeps the earlier epochs
    w = snakemake.wildcards
    sys.exit(main(str(Path(snakemake.input.stats).parent),
                  str(Path(snakemake.output.metrics).parent), w.model, snakemake.params.overrides,
                  snakemake.params.train, w.max_len, w.seed))
