# Reports: the paper's tables from the results files and reports/paper_numbers.yaml
# (recbench/reporting/tables.py): each as Markdown, CSV and LaTeX under reports/tables/.


rule dataset_table:
    input:
        stats=expand(rules.preprocess.output.stats, dataset=USED_DATASETS),
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/tables/table1_datasets.md",
        csv=report(
            "reports/tables/table1_datasets.csv",
            caption="../reports/captions/table.rst",
            category="Tables",
            subcategory="Table 1: datasets",
        ),
        tex="reports/tables/table1_datasets.tex",
    log:
        "logs/dataset_table.log",
    benchmark:
        "logs/benchmarks/dataset_table.tsv"
    conda:
        ENVIRONMENT
    script:
        "../scripts/dataset_table.py"


rule runs_table:
    input:
        metrics=run_files(RUNS.values(), "metrics"),
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/tables/runs.md",
        csv=report(
            "reports/tables/runs.csv",
            caption="../reports/captions/table.rst",
            category="Tables",
            subcategory="every run",
        ),
        tex="reports/tables/runs.tex",
    log:
        "logs/runs_table.log",
    benchmark:
        "logs/benchmarks/runs_table.tsv"
    conda:
        ENVIRONMENT
    script:
        "../scripts/runs_table.py"


rule group_table:
    input:
        metrics=group_metrics,
        test_ranks=group_test_ranks,
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/tables/{group}.md",
        csv=report(
            "reports/tables/{group}.csv",
            caption="../reports/captions/table.rst",
            category="Tables",
            subcategory="{group}",
        ),
        tex="reports/tables/{group}.tex",
    log:
        "logs/group_table/{group}.log",
    benchmark:
        "logs/benchmarks/group_table/{group}.tsv"
    conda:
        ENVIRONMENT
    params:
        layout=group_layout,
    script:
        "../scripts/group_table.py"
