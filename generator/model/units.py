"""Rates, sizes and durations in human units, parsed exactly and refused when ambiguous.

The trap this module exists for: in tc, `kbps` means kilo*bytes* per second (tc compares
units case-insensitively, so `Mbps` is megabytes too), while nearly everyone else means
kilo*bits*. A profile therefore spells bits as `bit` (`10Gbit`, `500Mbit`, any case) and
bytes per second as `B/s` (`125MB/s`, `10MiB/s`); `bps`-style units, bare numbers and
lone prefixes (`10M`) are refused with the two unambiguous spellings of what was probably
meant. Sizes are the same: `4GiB` or `4GB`, never `4G` (a GiB to tc and virt-install, a
GB to a disk vendor). Values are kept as integers (bits per second, bytes, microseconds)
and parsed with `Decimal`, so `1.5Gbit` is exactly 1,500,000,000 bit/s.

Each type's JSON Schema (`kvmnet schema`) is made from the same unit tables, so an
editor accepts the spellings kvmnet accepts; what a pattern cannot check (a whole number
of bytes, whole MiB of memory) kvmnet reports when it validates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from generator.model.types import Parsed, any_case, fail

_SI = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_IEC = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

#: unit -> bits per second
RATE_UNITS: dict[str, int] = {}
for _prefix, _scale in {**_SI, **_IEC}.items():
    RATE_UNITS[f"{_prefix}bit"] = _scale
    RATE_UNITS[f"{_prefix}B/s"] = _scale * 8

#: Bits are unambiguous in any case (tc itself writes `100mbit`): lower-cased unit -> unit.
_BIT_UNITS = {u.lower(): u for u in RATE_UNITS if u.endswith("bit")}

#: unit -> bytes
SIZE_UNITS: dict[str, int] = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12} | {
    f"{p}B": s for p, s in _IEC.items()
}

#: unit -> microseconds
TIME_UNITS = {"us": 1, "ms": 1000, "s": 1_000_000}

_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z/]*)\s*")

#: A prefix letter as people write it alone (`4G`, `32kb`) -> (IEC unit, SI unit, word).
_PREFIXES = {
    "k": ("KiB", "kB", "kilo"),
    "m": ("MiB", "MB", "mega"),
    "g": ("GiB", "GB", "giga"),
    "t": ("TiB", "TB", "tera"),
}

MIB = 2**20
#: The least memory kvmnet gives a guest.
MIN_MEMORY = 64 * MIB


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


def _whole(number: Decimal, scale: int) -> int | None:
    total = number * scale
    return int(total) if total == total.to_integral_value() else None


# --- rates -------------------------------------------------------------------------------


def parse_rate(value: Any) -> int:
    """A rate in bits per second, from `10Gbit`, `500Mbit`, `125MB/s`, `10MiB/s`."""
    number, unit = _split(value, "rate", "10Gbit or 125MB/s")
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


# --- sizes -------------------------------------------------------------------------------


def spell_size(size: int) -> str:
    """Bytes in the largest unit that holds them whole: 21474836480 -> `20GiB`."""
    for unit, scale in sorted(SIZE_UNITS.items(), key=lambda item: -item[1]):
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


def _bytes(text: str, size: int) -> str:
    return f"{text} ({size} bytes)"


#: What a kind of size requires beyond a whole, positive number of bytes: None, or why not.
Check = Callable[[int], str | None]


def _any_size(_size: int) -> str | None:
    return None


def _memory_check(size: int) -> str | None:
    if size < MIN_MEMORY:
        return f"is less than {spell_size(MIN_MEMORY)}, the least kvmnet gives a guest"
    if size % MIB:
        return "is not a whole number of MiB (Vagrant's unit)"
    return None


def _ambiguous(what: str, value: Any, number: Decimal, unit: str, check: Check) -> str:
    """`4G`, `32kb`: the IEC and the SI reading, each with its bytes, where it is valid."""
    iec, si, word = _PREFIXES[unit[0].lower()]
    # tc reads k/kb, m/mb... as powers of 1024 in any case (get_size); QEMU's sizes take
    # the lone letter only. A lower-case b is bits to many.
    tools = "tc and QEMU" if len(unit) == 1 else "tc"
    others = f"{word}bytes or {word}bits" if unit.endswith("b") else f"{word}bytes"
    why = f"{unit!r} means {iec} to {tools}, {others} to most others"
    valid, invalid = [], []
    for spelled, scale in ((f"{number}{iec}", SIZE_UNITS[iec]), (f"{number}{si}", SIZE_UNITS[si])):
        size = _whole(number, scale)
        if size is None:
            invalid.append(f"{spelled} is not a whole number of bytes")
        elif (problem := check(size)) is not None:
            invalid.append(f"{_bytes(spelled, size)} {problem}")
        else:
            valid.append(_bytes(spelled, size))
    if not valid:
        return f"{what} {value!r} is ambiguous ({why}), and neither reading fits: {'; '.join(invalid)}"
    return f"{what} {value!r} is ambiguous ({why}): write {' or '.join(valid)}" + "".join(
        f"; {problem}" for problem in invalid
    )


def _size(
    value: Any,
    what: str,
    example: str,
    *,
    check: Check = _any_size,
    bare: Callable[[Decimal], str],
    fix: Callable[[Decimal, str, int], list[int]] = lambda *_: [],
) -> int:
    """A size in bytes. `bare` says what a number without a unit probably meant; `fix`
    offers valid sizes near one that `check` refuses."""
    number, unit = _split(value, what, example)
    if unit in SIZE_UNITS:
        size = _exact(number, SIZE_UNITS[unit], what, value, "bytes")
        if size <= 0:
            raise fail(f"{what} {value!r} must be more than zero")
        if (problem := check(size)) is not None:
            near = [
                _bytes(spell_size(n), n) for n in dict.fromkeys(fix(number, unit, size)) if check(n) is None
            ]
            hint = f": write {' or '.join(near[:2])}" if near else ""
            raise fail(f"{what} {value!r} is {size} bytes, which {problem}{hint}")
        return size
    if not unit:
        raise fail(f"{what} {value!r} has no unit: {bare(number)}")
    low = unit.lower()
    if low[:1] in _PREFIXES and low[1:] in ("", "b"):
        raise fail(_ambiguous(what, value, number, unit, check))
    if low in _BIT_UNITS:
        raise fail(f"{what} {value!r} counts bits; write it in bytes, like {example}")
    raise fail(
        f"{what} {value!r} has an unknown unit {unit!r}; use B, kB, MB, GB, TB (powers of 1000) or "
        "KiB, MiB, GiB, TiB (powers of 1024)"
    )


def parse_size(value: Any) -> int:
    """A size in bytes, from `1500B`, `256KiB`, `1MiB`, `64kB`."""
    return _size(value, "size", "256KiB or 1500B", bare=lambda n: f"write {n}B, {n}KiB or {n}kB")


def _memory_bare(number: Decimal) -> str:
    size = _whole(number, MIB)
    if size is None or _memory_check(size) is not None:
        return "write it with one, like 4GiB or 4096MiB"
    spelled = f"{number}MiB"
    also = f"= {spell_size(size)}, " if spell_size(size) != spelled else ""
    return f"virt-install reads --memory {number} as MiB, so write {spelled} ({also}{size} bytes)"


def _memory_near(number: Decimal, unit: str, size: int) -> list[int]:
    """For `4GB`: 4GiB, which was most likely meant; then the whole MiB below and above."""
    near = []
    if unit in ("kB", "MB", "GB", "TB") and (meant := _whole(number, SIZE_UNITS[unit[0].upper() + "iB"])):
        near.append(meant)
    return [*near, size // MIB * MIB, (size // MIB + 1) * MIB]


def parse_memory(value: Any) -> int:
    """A guest's memory in bytes: whole MiB (Vagrant's unit), at least 64MiB."""
    return _size(value, "memory", "4GiB or 4096MiB", check=_memory_check, bare=_memory_bare, fix=_memory_near)


def _disk_bare(number: Decimal) -> str:
    size = _whole(number, 2**30)
    if size is None or size <= 0:
        return "write it with one, like 20GiB or 500GB"
    return f"virt-install reads size={number} as GiB, so write {_bytes(f'{number}GiB', size)}"


def parse_disk_size(value: Any) -> int:
    """A guest disk's size in bytes, from `20GiB`, `500GB`."""
    return _size(value, "disk size", "20GiB or 500GB", bare=_disk_bare)


# --- durations ---------------------------------------------------------------------------


def parse_time(value: Any) -> int:
    """A duration in microseconds, from `50ms`, `1s`, `200us`."""
    number, unit = _split(value, "time", "50ms")
    if unit not in TIME_UNITS:
        hint = "no unit" if not unit else f"an unknown unit {unit!r}"
        raise fail(f"time {value!r} has {hint}; use us, ms or s (like 50ms)")
    return _exact(number, TIME_UNITS[unit], "time", value, "microseconds")


def spell_time(microseconds: int) -> str:
    """Microseconds in the largest unit that holds them whole: 60000000 -> `60s`."""
    for unit, scale in sorted(TIME_UNITS.items(), key=lambda item: -item[1]):
        if microseconds % scale == 0:
            return f"{microseconds // scale}{unit}"
    return f"{microseconds}us"  # pragma: no cover - us divides everything


# --- JSON Schema -------------------------------------------------------------------------


def _pattern(units: Iterable[str], *, positive: bool) -> str:
    """A number (more than zero if `positive`) with one of `units`, spaced as `_NUMBER` allows."""
    alternatives = "|".join(sorted(units, key=len, reverse=True))
    nonzero = r"(?=[0-9.]*[1-9])" if positive else ""
    return rf"^\s*{nonzero}[0-9]+(\.[0-9]+)?\s*({alternatives})\s*$"


_RATE_SCHEMA = {
    "type": "string",
    "pattern": _pattern(
        [any_case(u) for u in _BIT_UNITS] + [re.escape(u) for u in RATE_UNITS if u.endswith("B/s")],
        positive=True,
    ),
    "description": "bits per second with bit (10Gbit, 500mbit: any case) or bytes per second with B/s "
    "(125MB/s, 10MiB/s); a whole number of bytes per second",
}
_SIZE_PATTERN = _pattern(SIZE_UNITS, positive=True)

Rate = Annotated[int, Parsed(parse_rate, _RATE_SCHEMA)]
Size = Annotated[
    int,
    Parsed(
        parse_size,
        {
            "type": "string",
            "pattern": _SIZE_PATTERN,
            "description": "bytes: B, kB, MB, GB, TB or KiB, MiB...",
        },
    ),
]
MemorySize = Annotated[
    int,
    Parsed(
        parse_memory,
        {
            "type": "string",
            "pattern": _SIZE_PATTERN,
            "description": "whole MiB, at least 64MiB (4GiB, 4096MiB)",
        },
    ),
]
DiskSize = Annotated[
    int,
    Parsed(
        parse_disk_size,
        {"type": "string", "pattern": _SIZE_PATTERN, "description": "bytes: 20GiB, 500GB"},
    ),
]
Duration = Annotated[
    int,
    Parsed(
        parse_time,
        {"type": "string", "pattern": _pattern(TIME_UNITS, positive=False), "description": "us, ms or s"},
    ),
]
