"""Rule reference_code: the authors' code (TBI805/RecGRELA at the pinned commit) ->
resources/RecGRELA, every file checked against config/reference_code.sha256
(recbench/external/authors_code.py). From $RECGRELA_REFERENCE when set (a checkout you have), else GitHub."""
import os
import sys
from pathlib import Path

from recbench.external.authors_code import COMMIT, install
from recbench.rule_script import run_rule


def main(marker: str) -> None:
    source = os.environ.get("RECGRELA_REFERENCE")
    dest = install(Path(marker).parent, source=source)
    Path(marker).write_text(f"{COMMIT}\n")
    print(f"reference code at {COMMIT[:7]} in {dest} from {source or 'GitHub'}", file=sys.stderr)


run_rule(snakemake, lambda: main(snakemake.output[0]))
