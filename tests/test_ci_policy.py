"""CI's promises about the test run itself (tests/conftest.py, .ci/run, README).

- `.ci/run` is README's two commands and nothing else: it reads them from README.md's
  first shell block, so the path a new user takes is the one CI proves.
- With CI=true a test skipped for a missing tool fails the run, naming the tool; only
  a known kernel gap (tests/support/kernel_gaps.py) may skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kernel_gaps import PREFIX, SANDBOX_GAPS

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The first two lines of README.md's first shell block, as .ci/run reads them."""
    result = subprocess.run(
        ["awk", "/^```sh$/ {inside = 1; next} inside && /^```/ {exit} inside && NF", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()[:2]


def test_readme_starts_with_the_two_commands() -> None:
    first, second = readme_commands()
    assert first.split("#")[0].strip() == "./dev.sh build"
    assert second.split("#")[0].strip() == "./dev.sh test"


def test_ci_runs_readme_commands_and_nothing_else() -> None:
    """Every command line of .ci/run is the README reader or its loop: no install of its own."""
    script = (REPO / ".ci/run").read_text()
    awk = "/^```sh$/ {inside = 1; next} inside && /^```/ {exit} inside && NF"
    assert awk in script
    code = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    for forbidden in ("apt-get", "pip", "make", "venv", "pytest"):
        assert not any(re.search(rf"\b{forbidden}\b", line) for line in code), (
            f".ci/run does {forbidden} itself"
        )
    assert 'bash -euo pipefail -c "$command"' in code


def test_apt_list_is_the_only_one() -> None:
    """deps/apt-test.txt is the list; no other file of the repository names apt packages to install."""
    listed = [
        line.split("#")[0].strip()
        for line in (REPO / "deps/apt-test.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert len(listed) == len(set(listed)), "a package listed twice"
    for name in ("libvirt-dev", "qemu-system-x86", "shellcheck", "vagrant", "graphviz"):
        assert name in listed
    for path in (REPO / ".ci/run", REPO / "Makefile"):
        assert "apt-get install" not in path.read_text(), f"{path.name} installs packages of its own"


def _path_without(tool: str, into: Path) -> str:
    """A PATH with every program of this one but `tool` (symlinks in one directory)."""
    into.mkdir()
    for directory in [*os.environ["PATH"].split(os.pathsep), "/usr/sbin", "/sbin"]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name != tool and not (into / entry.name).exists():
                (into / entry.name).symlink_to(entry.path)
    return str(into)


def test_ci_fails_a_skip_for_a_missing_tool_and_names_it(tmp_path: Path) -> None:
    """With graphviz's dot gone from PATH, test_graph's tests skip; with CI=true they fail."""
    if shutil.which("dot") is None:
        pytest.fail("graphviz's dot is needed to show that CI fails without it (deps/apt-test.txt)")
    env = {**os.environ, "PATH": _path_without("dot", tmp_path / "bin"), "CI": "true"}
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_graph.py",
        "-k",
        "quotes",
        "-m",
        "consumer",
    ]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout  # a skipif mark skips in setup: reported as an error
    assert "graphviz's dot is not installed" in result.stdout
    assert "not a known kernel gap" in result.stdout
    # and without CI=true the same run only skips
    env.pop("CI")
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout


def test_ci_lets_a_kernel_gap_skip(tmp_path: Path) -> None:
    test = tmp_path / "test_gap.py"
    test.write_text(
        "from tests.support.kernel_gaps import kernel_gap\n\n"
        "def test_needs_gre() -> None:\n"
        "    kernel_gap('no ip_gre here')\n\n"
        "def test_needs_a_tool() -> None:\n"
        "    import pytest\n"
        "    pytest.skip('frobnicate is not installed')\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "-c",
            str(REPO / "pyproject.toml"),
            "-p",
            "tests.conftest",
            str(test),
        ],
        cwd=REPO,
        env={**os.environ, "CI": "true", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "1 failed, 1 skipped" in result.stdout, result.stdout + result.stderr
    assert PREFIX + "no ip_gre here" in result.stdout
    assert "frobnicate is not installed" in result.stdout


def test_gap_list_names_each_gap_once_with_a_reason() -> None:
    assert SANDBOX_GAPS and all(reason.strip() for reason in SANDBOX_GAPS.values())


def test_ci_full_run_fails_when_the_vm_tier_passed_nothing(tmp_path: Path) -> None:
    """README's test command (`-m 'not fuzz_deep'`) under CI=true: a run whose VM tier passed no
    test fails, even when everything else passed."""
    test = tmp_path / "test_no_vm.py"
    test.write_text("def test_fine() -> None:\n    assert 1 + 1 == 2\n")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO)]
    argv += ["-c", str(REPO / "pyproject.toml"), "-p", "tests.conftest", "-m", "not fuzz_deep", str(test)]
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "the VM tier ran no test" in result.stdout
