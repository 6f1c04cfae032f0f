"""recgrela-bench's library: one subpackage per stage of the workflow, so that a rule file
points at one folder, and a few shared modules at the top. Imports point one way, down this
list (tests/test_architecture.py fails on a cycle between modules or between stages).

Shared, at the top:
    io.py            atomic writes (temporary name, then rename) and checksums
    results.py       the results contract: what a run folder holds (config/results_schema.yaml)
    runtime.py       device resolution, the out-of-memory check, peak memory, git commit
    names.py         the paper's spelling of models, datasets and metrics
    rule_script.py   the one entry every scripts/*.py goes through (log, threads, errors)
    workflow.py      what the Snakefile asks at parse time: the config checked and expanded
                     into runs, studies and cells; which tables and figures (rules/common.smk)

Stages:
    data/         rules/data.smk: parsers, RecBole's protocol (filter, order, split), the
                  dataset registry, download and the synthetic default, preprocessing; the
                  in-memory split and batches (batching.py) and sampled negatives (sampling.py);
                  the data folders' checksums and what a damaged file asks (integrity.py)
    evaluation/   full-ranking metrics (HR/NDCG/MRR@k) and the paired significance tests
    plan/         experiment groups expanded into runs, model options checked (groups.py),
                  the name of a run's options (variants.py)
    training/     rules/train.smk: settings (the train schema), the engine (loop, evaluation,
                  early stopping), checkpoints, the run folder's lock (run_lock.py),
                  data-parallel ranks and their launcher
    tuning/       rules/tune.smk: studies (dry-run checks), the Optuna worker, table and plots
    external/     rules/reference.smk, rules/external_recbole.smk: the authors' code (catalogue,
                  checkout, import) and RecBole's own models in the results contract
    cost/         rules/profile.smk: the cost grid ("profile" in rule and config names): the
                  cells of a config (grid.py), one cell measured (measure.py), cells as a frame
    reporting/    rules/report.smk, rules/figures.smk: the paper's numbers, the table kernel,
                  the paper's tables, rendering (Markdown, LaTeX, the report's HTML pages),
                  cost tables, figures and their style, fidelity, the report's front page;
                  reads results files and reports/paper_numbers.yaml, never a model or the
                  engine (what it must know of a model comes as a rule's params)

models/ (top level, one file per model and a registry) is the suite's other package.
"""
