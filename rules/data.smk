# Data: raw file -> processed sequences + statistics (recbench/data/preprocess.py).


rule fetch_raw:
    output:
        "data/raw/{dataset}/fetched.json",
    log:
        "logs/fetch_raw/{dataset}.log",
    benchmark:
        "logs/benchmarks/fetch_raw/{dataset}.tsv"
    conda:
        ENVIRONMENT
    params:
        entry=dataset_entry,
        mirror=config["data_mirror"],
    script:
        "../scripts/fetch_raw.py"


rule preprocess:
    input:
        rules.fetch_raw.output,
    output:
        sequences="data/processed/{dataset}/sequences.parquet",
        stats="data/processed/{dataset}/stats.json",
    log:
        "logs/preprocess/{dataset}.log",
    benchmark:
        "logs/benchmarks/preprocess/{dataset}.tsv"
    conda:
        ENVIRONMENT
    params:
        entry=dataset_entry,
    script:
        "../scripts/preprocess.py"


rule sample_negatives:
    input:
        rules.preprocess.output.sequences,
    output:
        "data/processed/{dataset}/negatives_{mode}.parquet",
    log:
        "logs/sample_negatives/{dataset}_{mode}.log",
    benchmark:
        "logs/benchmarks/sample_negatives/{dataset}_{mode}.tsv"
    wildcard_constraints:
        mode="uni100|pop100",
    conda:
        ENVIRONMENT
    script:
        "../scripts/sample_negatives.py"
