# recgrela-bench: RecGRELA (arXiv 2506.13315) and its baselines under one RecBole protocol.
#   snakemake --cores 8                                   # the paper run (config/config.yaml)
#   snakemake --cores 8 --configfile config/quickstart.yaml   # embedded default, CPU, offline
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/reference.smk"
include: "rules/external_recbole.smk"
include: "rules/profile.smk"
include: "rules/report.smk"
include: "rules/figures.smk"
include: "rules/tune.smk"


rule all:
    input:
        all_outputs(),
        tuning_outputs(),


# the HTML report's front page (`snakemake --report`): what ran, on what data and hardware,
# with a link to each of the paper's tables and figures (rule front_page, rules/report.smk)
report: front_page_text()


# every external model's `rule:` names a rule above that writes the run folder's files
WORKFLOW.check_external_rules(
    {r.name: [str(o) for o in r.output] for r in workflow.rules}
)
