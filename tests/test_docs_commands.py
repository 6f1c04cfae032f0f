"""Every `snakemake` command shown in README.md and docs/*.md works as written: each one is run as
a dry run (`-n`) from the repository root, and must exit 0.

A command is a line inside a fenced code block (```) or an indented code block (4 spaces) whose
first word, after optional `VAR=value` environment settings and a `.venv/bin/` prefix, is
`snakemake`. A line ending in a backslash continues on the next. A trailing `# comment` is
dropped, as the shell would. `--report FILE` needs a finished workflow, so for such a command the
dry run checks the workflow the report would describe (the same config and targets).

The dry runs need neither data nor the data mirror: on a clone with no ../shared beside it,
`RECBENCH_DATA_MIRROR=../shared/data` names a missing folder, which only a real run would read.
"""
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ENV_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def code_lines(text: str):
    """(line number, line) of every line inside a fenced or an indented code block."""
    fenced = False
    previous_blank = True
    in_indented = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            previous_blank = False
            continue
        if fenced:
            yield number, line
            continue
        indented = line.startswith("    ") and stripped != ""
        # an indented block starts after a blank line and runs until a non-indented line
        in_indented = indented and (in_indented or previous_blank)
        if in_indented:
            yield number, line
        previous_blank = stripped == ""


def commands(page: Path):
    """(line number, command text) of every snakemake command shown on a page."""
    lines = list(code_lines(page.read_text()))
    i = 0
    while i < len(lines):
        number, line = lines[i]
        text = line.strip()
        while text.endswith("\\") and i + 1 < len(lines) and lines[i + 1][0] == lines[i][0] + 1:
            i += 1
            text = text[:-1] + " " + lines[i][1].strip()
        i += 1
        if "snakemake" not in text:
            continue
        try:
            words = shlex.split(text, comments=True)
        except ValueError:       # not shell (an unbalanced quote in Python or YAML)
            continue
        while words and ENV_SETTING.match(words[0]):
            words = words[1:]
        if words and words[0] in ("snakemake", ".venv/bin/snakemake"):
            yield number, text


CASES = [
    pytest.param(page, text, id=f"{page.relative_to(ROOT)}:{number}")
    for page in PAGES
    for number, text in commands(page)
]


def dry_run_argv(text: str) -> tuple[dict, list[str]]:
    """The environment settings and the argv of the command's dry run."""
    words = shlex.split(text, comments=True)
    env = {}
    while ENV_SETTING.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    args = words[1:]
    if "--report" in args:  # the report needs finished outputs: check its workflow instead
        at = args.index("--report")
        del args[at : at + 2]
    if "-n" not in args and "--dry-run" not in args:
        args.append("-n")
    return env, [str(SNAKEMAKE), *args, "--quiet", "rules", "--nolock"]


def dry_run(text: str) -> tuple[list[str], subprocess.CompletedProcess]:
    env, argv = dry_run_argv(text)
    run_env = {**os.environ, **env}
    # the library of this checkout, not of whichever copy the venv was installed from
    run_env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p
    )
    done = subprocess.run(argv, cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=300)
    return argv, done


@pytest.fixture(scope="module")
def dry_runs() -> dict:
    """Every command's dry run, run side by side (each is a few seconds of parsing)."""
    texts = sorted({case.values[1] for case in CASES})
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return dict(zip(texts, pool.map(dry_run, texts)))


def test_pages_show_commands():
    # the collector finds the commands; an empty list would make the test below pass vacuously
    assert len(CASES) >= 5, [c.id for c in CASES]


@pytest.mark.parametrize("page,text", CASES)
def test_command_runs_as_a_dry_run(page: Path, text: str, dry_runs: dict):
    argv, done = dry_runs[text]
    assert done.returncode == 0, (
        f"{page.relative_to(ROOT)}: `{text}` fails as a dry run\n"
        f"ran: {' '.join(argv)}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )
