"""Rates, sizes and durations in human units, parsed exactly and refused when ambiguous.

The trap this module exists for: in tc, `kbps` means kilo*bytes* per second (tc compares
units case-insensitively, so `Mbps` is megabytes too), while nearly everyone else means
kilo*bits*. A profile therefore spells bits as `bit` (`10Gbit`, `500Mbit`) and bytes per
second as `B/s` (`125MB/s`, `10MiB/s`); `bps`-style units, bare numbers and lone
prefixes (`10M`) are refused with the two unambiguous spellings of what was probably
meant. Values are kept as integers (bits per second, bytes, microseconds) and parsed
with `Decimal`, so `1.5Gbit` is exactly 1,500,000,000 bit/s.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from generator.model.types import Parsed, fail

_SI = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_IEC = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

#: unit -> bits per second
RATE_UNITS: dict[str, int] = {}
for _prefix, _scale in {**_SI, **_IEC}.items():
    RATE_UNITS[f"{_prefix}bit"] = _scale
    RATE_UNITS[f"{_prefix}B/s"] = _scale * 8

_BIT_UNITS = {u.lower(): u for u in RATE_UNITS if u.endswith("bit")}

#: unit -> bytes
SIZE_UNITS: dict[str, int] = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9} | {
    f"{p}B": s for p, s in _IEC.items()
}

#: unit -> microseconds
TIME_UNITS = {"us": 1, "ms": 1000, "s": 1_000_000}

_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]*)\s*")


def _split(value: Any, what: str, example: str) -> tuple[Decimal, str]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise fail(f"{what} must be a number with a unit, like {example}")
    match = _NUMBER.fullmatch(str(value))
    if not match:
        raise fail(f"{what} {value!r} is not a number with a unit, like {example}")
    try:
        return Decimal(match.group(1)), match.group(2)
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimals
        raise fail(f"{what} {value!r} is not a number") from None


def _exact(number: Decimal, scale: int, what: str, value: Any, base: str) -> int:
    total = number * scale
    if total != total.to_integral_value():
        raise fail(f"{what} {value!r} is not a whole number of {base}")
    return int(total)


def parse_rate(value: Any) -> int:
    """A rate in bits per second, from `10Gbit`, `500Mbit`, `125MB/s`, `10MiB/s`."""
    number, unit = _split(value, "rate", "10Gbit or 125MB/s")
    # Bits are unambiguous in any case (tc writes `100mbit`); bytes keep their case.
    unit = _BIT_UNITS.get(unit.lower(), unit) if unit.lower().endswith("bit") else unit
    if unit not in RATE_UNITS:
        raise fail(_rate_hint(value, number, unit))
    bits = _exact(number, RATE_UNITS[unit], "rate", value, "bits per second")
    if bits % 8:
        raise fail(f"rate {value!r} is not a whole number of bytes per second (tc counts bytes)")
    if bits <= 0:
        raise fail(f"rate {value!r} must be more than zero")
    return bits


def _rate_hint(value: Any, number: Decimal, unit: str) -> str:
    low = unit.lower()
    prefix = {"": "", "k": "k", "m": "M", "g": "G", "t": "T"}.get(low[:1] if low[:1] in "kmgt" else "", "")
    if not unit:
        return (
            f"rate {value!r} has no unit: write bits per second ({number}kbit, {number}Mbit, {number}Gbit) "
            f"or bytes per second ({number}kB/s, {number}MB/s)"
        )
    if low.endswith(("bps", "b/s")) or low in ("k", "m", "g", "t"):
        word = {"k": "kilo", "M": "mega", "G": "giga", "T": "tera", "": ""}[prefix]
        return (
            f"rate {value!r} is ambiguous: {unit!r} means {word}bits per second to most people but "
            f"{word}bytes per second to tc; write {number}{prefix}bit or {number}{prefix}B/s"
        )
    return (
        f"rate {value!r} has an unknown unit {unit!r}; use bit, kbit, Mbit, Gbit, Tbit (or Kibit...) "
        "for bits per second, or B/s, kB/s, MB/s, GB/s (or KiB/s...) for bytes per second"
    )


def parse_size(value: Any) -> int:
    """A size in bytes, from `1500B`, `256KiB`, `1MiB`, `64kB`."""
    number, unit = _split(value, "size", "256KiB or 1500B")
    if unit not in SIZE_UNITS:
        if not unit:
            message = f"size {value!r} has no unit: write {number}B, {number}KiB or {number}kB"
        elif unit.lower() in ("kb", "mb", "gb", "k", "m", "g") or unit.lower().endswith("bit"):
            message = (
                f"size {value!r} is ambiguous: {unit!r} means KiB to tc and kilobytes or kilobits to "
                f"others; write {number}KiB (1024 bytes) or {number}kB (1000 bytes)"
            )
        else:
            message = f"size {value!r} has an unknown unit {unit!r}; use B, kB, MB, GB, KiB, MiB or GiB"
        raise fail(message)
    size = _exact(number, SIZE_UNITS[unit], "size", value, "bytes")
    if size <= 0:
        raise fail(f"size {value!r} must be more than zero")
    return size


def parse_time(value: Any) -> int:
    """A duration in microseconds, from `50ms`, `1s`, `200us`."""
    number, unit = _split(value, "time", "50ms")
    if unit not in TIME_UNITS:
        hint = "no unit" if not unit else f"an unknown unit {unit!r}"
        raise fail(f"time {value!r} has {hint}; use us, ms or s (like 50ms)")
    return _exact(number, TIME_UNITS[unit], "time", value, "microseconds")


Rate = Annotated[
    int,
    Parsed(parse_rate, {"type": "string", "pattern": r"^[0-9.]+\s*([kMGT]|[KMGT]i)?(bit|B/s)$"}),
]
Size = Annotated[
    int,
    Parsed(parse_size, {"type": "string", "pattern": r"^[0-9.]+\s*(B|kB|MB|GB|KiB|MiB|GiB|TiB)$"}),
]
Duration = Annotated[int, Parsed(parse_time, {"type": "string", "pattern": r"^[0-9.]+\s*(us|ms|s)$"})]
