# Reports: the paper's tables from the results files and reports/paper_numbers.yaml
# (recbench/reporting/tables.py): each as Markdown, CSV, LaTeX and HTML under reports/tables/.
# In the HTML report (`snakemake --report`) each table is its HTML page (as published) beside
# its CSV (the download), under the paper's table or figure it reproduces; the front page
# (Snakefile `report:`) says what ran, on what data and hardware.


rule front_page:
    input:
        metrics=run_files(RUNS.values(), "metrics"),
        stats=expand(rules.preprocess.output.stats, dataset=USED_DATASETS),
        cells=list(PROFILE_CELLS),
    output:
        "reports/front_page.rst",
    log:
        "logs/front_page.log",
    benchmark:
        "logs/benchmarks/front_page.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        layout=front_page_layout(),
    script:
        "../scripts/front_page.py"


rule dataset_table:
    input:
        stats=expand(rules.preprocess.output.stats, dataset=USED_DATASETS),
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/tables/table1_datasets.md",
        csv=report(
            "reports/tables/table1_datasets.csv",
            caption="../reports/captions/table.rst",
            category=DATASETS_CATEGORY,
            subcategory="datasets",
        ),
        tex="reports/tables/table1_datasets.tex",
        html=report(
            "reports/tables/table1_datasets.html",
            caption="../reports/captions/table_html.rst",
            category=DATASETS_CATEGORY,
            subcategory="datasets",
        ),
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
            category=EVERY_RUN,
            subcategory="runs",
        ),
        tex="reports/tables/runs.tex",
        html=report(
            "reports/tables/runs.html",
            caption="../reports/captions/table_html.rst",
            category=EVERY_RUN,
            subcategory="runs",
        ),
    log:
        "logs/runs_table.log",
    benchmark:
        "logs/benchmarks/runs_table.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
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
            category=group_category,
            subcategory="{group}",
        ),
        tex="reports/tables/{group}.tex",
        html=report(
            "reports/tables/{group}.html",
            caption="../reports/captions/table_html.rst",
            category=group_category,
            subcategory="{group}",
        ),
    log:
        "logs/group_table/{group}.log",
    benchmark:
        "logs/benchmarks/group_table/{group}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        layout=group_layout,
        category=group_category,
    script:
        "../scripts/group_table.py"
