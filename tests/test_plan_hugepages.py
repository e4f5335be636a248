"""generator/plan/hugepages.py: huge pages reserved at boot that no kvmnet guest uses (issue 14, 11)."""

from __future__ import annotations

import pytest

from generator.plan.hugepages import reserved
from tests.test_plan import plan_of

GIB, MIB = 1024**3, 1024**2


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        # each hugepages= takes the size of the hugepagesz= before it
        (["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=16"], [(2, 16, GIB)]),
        (
            ["hugepagesz=2M", "hugepages=512", "hugepagesz=1G", "hugepages=2"],
            [(1, 512, 2 * MIB), (3, 2, GIB)],
        ),
        # without one, the default size: default_hugepagesz=, else x86_64's 2 MiB
        (["hugepages=1024"], [(0, 1024, 2 * MIB)]),
        (["hugepages=4", "default_hugepagesz=1G"], [(0, 4, GIB)]),
        (["hugepagesz=2048k", "hugepages=10"], [(1, 10, 2 * MIB)]),
        # nothing reserved
        (["hugepages=0"], []),
        (["intel_iommu=on", "hugepagesz=1G"], []),
    ],
)
def test_reserved_as_the_kernel_reads_it(cmdline: list[str], expected: list[tuple[int, int, int]]) -> None:
    assert reserved(cmdline) == expected


def test_unused_hugepages_are_warned_about_with_their_size() -> None:
    plan = plan_of(
        "hosts:\n  hv1:\n    kernel:\n      cmdline: [intel_iommu=on, hugepagesz=1G, hugepages=16]\n"
        "guests:\n  g1: {host: hv1, memory: 4GiB}\n"
    )
    [warning] = plan.warnings
    assert warning.path == ("hosts", "hv1", "kernel", "cmdline", 2)
    assert warning.message.startswith(
        "hugepages=16 reserves 16 GiB (16 pages of 1 GiB) at boot, which only huge-page-backed memory "
        "can use; no kvmnet guest has any"
    )


def test_no_warning_without_a_reservation() -> None:
    assert plan_of("hosts:\n  hv1:\n    kernel:\n      cmdline: [hugepagesz=1G]\n").warnings == ()
