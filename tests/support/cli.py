"""Run the real `kvmnet` entry point in a fresh interpreter, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def kvmnet(
    *args: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def kvmnet_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command line through `generator.cli.run` in this interpreter: what a user sees
    on stdout and stderr and the exit code, without a new Python's start-up (~0.3 s) per call.
    The fresh-interpreter path itself is tested in tests/test_cli.py."""
    import contextlib
    import io

    from generator.cli import run

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)  # relative profile paths, as `kvmnet` above runs them
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(args))
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(["kvmnet", *args], code, out.getvalue(), err.getvalue())
