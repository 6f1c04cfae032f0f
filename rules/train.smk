# Train + full-ranking evaluation of one run (recbench/training/engine.py). A run is (dataset, model,
# variant, max_len, seed) of a configured group (rules/common.smk, recbench/plan/groups.py).
# The run's checkpoint (results/.../checkpoint/last.pt) is deliberately NOT an output: Snakemake
# never deletes it, so a killed or failed job resumes from its last finished epoch when rerun.


rule train:
    input:
        unpack(train_inputs),
    output:
        metrics="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/metrics.json",
        history="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/history.csv",
        test_ranks="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/test_ranks.parquet",
        valid_ranks="results/{dataset}/{model}/{variant}/L{max_len}/seed{seed}/valid_ranks.parquet",
    log:
        "logs/train/{dataset}/{model}/{variant}/L{max_len}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{model}/{variant}/L{max_len}/seed{seed}.tsv"
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        gpu=train_gpus,  # train.processes GPUs (torchrun ranks) when config gpu is true
    params:
        overrides=run_overrides,
        train=run_train_settings,
    script:
        "../scripts/train.py"
