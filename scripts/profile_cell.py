"""Rule profile: one cell of the cost grid -> results/profile/.../B{batch}.json.

The cell runs in a fresh process under the configured time and (CPU) memory limits; the JSON
holds its measurements, or status oom / timeout / error with the reason (recbench/cost/measure.py).
"""
import json
import sys

from recbench.cost.measure import profile_in_subprocess
from recbench.io import write_json_atomic
from recbench.rule_script import run_rule


def main(cell: dict, out: str, timeout_s: float, memory_limit_gb, threads: int) -> None:
    result = profile_in_subprocess(cell, timeout_s=timeout_s, memory_limit_gb=memory_limit_gb,
                                   threads=threads)
    print(json.dumps(result), file=sys.stderr)
    write_json_atomic(result, out)


run_rule(snakemake, lambda: main(snakemake.params.cell, snakemake.output[0],
                                 snakemake.params.timeout_s, snakemake.params.memory_limit_gb,
                                 snakemake.threads))
