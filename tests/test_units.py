"""Rates, sizes and durations (generator/model/units.py): exact values, and the message a
user gets for each way of writing one wrong (the located form is in tests/bad/)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic_core import PydanticCustomError

from generator.model.types import range_pattern
from generator.model.units import (
    parse_disk_size,
    parse_memory,
    parse_rate,
    parse_size,
    parse_time,
    spell_size,
    spell_time,
)


def refusal(parse: Callable[[Any], int], value: Any) -> str:
    with pytest.raises(PydanticCustomError) as caught:
        parse(value)
    return str(caught.value.context["msg"] if caught.value.context else caught.value)


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("10Gbit", 10 * 10**9),
        ("10gbit", 10 * 10**9),  # tc writes bits in lower case: any case is accepted
        ("10GBIT", 10 * 10**9),
        ("1.5Gbit", 1_500_000_000),
        ("64Kibit", 65_536),
        ("125MB/s", 10**9),
        ("10MiB/s", 10 * 2**20 * 8),
        (" 500 Mbit ", 500 * 10**6),
    ],
)
def test_rates_are_exact(text: str, bits: int) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (parse_size, "256KiB", 256 * 1024),
        (parse_size, "64kB", 64_000),
        (parse_size, "2TB", 2 * 10**12),
        (parse_memory, "4GiB", 4 * 2**30),
        (parse_memory, "1.5GiB", 3 * 2**29),
        (parse_memory, "64MiB", 64 * 2**20),
        (parse_disk_size, "500GB", 500 * 10**9),
        (parse_time, "50ms", 50_000),
        (parse_time, "0us", 0),
    ],
)
def test_sizes_and_times_are_exact(parse: Callable[[Any], int], text: str, value: int) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        # Issue 12: `memory: 4G` said "write 4KiB (1024 bytes) or 4kB", whatever the prefix.
        (
            parse_memory,
            "4G",
            "memory '4G' is ambiguous ('G' means GiB to tc and QEMU, gigabytes to most others): "
            "write 4GiB (4294967296 bytes); 4GB (4000000000 bytes) is not a whole number of MiB "
            "(Vagrant's unit)",
        ),
        # ... `memory: 4GB` said only "memory must be whole MiB, at least 64MiB" (in the plan).
        (
            parse_memory,
            "4GB",
            "memory '4GB' is 4000000000 bytes, which is not a whole number of MiB (Vagrant's unit): "
            "write 4GiB (4294967296 bytes) or 3814MiB (3999268864 bytes)",
        ),
        # ... `memory: 4096` said "no unit: write 4096B, 4096KiB or 4096kB".
        (
            parse_memory,
            "4096",
            "memory '4096' has no unit: virt-install reads --memory 4096 as MiB, so write 4096MiB "
            "(= 4GiB, 4294967296 bytes)",
        ),
        (
            parse_memory,
            "3000",
            "memory '3000' has no unit: virt-install reads --memory 3000 as MiB, so write 3000MiB "
            "(3145728000 bytes)",
        ),
        (parse_memory, "16", "memory '16' has no unit: write it with one, like 4GiB or 4096MiB"),
        (
            parse_memory,
            "32MiB",
            "memory '32MiB' is 33554432 bytes, which is less than 64MiB, the least kvmnet gives a guest",
        ),
        (
            parse_memory,
            "100.5MiB",
            "memory '100.5MiB' is 105381888 bytes, which is not a whole number of MiB (Vagrant's unit): "
            "write 100MiB (104857600 bytes) or 101MiB (105906176 bytes)",
        ),
        (
            parse_memory,
            "16384M",
            "memory '16384M' is ambiguous ('M' means MiB to tc and QEMU, megabytes to most others): "
            "write 16384MiB (17179869184 bytes) or 16384MB (16384000000 bytes)",
        ),
        (
            parse_memory,
            "4k",
            "memory '4k' is ambiguous ('k' means KiB to tc and QEMU, kilobytes to most others), and "
            "neither reading fits: 4KiB (4096 bytes) is less than 64MiB, the least kvmnet gives a guest; "
            "4kB (4000 bytes) is less than 64MiB, the least kvmnet gives a guest",
        ),
        (parse_memory, "4Gbit", "memory '4Gbit' counts bits; write it in bytes, like 4GiB or 4096MiB"),
        (
            parse_disk_size,
            "20G",
            "disk size '20G' is ambiguous ('G' means GiB to tc and QEMU, gigabytes to most others): "
            "write 20GiB (21474836480 bytes) or 20GB (20000000000 bytes)",
        ),
        (
            parse_disk_size,
            "20",
            "disk size '20' has no unit: virt-install reads size=20 as GiB, so write 20GiB "
            "(21474836480 bytes)",
        ),
        (parse_disk_size, "0GiB", "disk size '0GiB' must be more than zero"),
        # The byte counts are the value's, not the unit's (it said "32KiB (1024 bytes)").
        (
            parse_size,
            "32kb",
            "size '32kb' is ambiguous ('kb' means KiB to tc, kilobytes or kilobits to most others): "
            "write 32KiB (32768 bytes) or 32kB (32000 bytes)",
        ),
        (parse_size, "1500", "size '1500' has no unit: write 1500B, 1500KiB or 1500kB"),
        (parse_size, "0.5B", "size '0.5B' is not a whole number of bytes"),
        (
            parse_size,
            "4 furlongs",
            "size '4 furlongs' has an unknown unit 'furlongs'; use B, kB, MB, GB, TB (powers of 1000) "
            "or KiB, MiB, GiB, TiB (powers of 1024)",
        ),
        (
            parse_rate,
            "10Mbps",
            "rate '10Mbps' is ambiguous: 'Mbps' means megabits per second to most people but megabytes "
            "per second to tc; write 10Mbit or 10MB/s",
        ),
        (parse_rate, "12bit", "rate '12bit' is not a whole number of bytes per second (tc counts bytes)"),
        (parse_time, "50", "time '50' has no unit; use us, ms or s (like 50ms)"),
    ],
)
def test_refusals_say_what_was_meant(parse: Callable[[Any], int], value: Any, message: str) -> None:
    assert refusal(parse, value) == message


@pytest.mark.parametrize(
    ("parse", "spelled", "size"),
    [
        (parse_memory, "4GiB", 4294967296),
        (parse_memory, "3814MiB", 3999268864),
        (parse_memory, "4096MiB", 4294967296),
        (parse_memory, "16384MB", 16384000000),
        (parse_disk_size, "20GiB", 21474836480),
        (parse_disk_size, "20GB", 20000000000),
    ],
)
def test_what_the_messages_suggest_is_accepted(parse: Callable[[Any], int], spelled: str, size: int) -> None:
    assert parse(spelled) == size


def test_spelled_the_way_a_profile_writes_them() -> None:
    assert [spell_size(n) for n in (20 * 2**30, 4 * 10**9, 3814 * 2**20, 1500, 0)] == [
        "20GiB",
        "4GB",
        "3814MiB",
        "1500B",
        "0B",
    ]
    assert [spell_time(n) for n in (60_000_000, 50_000, 1_500)] == ["60s", "50ms", "1500us"]


@pytest.mark.parametrize(("lo", "hi"), [(0, 65_535), (1, 4094), (68, 65_535), (1, 256), (0, 63), (99, 101)])
def test_range_pattern_matches_exactly_the_range(lo: int, hi: int) -> None:
    pattern = re.compile(f"^({range_pattern(lo, hi)})$")
    assert [n for n in range(70_000) if pattern.match(str(n))] == list(range(lo, hi + 1))
    assert not pattern.match(f"0{lo}")  # leading zeros are the caller's to allow
