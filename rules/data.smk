# Data: raw file -> processed sequences + statistics -> the dataset table (recbench/data.py).


rule fetch_raw:
    output:
        "data/raw/{dataset}/fetched.json",
    log:
        "logs/fetch_raw/{dataset}.log",
    params:
        entry=dataset_entry,
    script:
        "../scripts/fetch_raw.py"


rule preprocess:
    input:
        "data/raw/{dataset}/fetched.json",
    output:
        sequences="data/processed/{dataset}/sequences.parquet",
        stats="data/processed/{dataset}/stats.json",
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "benchmarks/out/preprocess/{dataset}.tsv"
    params:
        entry=dataset_entry,
    script:
        "../scripts/preprocess.py"


rule dataset_stats_table:
    input:
        stats=expand("data/processed/{dataset}/stats.json", dataset=config["datasets"]),
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/dataset_stats.md",
        csv="reports/dataset_stats.csv",
    log:
        "logs/dataset_stats_table.log",
    script:
        "../scripts/dataset_stats_table.py"
