"""Scalar types of the profile, each with the message a user needs when it is wrong.

The loader hands every scalar over as the text the user wrote (netplan reads YAML the
same way), so each type here parses text itself and says exactly what would be valid.
Rules about one value live here; rules that relate several objects live in `plan/`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

#: systemd and the kernel refuse interface names longer than IFNAMSIZ - 1 bytes.
IFNAMSIZ_MAX = 15


def fail(message: str) -> PydanticCustomError:
    """An error whose text is shown to the user as is."""
    return PydanticCustomError("kvmnet", "{msg}", {"msg": message})


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict) or hasattr(value, "keys"):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def _whole(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())  # int() strips less than str.strip() (not \x1c-\x1f)
    raise fail(f"{what} must be a whole number from {lo} to {hi}, got {_show(value)}")


def int_range(lo: int, hi: int, what: str, why: str = "") -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = _whole(value, what, lo, hi)
        if not lo <= number <= hi:
            raise fail(f"{what} must be {lo}–{hi}{why}, got {number}")
        return number

    return check


@dataclass(frozen=True, eq=False)  # hashed by identity: typing hashes Annotated metadata
class Parsed:
    """Annotated metadata: parse the user's text with `parse`, describe it with `schema`.

    One object instead of BeforeValidator + WithJsonSchema so that a type can be made
    by a function call and still be a type mypy understands: `Annotated[int, ranged(...)]`.
    """

    parse: Callable[[Any], Any]
    schema: Mapping[str, Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.parse, handler(source))

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.schema)


# --- JSON Schema patterns -----------------------------------------------------
# The loader hands kvmnet every scalar as text, so a quoted `"9000"` is as good as 9000;
# an editor reads YAML's own types, so the schema spells out the text forms too. The
# patterns are ECMA-262 and Python alike: no inline flags (any case is spelled [bB]),
# and `\s` where kvmnet strips whitespace.


def any_case(word: str) -> str:
    """A pattern matching `word` in any case: `bit` -> `[bB][iI][tT]`."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


def _digits(lo: str, hi: str) -> list[str]:
    """Patterns for the digit strings from `lo` to `hi`, both of the same length."""
    if lo == hi:
        return [lo]
    common = 0
    while lo[common] == hi[common]:
        common += 1
    head, lo, hi = lo[:common], lo[common:], hi[common:]
    if len(lo) == 1:
        return [f"{head}[{lo}-{hi}]"]
    rest = len(lo) - 1
    out: list[str] = []
    first, last = int(lo[0]), int(hi[0])
    if lo[1:] != "0" * rest:  # the partial block at the bottom: lo[0] followed by lo[1:]..99
        out += [head + lo[0] + tail for tail in _digits(lo[1:], "9" * rest)]
        first += 1
    upper = []
    if hi[1:] != "9" * rest:  # the partial block at the top: hi[0] followed by 00..hi[1:]
        upper = [head + hi[0] + tail for tail in _digits("0" * rest, hi[1:])]
        last -= 1
    if first <= last:
        digit = str(first) if first == last else f"[{first}-{last}]"
        out.append(f"{head}{digit}[0-9]{{{rest}}}" if rest > 1 else f"{head}{digit}[0-9]")
    return out + upper


def range_pattern(lo: int, hi: int) -> str:
    """A regex alternation of the decimal numbers from `lo` to `hi` (0 <= lo <= hi), written
    without leading zeros: `range_pattern(1, 4094)` matches 1...4094 and nothing else."""
    out = []
    for length in range(len(str(lo)), len(str(hi)) + 1):
        first = max(lo, 10 ** (length - 1) if length > 1 else 0)
        last = min(hi, 10**length - 1)
        out += _digits(str(first), str(last))
    return "|".join(out)


def whole_schema(lo: int, hi: int) -> list[dict[str, Any]]:
    """The schemas of what `int_range` accepts: a number from `lo` to `hi`, or its text."""
    zero = "|-0+" if lo == 0 else ""  # int("-0") is 0
    return [
        {"type": "integer", "minimum": lo, "maximum": hi},
        {"type": "string", "pattern": rf"^\s*(\+?0*({range_pattern(lo, hi)}){zero})\s*$"},
    ]


def ranged(lo: int, hi: int, what: str, why: str = "") -> Parsed:
    """Metadata for `Annotated[int, ...]` accepting whole numbers from `lo` to `hi`."""
    return Parsed(int_range(lo, hi, what, why), {"anyOf": whole_schema(lo, hi)})


# netplan's own spelling of booleans (handle_generic_bool), case-insensitive.
_TRUE = frozenset(("true", "yes", "on", "y"))
_FALSE = frozenset(("false", "no", "off", "n"))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise fail(f"expected true or false, got {_show(value)}")


# Longest first (so "yes" is not read as "y"), then alphabetical: a set's order changes
# with the hash seed, and `kvmnet schema` printed a different pattern from run to run.
_BOOL_WORDS = "|".join(any_case(word) for word in sorted(_TRUE | _FALSE, key=lambda w: (-len(w), w)))
Flag = Annotated[
    bool,
    BeforeValidator(_bool),
    WithJsonSchema(
        {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": rf"^\s*({_BOOL_WORDS})\s*$"}]}
    ),
]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise fail(f"expected a string, got {_show(value)}")


# --- names ------------------------------------------------------------------

# The kernel forbids '/', ':' and whitespace in names, systemd also '%' and names made
# only of digits. kvmnet is stricter still: names end up unquoted in file names, unit
# names and shell scripts, so they are letters, digits, '.', '_' and '-', not leading
# with '.' or '-'.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def interface_name_problem(name: str) -> str | None:
    """Why `name` cannot be a Linux interface name, or None if it can."""
    size = len(name.encode())
    if size > IFNAMSIZ_MAX:
        return f"interface name {name!r} is {size} bytes; Linux allows at most {IFNAMSIZ_MAX} (IFNAMSIZ - 1)"
    if not _IFNAME.fullmatch(name):
        return (
            f"interface name {name!r} is not accepted: use letters, digits, '.', '_' and '-', "
            "not starting with '.' or '-'"
        )
    if name.isdigit():
        return f"interface name {name!r} is all digits, which systemd refuses (it reads as an ifindex)"
    return None


def _interface_name(value: Any) -> str:
    name = _text(value)
    problem = interface_name_problem(name)
    if problem:
        raise fail(problem)
    return name


InterfaceName = Annotated[
    str,
    BeforeValidator(_interface_name),
    WithJsonSchema(
        {"type": "string", "maxLength": IFNAMSIZ_MAX, "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"}
    ),
]


def _pattern_schema(pattern: re.Pattern[str]) -> WithJsonSchema:
    """The JSON Schema of a string the validator fullmatches against `pattern`: the same
    regex, anchored, so the schema editors read cannot drift from what kvmnet accepts."""
    return WithJsonSchema({"type": "string", "pattern": f"^{pattern.pattern}$"})


_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def _device_id(value: Any) -> str:
    ident = _text(value)
    if not _ID.fullmatch(ident):
        raise fail(
            f"{ident!r} is not a valid device id: use up to 64 letters, digits, '.', '_' and '-', "
            "not starting with '.' or '-'"
        )
    return ident


#: The key of an `ethernets:` entry. It is only a kernel name when there is no `match:`,
#: which the plan checks.
DeviceId = Annotated[
    str,
    BeforeValidator(_device_id),
    _pattern_schema(_ID),
]

_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,64}")


def _glob(value: Any) -> str:
    text = _text(value)
    if not _GLOB.fullmatch(text):
        raise fail(
            f"{text!r} is not an interface name or shell glob "
            "(letters, digits, '.', '_', '-' and the wildcards * ? [ ])"
        )
    return text


NameGlob = Annotated[str, BeforeValidator(_glob), WithJsonSchema({"type": "string"})]

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _label(value: Any) -> str:
    text = _text(value)
    if not _LABEL.fullmatch(text):
        raise fail(
            f"{text!r} is not a valid name: use a hostname label (letters, digits and '-', "
            "1–63 characters, not starting or ending with '-')"
        )
    return text


#: Host, guest and overlay names: they become directory names and host names.
Label = Annotated[
    str,
    BeforeValidator(_label),
    _pattern_schema(_LABEL),
]

_DOMAIN_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# A leading '~' is systemd-resolved's routing-only domain; netplan passes it through.
_DOMAIN = re.compile(rf"~?{_DOMAIN_LABEL}(\.{_DOMAIN_LABEL})*\.?")


def _domain(value: Any) -> str:
    text = _text(value)
    if len(text) > 253 or not _DOMAIN.fullmatch(text):
        raise fail(f"{text!r} is not a DNS domain name")
    return text


DomainName = Annotated[str, BeforeValidator(_domain), WithJsonSchema({"type": "string"})]

# --- addresses --------------------------------------------------------------

_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def _mac(value: Any) -> str:
    text = _text(value)
    if not _MAC.fullmatch(text):
        raise fail(f"{text!r} is not a MAC address (six hex pairs like 52:54:00:12:34:56)")
    return text.lower()


MacAddress = Annotated[
    str,
    BeforeValidator(_mac),
    _pattern_schema(_MAC),
]


def _ip(value: Any) -> str:
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise fail(f"{text!r} is not an IP address (like 192.0.2.10 or 2001:db8::10)") from None


IPAddress = Annotated[str, BeforeValidator(_ip), WithJsonSchema({"type": "string"})]


def _ip_interface(value: Any) -> str:
    text = _text(value)
    if "/" not in text:
        raise fail(f"{text!r} has no prefix length: write the address with it (like 192.0.2.10/24)")
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        raise fail(
            f"{text!r} is not an IP address with prefix length (like 192.0.2.10/24 or 2001:db8::10/64)"
        ) from None


IPInterface = Annotated[str, BeforeValidator(_ip_interface), WithJsonSchema({"type": "string"})]


def _route_to(value: Any) -> str:
    text = _text(value)
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_interface(text if "/" in text else text + ("/128" if ":" in text else "/32")))
    except ValueError:
        raise fail(
            f"{text!r} is not a route destination: write 'default' or a prefix like 10.0.0.0/8"
        ) from None


RouteDestination = Annotated[str, BeforeValidator(_route_to), WithJsonSchema({"type": "string"})]

# --- numbers ----------------------------------------------------------------

VlanId = Annotated[int, ranged(1, 4094, "VLAN id", " (0 and 4095 are reserved by IEEE 802.1Q)")]
Vni = Annotated[int, ranged(1, 16_777_215, "VXLAN VNI", " (24 bits; systemd-networkd refuses 0)")]
Mtu = Annotated[int, ranged(68, 65_535, "MTU", " (68 is the IPv4 minimum)")]
UdpPort = Annotated[int, ranged(1, 65_535, "UDP port")]
Ttl = Annotated[int, ranged(1, 255, "TTL")]
Metric = Annotated[int, ranged(0, 4_294_967_295, "route metric")]
RouteTable = Annotated[int, ranged(1, 4_294_967_295, "routing table")]


def _mtu_or_auto(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    try:
        return int_range(68, 65_535, "MTU", " (68 is the IPv4 minimum)")(value)
    except PydanticCustomError:
        raise fail(
            f"MTU must be a number from 68 to 65535 or 'auto' (the largest that fits the "
            f"underlay), got {_show(value)}"
        ) from None


#: kvmnet extension: `mtu: auto` derives the largest MTU the underlay can carry.
MtuOrAuto = Annotated[
    int | Literal["auto"],
    BeforeValidator(_mtu_or_auto),
    WithJsonSchema({"anyOf": [*whole_schema(68, 65_535), {"const": "auto"}]}),
]


def _vlan_range(value: Any) -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else None
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", text or "")
    if not match:
        raise fail(f"expected a VLAN id or range like 100 or 200-210, got {_show(value)}")
    lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
    for vid in (lo, hi):
        if not 1 <= vid <= 4094:
            raise fail(f"VLAN id must be 1–4094 (0 and 4095 are reserved by IEEE 802.1Q), got {vid}")
    if lo > hi:
        raise fail(f"VLAN range {lo}-{hi} runs backwards; write {hi}-{lo}")
    return (lo, hi)


_VID = range_pattern(1, 4094)

#: `100` or `200-210`, stored as an inclusive (first, last) pair.
VlanRange = Annotated[
    tuple[int, int],
    BeforeValidator(_vlan_range),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 4094},
                {"type": "string", "pattern": rf"^\s*0*({_VID})(-0*({_VID}))?\s*$"},
            ]
        }
    ),
]

# --- durations --------------------------------------------------------------

_SPAN_UNITS_MS = {"ms": 1, "msec": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}


_SPAN_PATTERN = "|".join(sorted(_SPAN_UNITS_MS, key=len, reverse=True))


def duration(default_unit: str, what: str) -> Callable[[Any], int]:
    """Parse netplan's time values: a bare number in `default_unit`, or with a systemd suffix.

    The result is in milliseconds.
    """

    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        elif isinstance(value, str):
            text = value.strip()
        else:
            raise fail(f"{what} must be a time like 15 or 15s, got {_show(value)}")
        match = re.fullmatch(r"([0-9]+)\s*([a-z]*)", text)
        unit = (match.group(2) or default_unit) if match else ""
        if not match or unit not in _SPAN_UNITS_MS:
            raise fail(
                f"{what} must be a whole number of {default_unit}, optionally with a unit "
                f"(ms, s, min, h), got {_show(value)}"
            )
        return int(match.group(1)) * _SPAN_UNITS_MS[unit]

    return check


def timespan(default_unit: str, what: str) -> Parsed:
    """Metadata for `Annotated[int, ...]` holding milliseconds, written as in netplan."""
    return Parsed(
        duration(default_unit, what),
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {
                    "type": "string",
                    "pattern": rf"^\s*[0-9]+\s*({_SPAN_PATTERN})?\s*$",
                },
            ]
        },
    )
