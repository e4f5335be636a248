"""systemd's INI dialect (.network, .netdev, .link), parsed and normalised by meaning.

Test tooling for comparing two generators' networkd output: what counts is what
systemd-networkd and udev would configure, not how a file spells it. So:

- comments (`#`, `;`), blank lines, file names and key order are ignored;
- a section name that appears twice is one section (systemd merges them), except the
  per-object sections such as `[Route]` or `[BridgeVLAN]`, where each header is a new
  object; those compare as a multiset (their order means nothing);
- a scalar key assigned twice keeps the last value; a list key (`Address=`, `DNS=`,
  `Domains=`, `VLAN=`, ...) accumulates, several values may share one line, and an empty
  assignment empties the list;
- values are put in one canonical form per type: booleans as bool, time spans as
  one canonical unit, sizes as bytes, IP addresses and prefixes through `ipaddress`, MACs in
  lower case, lists split into items (kept in order where order matters, e.g. DNS).

A file is identified by what it configures: a .netdev by `[NetDev] Name=`, a .network
or .link by its normalised `[Match]` section (systemd.network(5), systemd.link(5)).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

#: Sections where every header starts a new object (systemd.network(5), systemd.netdev(5)).
PER_OBJECT_SECTIONS = frozenset(
    {
        "Address",
        "Route",
        "RoutingPolicyRule",
        "NextHop",
        "Neighbor",
        "BridgeFDB",
        "BridgeMDB",
        "BridgeVLAN",
        "IPv6Prefix",
        "IPv6RoutePrefix",
        "SR-IOV",
        "DHCPServerStaticLease",
        "QDisc",
        "TokenBucketFilter",
        "HierarchyTokenBucket",
        "HierarchyTokenBucketClass",
        "CAKE",
        "FairQueueingControlledDelay",
        "FairQueueing",
        "NetworkEmulator",
    }
)

_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
_FALSE = frozenset({"0", "no", "n", "false", "f", "off"})

# systemd's parse_sec(): a bare number is seconds; units may be combined ("1min 30s").
_USEC = {
    "us": 1,
    "usec": 1,
    "ms": 1000,
    "msec": 1000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hr": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
}
_SPAN_PART = re.compile(r"\s*([0-9]+)\s*([a-z]*)")
_SIZE = re.compile(r"([0-9]+)\s*([KMG]?)B?", re.IGNORECASE)
_ROUTE_TABLES = {"default": 253, "main": 254, "local": 255}

Scalar = bool | int | str
#: A normalised value: one scalar, or the items of a list key.
Value = Scalar | tuple[Scalar, ...]


class IniError(ValueError):
    """The text is not systemd's INI dialect (or not a unit file this module knows)."""


# --- parsing -------------------------------------------------------------------------


@dataclass(frozen=True)
class RawSection:
    """One `[Name]` header and the assignments under it, as written."""

    name: str
    assignments: tuple[tuple[str, str], ...]


def parse(text: str, source: str = "<text>") -> list[RawSection]:
    """Split `text` into sections, keeping every assignment (systemd's config_parse())."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    pending = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):  # continuation: the next line is joined with a space
            pending = line[:-1] + " "
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise IniError(f"{source}:{number}: bad section header {raw!r}")
            sections.append((line[1:-1], []))
            continue
        if "=" not in line:
            raise IniError(f"{source}:{number}: expected key=value, got {raw!r}")
        if not sections:
            raise IniError(f"{source}:{number}: assignment outside a section: {raw!r}")
        key, _, value = line.partition("=")
        sections[-1][1].append((key.strip(), value.strip()))
    return [RawSection(name, tuple(assignments)) for name, assignments in sections]


# --- value types ---------------------------------------------------------------------


class Shape(Enum):
    SCALAR = "scalar"  # last assignment wins
    ORDERED = "ordered"  # a list whose order matters (DNS servers, search domains, policies)
    UNORDERED = "unordered"  # a list that is a set in effect (stacked devices, Match globs)


def _bool(text: str) -> Scalar:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return text


def _seconds(text: str) -> Scalar:
    """A time span (systemd.time(7)); a bare number is seconds. Canonical: `2s`, `500ms`."""
    low = text.strip().lower()
    total, pos = 0, 0
    for match in _SPAN_PART.finditer(low):
        if match.start() != pos:
            return text
        unit = match.group(2) or "s"
        if unit not in _USEC:
            return text
        total += int(match.group(1)) * _USEC[unit]
        pos = match.end()
    if pos != len(low) or pos == 0:
        return text
    for unit, size in (("s", 1_000_000), ("ms", 1000)):
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}us"


def _int(text: str) -> Scalar:
    try:
        return int(text, 10)
    except ValueError:
        return text


def _table(text: str) -> Scalar:
    return _ROUTE_TABLES.get(text, _int(text))


def _bytes(text: str) -> Scalar:
    """MTUBytes= and friends: K, M, G are powers of 1024 (systemd's parse_size)."""
    match = _SIZE.fullmatch(text)
    if not match:
        return text
    power = "_KMG".index((match.group(2) or "_").upper())
    return int(match.group(1)) << (10 * power)


def _ip(text: str) -> Scalar:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _prefix(text: str) -> Scalar:
    """An address with prefix length; a bare address is a host route (/32 or /128)."""
    try:
        return str(ipaddress.ip_interface(text))
    except ValueError:
        return text


def _mac(text: str) -> Scalar:
    return text.lower() if re.fullmatch(r"[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}", text) else text


def _text(text: str) -> Scalar:
    return text


def _vlans(text: str) -> Scalar:
    """A VLAN id or inclusive range; "100-100" is "100"."""
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", text)
    if not match:
        return text
    lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
    return str(lo) if lo == hi else f"{lo}-{hi}"


@dataclass(frozen=True)
class KeyType:
    convert: Callable[[str], Scalar]
    shape: Shape = Shape.SCALAR


_B = KeyType(_bool)
_S = KeyType(_seconds)
_I = KeyType(_int)
_IP = KeyType(_ip)
_MAC = KeyType(_mac)
_WORDS = KeyType(_text, Shape.ORDERED)
_DEVICES = KeyType(_text, Shape.UNORDERED)

#: Keys whose meaning is the same in every section they appear in.
_BY_KEY: Mapping[str, KeyType] = {
    "MACAddress": _MAC,
    "MTUBytes": KeyType(_bytes),
    "TTL": _I,
    "VNI": _I,
    "Id": _I,
    "Metric": _I,
    "Table": KeyType(_table),
    "Priority": _I,
    "Cost": _I,
    "PVID": _I,
    "DefaultPVID": _I,
    "DestinationPort": _I,
    "MinLinks": _I,
    "GratuitousARP": _I,
    "PacketsPerSlave": _I,
    "ResendIGMP": _I,
    "RouteMetric": _I,
    "Local": _IP,
    "Remote": _IP,
    "Group": _IP,
    "PreferredSource": _IP,
    # Booleans (a key not listed here is compared as text, so an omission shows up as a
    # difference, never as a false match).
    "STP": _B,
    "VLANFiltering": _B,
    "MacLearning": _B,
    "Independent": _B,
    "AllSlavesActive": _B,
    "PrimarySlave": _B,
    "GatewayOnLink": _B,
    "IPv6AcceptRA": _B,
    "ConfigureWithoutCarrier": _B,
    "RequiredForOnline": _B,
    "UseMTU": _B,
    "UseDNS": _B,
    "UseRoutes": _B,
    "ReceiveChecksumOffload": _B,
    "TransmitChecksumOffload": _B,
    "TCPSegmentationOffload": _B,
    "TCP6SegmentationOffload": _B,
    "GenericSegmentationOffload": _B,
    "GenericReceiveOffload": _B,
    "LargeReceiveOffload": _B,
    # Time spans.
    "ForwardDelaySec": _S,
    "HelloTimeSec": _S,
    "MaxAgeSec": _S,
    "AgeingTimeSec": _S,
    "MIIMonitorSec": _S,
    "ARPIntervalSec": _S,
    "UpDelaySec": _S,
    "DownDelaySec": _S,
    "LearnPacketIntervalSec": _S,
    # Lists.
    "DNS": KeyType(_ip, Shape.ORDERED),
    "Domains": _WORDS,
    "NTP": _WORDS,
    "NamePolicy": _WORDS,
    "AlternativeNamesPolicy": _WORDS,
    "AlternativeName": _WORDS,
    "ARPIPTargets": KeyType(_ip, Shape.UNORDERED),
    "VLAN": _DEVICES,
    "VXLAN": _DEVICES,
    "Tunnel": _DEVICES,
    "MACVLAN": _DEVICES,
    "MACVTAP": _DEVICES,
    "IPVLAN": _DEVICES,
}

#: Keys whose meaning depends on the section.
_BY_SECTION: Mapping[tuple[str, str], KeyType] = {
    ("Match", "Name"): _DEVICES,
    ("Match", "OriginalName"): _DEVICES,
    ("Match", "MACAddress"): KeyType(_mac, Shape.UNORDERED),
    ("Match", "PermanentMACAddress"): KeyType(_mac, Shape.UNORDERED),
    ("Match", "Driver"): _DEVICES,
    ("Match", "Path"): _DEVICES,
    ("Match", "Type"): _DEVICES,
    # Every Address= and Gateway= in [Network] is one more address or default route. The
    # order of addresses matters (the first IPv4 address of a subnet becomes primary).
    ("Network", "Address"): KeyType(_prefix, Shape.ORDERED),
    ("Network", "Gateway"): KeyType(_ip, Shape.UNORDERED),
    ("Route", "Gateway"): _IP,
    ("Route", "Destination"): KeyType(_prefix),
    ("Route", "Source"): KeyType(_prefix),
    ("Address", "Address"): KeyType(_prefix),
    ("BridgeFDB", "Destination"): _IP,
    ("BridgeVLAN", "VLAN"): KeyType(_vlans),
    ("BridgeVLAN", "EgressUntagged"): KeyType(_vlans),
    ("Link", "WakeOnLan"): _DEVICES,
}


def key_type(section: str, key: str) -> KeyType:
    return _BY_SECTION.get((section, key)) or _BY_KEY.get(key) or KeyType(_text)


# --- meaning -------------------------------------------------------------------------


def _show(value: Value) -> str:
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value) if value else "(empty list)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@dataclass(frozen=True)
class Section:
    """One section after systemd's rules: each key once, with its final, normalised value."""

    name: str
    entries: tuple[tuple[str, Value], ...]  # sorted by key

    def get(self, key: str) -> Value | None:
        return dict(self.entries).get(key)

    def without(self, *keys: str) -> Section:
        return Section(self.name, tuple((k, v) for k, v in self.entries if k not in keys))

    def replaced(self, key: str, value: Value) -> Section:
        return Section(self.name, tuple(sorted({**dict(self.entries), key: value}.items())))

    def render(self) -> str:
        body = ", ".join(f"{k}={_show(v)}" for k, v in self.entries)
        return f"[{self.name}] {body}"


def resolve(name: str, assignments: Iterable[tuple[str, str]]) -> Section:
    """Apply last-wins, accumulation and empty-resets to one section's assignments."""
    values: dict[str, Value] = {}
    for key, text in assignments:
        kind = key_type(name, key)
        if kind.shape is Shape.SCALAR:
            values[key] = kind.convert(text)
            continue
        if text == "":
            values[key] = ()
            continue
        old = values.get(key, ())
        assert isinstance(old, tuple)
        values[key] = (*old, *(kind.convert(item) for item in text.split()))
    entries: list[tuple[str, Value]] = []
    for key, value in sorted(values.items()):
        if value == ():  # an emptied list sets nothing
            continue
        unordered = isinstance(value, tuple) and key_type(name, key).shape is Shape.UNORDERED
        entries.append(
            (key, tuple(sorted(value, key=str)) if isinstance(value, tuple) and unordered else value)
        )
    return Section(name, tuple(entries))


class Kind(Enum):
    NETDEV = "netdev"
    NETWORK = "network"
    LINK = "link"


@dataclass(frozen=True)
class Unit:
    """One networkd/udev file by meaning: its kind, what it configures, and its sections."""

    kind: Kind
    identity: str  # "br0" for a .netdev; the rendered [Match] for .network and .link
    sections: tuple[Section, ...] = ()  # sorted, empty sections dropped

    @property
    def label(self) -> str:
        return f".{self.kind.value} {self.identity}"

    def named(self, name: str) -> list[Section]:
        return [s for s in self.sections if s.name == name]

    def with_sections(self, sections: Iterable[Section]) -> Unit:
        return Unit(self.kind, self.identity, _canonical(sections))


def _canonical(sections: Iterable[Section]) -> tuple[Section, ...]:
    return tuple(sorted((s for s in sections if s.entries), key=lambda s: (s.name, s.render())))


def unit(kind: Kind, text: str, source: str = "<text>") -> Unit:
    """Parse and normalise one file of `kind`."""
    merged: dict[str, list[tuple[str, str]]] = {}
    sections: list[Section] = []
    for raw in parse(text, source):
        if raw.name in PER_OBJECT_SECTIONS:
            sections.append(resolve(raw.name, raw.assignments))
        else:
            merged.setdefault(raw.name, []).extend(raw.assignments)
    sections.extend(resolve(name, assignments) for name, assignments in merged.items())
    canonical = _canonical(sections)
    if kind is Kind.NETDEV:
        netdev = [s for s in canonical if s.name == "NetDev"]
        name = netdev[0].get("Name") if netdev else None
        if not isinstance(name, str):
            raise IniError(f"{source}: a .netdev needs [NetDev] Name=")
        identity = name
    else:
        match = [s for s in canonical if s.name == "Match"]
        if not match:
            raise IniError(f"{source}: a .{kind.value} without [Match] matches every device")
        identity = match[0].render().removeprefix("[Match] ")
    return Unit(kind, identity, canonical)


UnitKey = tuple[Kind, str]
Units = dict[UnitKey, Unit]


def units(files: Mapping[str, str]) -> Units:
    """Normalise a set of files (name -> text); names only give the kind (by suffix).

    Two files that configure the same thing would be ambiguous (systemd applies only the
    first by name), so that is an error here rather than something to compare.
    """
    out: Units = {}
    for name, text in sorted(files.items()):
        suffix = name.rsplit(".", 1)[-1]
        try:
            kind = Kind(suffix)
        except ValueError:
            raise IniError(f"{name}: not a .netdev, .network or .link file") from None
        parsed = unit(kind, text, name)
        key = (kind, parsed.identity)
        if key in out:
            raise IniError(f"{name}: configures {parsed.label} again")
        out[key] = parsed
    return out


# --- differences ---------------------------------------------------------------------


def differences(left: Units, right: Units, left_name: str = "left", right_name: str = "right") -> list[str]:
    """Every difference in meaning, one readable line each (empty when equivalent)."""
    lines: list[str] = []
    for key in sorted(left.keys() | right.keys(), key=lambda k: (k[1], k[0].value)):
        a, b = left.get(key), right.get(key)
        if a is None or b is None:
            only, present, absent = (b, right_name, left_name) if a is None else (a, left_name, right_name)
            assert only is not None
            lines.append(f"{only.label}: only {present} writes it ({absent} writes no such file)")
            continue
        lines.extend(f"{a.label}: {line}" for line in _unit_differences(a, b, left_name, right_name))
    return lines


#: Keys that say *which* object a per-object section is, to pair two versions of it.
_ANCHORS: Mapping[str, tuple[str, ...]] = {
    "Route": ("Destination", "Table"),
    "Address": ("Address",),
    "BridgeFDB": ("MACAddress", "Destination"),
    "RoutingPolicyRule": ("From", "To", "Table"),
}


def _key_differences(
    prefix: str, one: Mapping[str, Value], two: Mapping[str, Value], names: tuple[str, str]
) -> list[str]:
    return [
        f"{prefix} {key}: {names[0]} {_maybe(one.get(key))}, {names[1]} {_maybe(two.get(key))}"
        for key in sorted(one.keys() | two.keys())
        if one.get(key) != two.get(key)
    ]


def _unit_differences(a: Unit, b: Unit, left_name: str, right_name: str) -> list[str]:
    names = (left_name, right_name)
    lines: list[str] = []
    for name in sorted({s.name for s in a.sections} | {s.name for s in b.sections}):
        mine, theirs = a.named(name), b.named(name)
        if name not in PER_OBJECT_SECTIONS and len(mine) <= 1 and len(theirs) <= 1:
            one = dict(mine[0].entries) if mine else {}
            two = dict(theirs[0].entries) if theirs else {}
            lines.extend(_key_differences(f"[{name}]", one, two, names))
            continue
        extra = Counter(mine)
        extra.subtract(Counter(theirs))
        left = [s for s, n in extra.items() for _ in range(max(n, 0))]
        right = [s for s, n in extra.items() for _ in range(max(-n, 0))]
        anchors = _ANCHORS.get(name, ())

        def anchor(section: Section, anchors: tuple[str, ...] = anchors) -> tuple[Value | None, ...]:
            return tuple(section.get(k) for k in anchors)

        for section in list(left):
            twins = [t for t in right if anchors and anchor(t) == anchor(section)]
            if len(twins) == 1 and sum(anchor(s) == anchor(section) for s in left) == 1:
                left.remove(section)
                right.remove(twins[0])
                where = ", ".join(
                    f"{k}={_show(v)}" for k, v in zip(anchors, anchor(section), strict=True) if v is not None
                )
                lines.extend(
                    _key_differences(
                        f"[{name}] ({where})", dict(section.entries), dict(twins[0].entries), names
                    )
                )
        lines.extend(f"{s.render()}: only {left_name} has it" for s in sorted(left, key=Section.render))
        lines.extend(f"{s.render()}: only {right_name} has it" for s in sorted(right, key=Section.render))
    return lines


def _maybe(value: Value | None) -> str:
    return "does not set it" if value is None else repr(_show(value))
