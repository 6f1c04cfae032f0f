# The authors' code beside ours (recbench/external/authors_code.py): rule reference_code fetches
# TBI805/RecGRELA at the pinned commit (or copies $RECGRELA_REFERENCE) into resources/RecGRELA,
# each file checked against config/reference_code.sha256; the reference-* external models
# (config/external_models.yaml) train it, the profile rule measures it, and rule
# fidelity_table sets both side by side.
from recbench.external.catalogue import (
    MODELS as REFERENCE_MODELS,
    PREFIX as REFERENCE_PREFIX,
)

REFERENCE_DIR = "resources/RecGRELA"


rule reference_code:
    input:
        "config/reference_code.sha256",
    output:
        f"{REFERENCE_DIR}/.verified",
    log:
        "logs/reference_code.log",
    conda:
        ENVIRONMENT
    script:
        "../scripts/reference_code.py"


# Ours beside the authors' code: the profile studies that measure a reference-<model> and the
# runs of the groups that train one (our model and its reference), in one set of tables.
FIDELITY_STUDIES = WORKFLOW.fidelity_studies
FIDELITY_RUNS = WORKFLOW.fidelity_runs


rule fidelity_table:
    input:
        cells=[cell.path for study in FIDELITY_STUDIES for cell in PROFILE[study]],
        metrics=run_files(FIDELITY_RUNS, "metrics"),
        test_ranks=run_files(FIDELITY_RUNS, "test_ranks"),
    output:
        md="reports/tables/fidelity.md",
        csv=report(
            "reports/tables/fidelity.csv",
            caption="../reports/captions/table.rst",
            category=FIDELITY,
            subcategory="table",
        ),
        tex="reports/tables/fidelity.tex",
        html=report(
            "reports/tables/fidelity.html",
            caption="../reports/captions/table_html.rst",
            category=FIDELITY,
            subcategory="table",
        ),
    log:
        "logs/fidelity_table.log",
    benchmark:
        "logs/benchmarks/fidelity_table.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        studies={
            study: [cell.path for cell in PROFILE[study]] for study in FIDELITY_STUDIES
        },
    script:
        "../scripts/fidelity_table.py"


rule fidelity_figure:
    input:
        table=rules.fidelity_table.output.csv,
    output:
        png=report(
            "reports/figures/fidelity.png",
            caption="../reports/captions/fidelity.rst",
            category=FIDELITY,
        ),
        svg="reports/figures/fidelity.svg",
    log:
        "logs/figures/fidelity.log",
    benchmark:
        "logs/benchmarks/figures/fidelity.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
    script:
        "../scripts/fidelity_figure.py"
