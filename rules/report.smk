# Reports: the accuracy table over every run (recbench/report.py).


rule results_table:
    input:
        metrics=[f"{run}/metrics.json" for run in run_dirs()],
        paper="reports/paper_numbers.yaml",
    output:
        md="reports/results.md",
        csv="reports/results.csv",
    log:
        "logs/results_table.log",
    script:
        "../scripts/results_table.py"
