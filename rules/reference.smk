# The authors' code beside ours (recbench/reference.py): rule reference_code fetches
# TBI805/RecGRELA at the pinned commit (or copies $RECGRELA_REFERENCE) into resources/RecGRELA,
# each file checked against config/reference_code.sha256; the reference-* external models
# (config/external_models.yaml) train it, the profile rule measures it, and rule
# fidelity_table sets both side by side.
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
