# Data: raw file -> processed sequences + statistics (recbench/data/preprocess.py).


# Each data rule records its files in a checksums.json beside them, deliberately NOT an output:
# Snakemake never deletes it, so it outlives a failed rebuild. A file that no longer matches its
# record is rebuilt by its own rule (the rule's `entry` then carries a new rebuild count), and
# finished runs are not retrained unless the data's content changes (recbench/data/integrity.py,
# docs/integrity.md).


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
        entry=fetch_entry,
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
        entry=preprocess_entry,
    script:
        "../scripts/preprocess.py"


rule sample_negatives:
    input:
        negatives_input,
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
