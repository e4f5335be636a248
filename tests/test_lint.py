"""Linters as ordinary tests: ruff, mypy --strict and the import-direction contracts.

Each test also checks that its tool actually looked at files, so a misconfiguration
cannot turn it into a check that always passes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_check() -> None:
    result = _run(str(BIN / "ruff"), "check", "--show-files", "generator", "tests", "bench")
    assert "generator/cli.py" in result.stdout  # it saw the package
    result = _run(str(BIN / "ruff"), "check", "generator", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run(str(BIN / "ruff"), "format", "--check", "generator", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "files already formatted" in result.stdout


def test_mypy_strict() -> None:
    result = _run(str(BIN / "mypy"), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"in (\d+) source files", result.stdout)
    assert found and int(found.group(1)) >= 20, result.stdout


def test_import_contracts() -> None:
    result = _run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
