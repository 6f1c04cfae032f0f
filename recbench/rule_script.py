"""The one entry every rule script (scripts/*.py) goes through.

A script is `run_rule(snakemake, work)`: stderr goes to the job's `log:` file; an expected error
(bad input data, a bad setting, a diverged run, a run another process trains) becomes one line
naming the problem, in the log and on the console, and exit status 1, with no traceback;
anything else is a bug and keeps its traceback.

Every attempt of a job is kept in its log, each after a separator naming it (attempt number,
time, pid, host), so a killed or failed attempt's log is there when the rerun resumes. Snakemake
deletes a job's log file before each run of the job, so the attempts are written to a file beside
it that Snakemake does not know, `.{log name}.attempts`, and the log is a hard link to that file:
the same content under the name the rule declares, and Snakemake's deletion removes only the
name. Where a hard link cannot be made, the log holds the current attempt only.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

# DataError (bad input data) and ConfigError are ValueErrors; FetchError and RunLocked are
# RuntimeErrors
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, RuntimeError)

SEPARATOR = "===== attempt"


def attempts_file(log: str | Path) -> Path:
    """Where a job log's attempts are kept (the log is a hard link to it)."""
    log = Path(log)
    return log.with_name(f".{log.name}.attempts")


def open_job_log(log: str | Path, name: str, wildcards=None):
    """The job log opened for appending, the earlier attempts kept, this one's separator
    written."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    keep = attempts_file(log)
    try:
        if log.exists() and not (keep.exists() and log.samefile(keep)):
            # a log written otherwise (an earlier version, a hand run): its text is an attempt
            with open(keep, "a") as dest:
                dest.write(log.read_text(errors="replace"))
            log.unlink()
        keep.touch()
        if not log.exists():
            os.link(keep, log)
        stream = open(log, "a")
    except OSError:                  # no hard links here: this attempt only, as Snakemake wants
        stream = open(log, "a")
        keep = log
    attempt = 1 + sum(line.startswith(SEPARATOR)
                      for line in keep.read_text(errors="replace").splitlines())
    pairs = (() if wildcards is None else wildcards.items() if hasattr(wildcards, "items")
             else vars(wildcards).items())
    where = " ".join(f"{k}={v}" for k, v in pairs)
    stream.write(f"{SEPARATOR} {attempt} of {name}{' ' + where if where else ''}: "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}, pid {os.getpid()} on "
                 f"{socket.gethostname()} =====\n")
    stream.flush()
    return stream


def run_rule(snakemake, work: Callable[[], None], name: str | None = None) -> None:
    name = name or snakemake.rule
    log = (open_job_log(snakemake.log[0], name, getattr(snakemake, "wildcards", None))
           if snakemake.log else sys.stderr)
    sys.stderr = log
    try:
        work()
    except EXPECTED_ERRORS as err:
        for stream in {log, sys.__stderr__}:
            print(f"{name}: {err}", file=stream, flush=True)
        sys.exit(1)
    finally:
        log.flush()
