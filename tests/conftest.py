"""Shared test options. Consumer-specific fixtures live in the test modules that use them."""

from __future__ import annotations

import pytest

#: tests/golden holds generated output, including the generated check suites
#: (tests/golden/*/tests/test_*.py): data to compare, not tests of kvmnet.
collect_ignore = ["golden"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden and tests/bad/*.expected from the current output (review the diff!)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
