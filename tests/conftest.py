"""Shared test options: the tiers, the CI skip policy and --update-golden. Consumer-specific
fixtures live in the test modules that use them."""

from __future__ import annotations

import os
from collections.abc import Generator

import pluggy
import pytest

from tests.support.kernel_gaps import is_kernel_gap

#: tests/golden holds generated output, including the generated check suites
#: (tests/golden/*/tests/test_*.py): data to compare, not tests of kvmnet.
collect_ignore = ["golden"]

#: The slow tiers, each a marker registered in pyproject.toml. A test carrying none of them
#: is in the fast tier (marked `fast` here), the only one plain `pytest` runs.
TIERS = (
    "consumer",
    "lint",
    "networkd",
    "netplan",
    "lab",
    "fuzz",
    "fuzz_deep",
    "limits",
    "crash",
    "vm",
    "pxe",
)
#: README's test command selects every tier but the deep fuzzing with this expression.
EVERY_TIER = "not fuzz_deep"

IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden and tests/bad/*.expected from the current output (review the diff!)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the `fast` marker must be there by then
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.fast)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """In CI a skip is a failure unless this kernel lacks what the test needs.

    A skip for a missing tool or package means CI's install step (deps/apt-test.txt, the
    test extra) lacks it, and a skip for not being root cannot happen there: both would
    let a tier pass without running. Kernel gaps are listed in tests/support/kernel_gaps.py.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if is_kernel_gap(reason):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"CI=true: skipped for a reason that is not a known kernel gap (tests/support/kernel_gaps.py), "
        f"so this test did not run: {reason}"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI's full run the VM tier must have run and passed, not merely been selected."""
    if not IN_CI or session.config.option.markexpr != EVERY_TIER:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    passed = [r for r in reporter.stats.get("passed", []) if r.when == "call" and "vm" in r.keywords]
    if not passed:
        reporter.write_line("CI=true: the VM tier ran no test (pytest -m vm passed nothing)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
