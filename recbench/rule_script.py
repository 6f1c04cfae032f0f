"""The one entry every rule script (scripts/*.py) goes through.

A script is `run_rule(snakemake, work)`: stderr goes to the job's `log:` file (appended, so a
resumed training job keeps the log of its earlier epochs); an expected error (bad input data,
a bad setting, a diverged run) becomes one line naming the problem, in the log and on the
console, and exit status 1, with no traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

# DataError (bad input data) and ConfigError are ValueErrors; FetchError a RuntimeError
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, RuntimeError)


def run_rule(snakemake, work: Callable[[], None], name: str | None = None) -> None:
    name = name or snakemake.rule
    log = open(snakemake.log[0], "a") if snakemake.log else sys.stderr
    sys.stderr = log
    try:
        work()
    except EXPECTED_ERRORS as err:
        for stream in {log, sys.__stderr__}:
            print(f"{name}: {err}", file=stream, flush=True)
        sys.exit(1)
    finally:
        log.flush()
