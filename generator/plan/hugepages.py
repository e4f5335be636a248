"""Huge pages a host reserves on its kernel command line, which no kvmnet guest can use.

`hugepages=N` takes N huge pages out of the host's memory at boot, for good: they serve
only hugetlbfs mappings, such as a libvirt guest with `<memoryBacking><hugepages/>`.
kvmnet's guest model has no memory backing (a guest's XML never asks for huge pages), so
on a kvmnet host that memory is reserved and unused: the plan warns, with its size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from generator.errors import Diagnostic, KeyPath

#: The kernel's default huge page size on x86_64 (Documentation/admin-guide/mm/hugetlbpage.rst).
DEFAULT_SIZE = 2 * 1024**2
_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size(text: str) -> int | None:
    """A size as the kernel's memparse() reads it: `1G`, `2M`, `2048k`."""
    match = re.fullmatch(r"(\d+)([kKmMgGtT]?)", text)
    return int(match.group(1)) * _SCALE[match.group(2).lower()] if match else None


def _shown(size: int) -> str:
    for unit, scale in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def reserved(cmdline: Sequence[str]) -> list[tuple[int, int, int]]:
    """(index of the `hugepages=` argument, pages, page size) for each reservation, read
    as the kernel does: `hugepages=` counts pages of the size of the `hugepagesz=` before
    it, or else of the default size (`default_hugepagesz=`, else 2 MiB)."""
    values = [arg.partition("=") for arg in cmdline]
    default = next(
        (s for key, _, v in values if key == "default_hugepagesz" and (s := _size(v))), DEFAULT_SIZE
    )
    out: list[tuple[int, int, int]] = []
    current: int | None = None
    for index, (key, _, value) in enumerate(values):
        if key == "hugepagesz":
            current = _size(value)
        elif key == "hugepages" and value.isdigit() and int(value) > 0:
            out.append((index, int(value), current or default))
    return out


def unused_hugepages(host: str, cmdline: Sequence[str]) -> list[Diagnostic]:
    """A warning per `hugepages=` on the host's command line: no kvmnet guest uses them."""
    base: KeyPath = ("hosts", host, "kernel", "cmdline")
    return [
        Diagnostic(
            f"hugepages={pages} reserves {_shown(pages * size)} ({pages} pages of {_shown(size)}) at boot, "
            "which only huge-page-backed memory can use; no kvmnet guest has any (their domain XML "
            "has no <memoryBacking><hugepages/>), so the host and every guest lose that memory: "
            "drop the hugepages arguments, or back guests with huge pages outside kvmnet",
            (*base, index),
        )
        for index, pages, size in reserved(cmdline)
    ]
