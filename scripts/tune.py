"""Rules tune_worker, tune and tuning_table (rules/tune.smk, recbench/tuning/studies.py).

tune_worker: trials of the study results/tuning/{dataset}/{model}/ until its budget is used
(several workers share the study's journal) -> workers/{worker}.json.
tune: the best trial's options -> best.json, and Optuna's optimization-history and
parameter-importance plots. tuning_table: one row per study -> reports/tables/tuning.*.
"""
import json
import logging
import sys
from pathlib import Path

import optuna
import torch

from recbench.io import write_json_atomic
from recbench.rule_script import run_rule
from recbench.tuning.report import plot_study, write_tuning_table
from recbench.tuning.studies import Study
from recbench.tuning.worker import best_of, run_worker


def worker(sm) -> None:
    torch.set_num_threads(sm.threads)
    done = run_worker(Study.from_dict(sm.params.study), Path(sm.input.stats).parent,
                      int(sm.wildcards.worker), sm.output[0])
    print(json.dumps(done), file=sys.stderr)


def best(sm) -> None:
    study = Study.from_dict(sm.params.study)
    write_json_atomic(best_of(study), sm.output.best)
    plot_study(study, sm.output.history, sm.output.importances)


def table(sm) -> None:
    write_tuning_table([json.loads(Path(p).read_text()) for p in sm.input],
                       sm.output.md, sm.output.csv, sm.output.tex, sm.output.html)


def main(sm) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    optuna.logging.disable_default_handler()     # Optuna's messages into the job's log
    optuna.logging.enable_propagation()
    {"tune_worker": worker, "tune": best, "tuning_table": table}[sm.rule](sm)


run_rule(snakemake, lambda: main(snakemake))
