"""Rule train: data/processed/{dataset}/ -> results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/.

Trains one run under the RecBole protocol and evaluates it by full ranking
(recbench/training/engine.py): metrics.json, history.csv, per-user ranks. A rerun after a kill resumes
from the checkpoint; a finished run is never retrained. With train.processes N > 1 the run is
data-parallel: N ranks started with torchrun on this node (recbench/training/distributed.py). A run of
variant `tuned` takes its options from its study's best.json (input `tuned`, rule tune).
The run folder's lock (recbench/training/run_lock.py) refuses a second process on the same run,
and the processed data are checked against their checksums.json before they are read.
"""
import json
import logging
import sys
from pathlib import Path

import torch

from recbench.data.integrity import verify_processed
from recbench.rule_script import run_rule
from recbench.training.engine import train_and_evaluate
from recbench.training.launch import launch
from recbench.training.run_lock import run_lock
from recbench.training.settings import train_settings
from recbench.tuning.worker import tuned_run


def main(dataset_dir: str, run_dir: str, wildcards, overrides: dict, train: dict,
         threads: int, tuned: str | None = None) -> None:
    hyperparameters = None
    if tuned:
        overrides, train, hyperparameters = tuned_run(tuned, overrides, train)
    run = dict(dataset_dir=dataset_dir, run_dir=run_dir, model_name=wildcards.model,
               overrides=overrides, train_cfg=train, max_len=int(wildcards.max_len),
               seed=int(wildcards.seed), variant=wildcards.variant,
               hyperparameters=hyperparameters)
    processes = train_settings(train).processes
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    with run_lock(run_dir):
        verify_processed(dataset_dir)      # every byte, before the data are read
        result = _train(run, processes, threads, run_dir)
    print(json.dumps({"status": result["status"], **result["test"]}), file=sys.stderr)


def _train(run: dict, processes: int, threads: int, run_dir: str) -> dict:
    if processes > 1:
        launch(processes, threads=threads, stream=sys.stderr, **run)
        result = json.loads((Path(run_dir) / "metrics.json").read_text())
    else:
        torch.set_num_threads(threads)
        result = train_and_evaluate(**run, progress=sys.stderr.isatty())
    return result


run_rule(snakemake, lambda: main(str(Path(snakemake.input.stats).parent),
                                 str(Path(snakemake.output.metrics).parent), snakemake.wildcards,
                                 snakemake.params.overrides, snakemake.params.train,
                                 snakemake.threads, snakemake.input.get("tuned")))
