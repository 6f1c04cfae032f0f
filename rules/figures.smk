# Figures (recbench/reporting/figures.py) from the tables' CSVs and the profile cells, each as PNG and
# SVG under reports/figures/, each in the HTML report (`snakemake --report`) under the paper's
# table or figure it reproduces (group_category, study_category: recbench/workflow.py), with its
# caption from reports/captions/.


rule profile_figure:
    input:
        cells=study_cells,
    output:
        png=report(
            "reports/figures/profile_{study}.png",
            caption="../reports/captions/profile.rst",
            category=study_category,
            subcategory="cost: {study}",
        ),
        svg="reports/figures/profile_{study}.svg",
    log:
        "logs/figures/profile_{study}.log",
    benchmark:
        "logs/benchmarks/figures/profile_{study}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        axis=lambda wildcards: study_axis(wildcards.study),
        description=study_description,
    script:
        "../scripts/profile_figure.py"


rule group_figure:
    input:
        table=rules.group_table.output.csv,
    output:
        png=report(
            "reports/figures/group_{group}.png",
            caption="../reports/captions/group.rst",
            category=group_category,
            subcategory="{group}",
        ),
        svg="reports/figures/group_{group}.svg",
    log:
        "logs/figures/group_{group}.log",
    benchmark:
        "logs/benchmarks/figures/group_{group}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        kind=lambda wildcards: group_figure_kind(wildcards.group),
        description=group_description,
        defaults=lambda wildcards: WORKFLOW.model_defaults(wildcards.group),
    script:
        "../scripts/group_figure.py"


rule cost_accuracy_figure:
    input:
        table=rules.group_table.output.csv,
        cells=list(PROFILE_CELLS),
        paper="reports/paper_numbers.yaml",
    output:
        png=report(
            "reports/figures/fig3_{group}.png",
            caption="../reports/captions/fig3.rst",
            category=FIG3,
            subcategory="{group}",
        ),
        svg="reports/figures/fig3_{group}.svg",
    log:
        "logs/figures/fig3_{group}.log",
    benchmark:
        "logs/benchmarks/figures/fig3_{group}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        max_len=lambda wildcards: main_max_len(wildcards.group),
    script:
        "../scripts/cost_accuracy_figure.py"


rule training_curves:
    input:
        # each run's history.csv is read beside its metrics.json where the run's rule wrote
        # one (optional in the results contract); a run without one is named under the figure
        metrics=group_metrics,
    output:
        png=report(
            "reports/figures/curves_{group}.png",
            caption="../reports/captions/curves.rst",
            category=CURVES,
            subcategory="{group}",
        ),
        svg="reports/figures/curves_{group}.svg",
    log:
        "logs/figures/curves_{group}.log",
    benchmark:
        "logs/benchmarks/figures/curves_{group}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
    script:
        "../scripts/training_curves.py"
