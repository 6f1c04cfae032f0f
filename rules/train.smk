# Train + full-ranking evaluation of one (dataset, model, max_len, seed) run (recbench/engine.py).
# The run's checkpoint (results/.../checkpoint/last.pt) is deliberately NOT an output: Snakemake
# never deletes it, so a killed or failed job resumes from its last finished epoch when rerun.


rule train:
    input:
        sequences="data/processed/{dataset}/sequences.parquet",
        stats="data/processed/{dataset}/stats.json",
    output:
        metrics="results/{dataset}/{model}/L{max_len}/seed{seed}/metrics.json",
        history="results/{dataset}/{model}/L{max_len}/seed{seed}/history.csv",
        test_ranks="results/{dataset}/{model}/L{max_len}/seed{seed}/test_ranks.parquet",
    log:
        "logs/train/{dataset}/{model}/L{max_len}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}_{model}_L{max_len}_seed{seed}.tsv"
    params:
        overrides=model_overrides,
        train=config["train"],
    threads: config["train"]["threads"]
    resources:
        gpu=1 if config["gpu"] else 0,
    script:
        "../scripts/train.py"
