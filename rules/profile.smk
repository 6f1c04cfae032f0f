# The cost grid: one job per profile cell (recbench/cost/grid.py), each measured in a fresh
# process (recbench/cost/measure.py). A job asks for more threads than any machine has:
# Snakemake lowers that to --cores, so no other job shares the machine while a cell is timed.
# Out of memory or over time is a cell, not a failed job. A cell's model is ours or the
# authors' code of one (reference-<model>, recbench/external/authors_code.py).
PROFILED_MODELS = sorted(REGISTRY) + [REFERENCE_PREFIX + m for m in REFERENCE_MODELS]


rule profile:
    input:
        reference=reference_code_input,
    output:
        "results/profile/{device}/{policy}/{model}/{variant}/L{max_len}/B{batch}.json",
    log:
        "logs/profile/{device}/{policy}/{model}/{variant}/L{max_len}/B{batch}.log",
    benchmark:
        "logs/benchmarks/profile/{device}/{policy}/{model}/{variant}/L{max_len}/B{batch}.tsv"
    wildcard_constraints:
        model="|".join(re.escape(name) for name in PROFILED_MODELS),
    conda:
        ENVIRONMENT
    threads: 1024
    resources:
        gpu=lambda wildcards: 1 if wildcards.device.startswith("cuda") else 0,
    params:
        cell=profile_of,
        timeout_s=config["profile"]["timeout_s"],
        memory_limit_gb=config["profile"]["memory_limit_gb"],
    script:
        "../scripts/profile_cell.py"


rule profile_table:
    input:
        cells=study_cells,
    output:
        md="reports/tables/profile_{study}.md",
        csv=report(
            "reports/tables/profile_{study}.csv",
            caption="../reports/captions/table.rst",
            category=study_category,
            subcategory="cost: {study}",
        ),
        tex="reports/tables/profile_{study}.tex",
        html=report(
            "reports/tables/profile_{study}.html",
            caption="../reports/captions/table_html.rst",
            category=study_category,
            subcategory="cost: {study}",
        ),
    log:
        "logs/profile_table/{study}.log",
    benchmark:
        "logs/benchmarks/profile_table/{study}.tsv"
    conda:
        ENVIRONMENT
    params:
        models=MODEL_INFO,
        description=study_description,
        category=study_category,
    script:
        "../scripts/profile_table.py"
