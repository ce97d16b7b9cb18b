"""The code is kept in one style, and the workflow passes Snakemake's own linter: ruff over the
Python (pyproject.toml's [tool.ruff]), snakefmt over the rules, ``snakemake --lint``."""

import subprocess
import sys
from pathlib import Path

from helpers import REPO

BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=REPO)


def test_python_is_ruff_clean():
    r = _run("ruff", "check", "src", "tests", "benchmarks", "workflow/scripts", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_are_snakefmt_formatted():
    r = _run("snakefmt", "--check", "workflow")
    assert r.returncode == 0, r.stdout + r.stderr


def test_snakemake_lint_is_clean():
    r = _run("snakemake", "--lint", "--cores", "1")
    assert r.returncode == 0 and "Lints for" not in r.stdout + r.stderr, r.stdout[-4000:] + r.stderr[-4000:]
