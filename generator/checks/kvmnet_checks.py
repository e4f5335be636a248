"""kvmnet's checks, shared by the generated suites in this directory.

Each test_host_<host>.py and test_guest_<guest>.py loads its expected state (the JSON
file next to it, written from the profile by `kvmnet build`) and calls the checks below
on testinfra's `host`, so one suite runs locally, over SSH, through an Ansible inventory
or inside a network namespace. Checks read the machine with the standard tools (ip,
bridge, tc, ethtool, /proc, /sys) and never change it. A failure names the device and
both values:

    eno1: MTU expected 9000, found 1500

What a machine cannot show is skipped with the reason (a device this kernel cannot
create, a veth standing in for a virtio NIC, a reboot still pending), never passed.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple, NoReturn, TypedDict, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
#: What a tool printed as JSON (`ip -j`, `tc -j`, `bridge -j`): read by key, as iproute2 names them.
Entry = dict[str, Any]


# --- the expected state ----------------------------------------------------------------
# The schema of host_<host>.json and guest_<guest>.json. kvmnet writes them with these types
# (generator/renderers/expected.py) and the checks below read them with the same ones, so
# mypy --strict finds a key renamed on one side only. A key that is not required appears
# only where the machine has something to check. (Required keys come from a base class
# rather than typing.NotRequired, which needs Python 3.11 on the machine under test.)

#: `netns`: a network namespace shows it; `machine`: only the whole machine does.
Scope = Literal["netns", "machine"]


class LinkMatch(TypedDict, total=False):
    """How networkd finds a device that has no fixed name (its [Match] section)."""

    name: str
    mac: str


class LinkMaster(TypedDict):
    name: str
    kind: str
    needs: list[str]


class LinkVlan(TypedDict):
    id: int
    link: str


class _LinkVxlan(TypedDict):
    vni: int


class LinkVxlan(_LinkVxlan, total=False):
    local: str
    remote: str
    group: str
    port: int


class LinkGre(TypedDict, total=False):
    local: str
    remote: str
    ttl: int


class _LinkBridge(TypedDict):
    vlan_filtering: bool


class LinkBridge(_LinkBridge, total=False):
    stp: bool
    default_pvid: int


class PortVlans(TypedDict):
    vlans: list[str]
    pvid: int | None
    untagged: list[str]


class Offload(TypedDict):
    """One offload setting of a NIC's .link file, as `ethtool -k` shows its effect."""

    setting: str  # the .link key (TCPSegmentationOffload)
    features: list[str]  # the lines of `ethtool -k` it sets (tx-tcp-segmentation)
    on: bool


class FdbEntry(TypedDict):
    """A static forwarding entry of a VXLAN device: frames for `mac` go to VTEP `dst`."""

    mac: str
    dst: str


class _LinkRoute(TypedDict):
    destination: str  # a network, `0.0.0.0/0` / `::/0` for a default route


class LinkRoute(_LinkRoute, total=False):
    """A route networkd adds for the device: a `[Route]`, or `Gateway=` (a default route)."""

    gateway: str
    metric: int
    table: int
    type: str  # only when not unicast (blackhole, unreachable...): such routes have no device


class LinkDns(TypedDict):
    """The device's `DNS=` and `Domains=`, which only systemd-resolved reads."""

    servers: list[str]
    domains: list[str]


class Resolver(TypedDict):
    """systemd-resolved serves the host (it has nameservers): active, resolv.conf its stub."""

    unit: str
    resolv_conf: str
    stub: str  # where resolv_conf leads (`readlink -f`)


class _Link(TypedDict):
    id: str
    name: str | None
    kind: str
    mtu: int


class Link(_Link, total=False):
    """A device of a host: its own, or the tap of one of its guests."""

    match: LinkMatch
    mac: str
    guest: str
    needs: list[str]
    master: LinkMaster
    addresses: list[str]
    vlan: LinkVlan
    vxlan: LinkVxlan
    gre: LinkGre
    bridge: LinkBridge
    port_vlans: PortVlans
    offloads: list[Offload]
    fdb: list[FdbEntry]
    routes: list[LinkRoute]
    dns: LinkDns


class QdiscHandle(TypedDict):
    kind: str
    handle: str
    module: str | None  # None: built into every kernel (pfifo, bfifo)


class QdiscLeaf(QdiscHandle):
    parent: str  # the shaper's class it hangs under ("10:1", "20:10")


class QdiscPerQueue(TypedDict):
    """A plain qdisc on a multiqueue device: one under each TX queue N of the mq root
    (parent `<mq>N`, N in hex); a device with one TX queue has it at the root instead."""

    kind: str
    mq: str
    module: str | None


class _QdiscRate(TypedDict):
    kind: str
    rate: int


# An htb shaper's class and ceil (`class` is a keyword: only this syntax can name the key).
_QdiscHtb = TypedDict("_QdiscHtb", {"class": str, "ceil": int}, total=False)


class QdiscRate(_QdiscRate, _QdiscHtb):
    """The shaper: tbf, or htb with one class."""


class QdiscPolice(TypedDict):
    rate: int  # bit/s
    burst: int  # bytes
    mtu: int  # bytes: the largest packet that can conform
    needs: list[str]


class _Qdisc(TypedDict):
    device: str
    engine: str


class Qdisc(_Qdisc, total=False):
    """The traffic control kvmnet sets on one device of a host."""

    root: QdiscHandle
    per_queue: QdiscPerQueue
    rate: QdiscRate
    leaf: QdiscLeaf
    police: QdiscPolice
    unit: str


class _Sysctl(TypedDict):
    key: str
    value: str
    scope: Scope


class Sysctl(_Sysctl, total=False):
    optional: bool


class Module(TypedDict):
    name: str
    why: str


class Argument(TypedDict):
    argument: str


class Opening(TypedDict):
    """What firewalld must let in for the host's tunnels (EL9): a port or a protocol."""

    kind: Literal["port", "protocol"]
    value: str  # "4789/udp", "gre"
    name: str  # test id: "4789/udp"


class User(TypedDict):
    name: str
    shell: str
    groups: list[str]
    ssh_keys: list[str]
    sudoers: str | None  # the file of its sudo rule, None without one
    sudo_rule: str | None


class Package(TypedDict):
    name: str
    manager: Literal["dpkg", "rpm"]


class Network(TypedDict):
    name: str
    uri: str


class Libvirt(TypedDict):
    uri: str
    units: list[str]


class HostState(TypedDict):
    generated: str
    machine: str
    role: Literal["host"]
    links: list[Link]
    qdiscs: list[Qdisc]
    sysctls: list[Sysctl]
    modules: list[Module]
    cmdline: list[Argument]
    reboot_marker: str
    resolver: Resolver | None
    firewall: list[Opening]
    users: list[User]
    packages: list[Package]
    libvirt: Libvirt
    networks: list[Network]


class _Nic(TypedDict):
    name: str
    mac: str
    model: str
    mtu: int
    dhcp4: bool
    ipv6: str


class Nic(_Nic, total=False):
    """A NIC of a guest, found by its MAC address."""

    addresses: list[str]
    channels: int
    rx_ring: int


class GuestState(TypedDict):
    generated: str
    machine: str
    role: Literal["guest"]
    hypervisor: str
    vcpus: int
    nics: list[Nic]
    sysctls: list[Sysctl]


def load_host(name: str) -> HostState:
    """A host's expected state: `name`, a JSON file next to this one."""
    data: HostState = json.loads((HERE / name).read_text(encoding="utf-8"))
    return data


def load_guest(name: str) -> GuestState:
    """A guest's expected state: `name`, a JSON file next to this one."""
    data: GuestState = json.loads((HERE / name).read_text(encoding="utf-8"))
    return data


# --- test parameters -------------------------------------------------------------------

E = TypeVar("E", bound=Mapping[str, object])


def label(entry: Mapping[str, object]) -> str:
    """How a test id names an entry: its device, sysctl, module or argument."""
    for key in ("name", "key", "device", "argument"):
        if entry.get(key):
            return str(entry[key])
    return str(entry["id"])


def having(key: str, entries: list[E]) -> list[E]:
    """The entries that have `key`: the devices with addresses, the shaped qdiscs..."""
    return [entry for entry in entries if key in entry]


def scoped(entries: list[Sysctl]) -> list[Any]:
    """Entries as test parameters, each marked with its own scope (`netns` or `machine`)."""
    return [pytest.param(e, marks=getattr(pytest.mark, e["scope"]), id=label(e)) for e in entries]


def check_id(item: pytest.Item) -> str:
    """A readable id for a result: the test and what it checked, without testinfra's host."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    labels = [label(v) for k, v in params.items() if k != "_testinfra_host" and isinstance(v, dict)]
    name = getattr(item, "originalname", item.name)
    return f"{name}[{', '.join(labels)}]" if labels else name


def fail(subject: str, what: str, expected: object, found: object) -> NoReturn:
    """`eno1: MTU expected 9000, found 1500`."""
    pytest.fail(f"{subject}: {what} expected {expected}, found {found}", pytrace=False)


def expect(subject: str, what: str, expected: object, found: object) -> None:
    if found != expected:
        fail(subject, what, expected, found)


def skip(subject: str, reason: str) -> NoReturn:
    pytest.skip(f"{subject}: {reason}")


# --- formatting ------------------------------------------------------------------------


def rate_text(bits: int) -> str:
    """A rate as tc and the profile write it: 200000000 -> `200Mbit`."""
    for unit, size in (("Tbit", 10**12), ("Gbit", 10**9), ("Mbit", 10**6), ("Kbit", 10**3)):
        if bits >= size and bits % size == 0:
            return f"{bits // size}{unit}"
    return f"{bits}bit"


def parse_rate(text: str) -> int:
    """A rate as tc prints it, in bit/s: `2Gbit` -> 2000000000 (tc's SI units, without -iec)."""
    match = re.fullmatch(r"([0-9.]+)([KMGT]?)bit", text)
    if match is None:
        raise ValueError(f"not a tc rate: {text!r}")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match.group(2)]
    return round(float(match.group(1)) * scale)


def spans(vids: set[int]) -> str:
    """VLAN ids as ranges: {100, 200, 201} -> `100,200-201`."""
    runs: list[list[int]] = []
    for vid in sorted(vids):
        if runs and runs[-1][1] == vid - 1:
            runs[-1][1] = vid
        else:
            runs.append([vid, vid])
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in runs) or "none"


def expand(text: list[str]) -> set[int]:
    """`["100", "200-201"]` -> {100, 200, 201}."""
    vids: set[int] = set()
    for span in text:
        lo, _, hi = span.partition("-")
        vids.update(range(int(lo), int(hi or lo) + 1))
    return vids


def address(text: str) -> str:
    """An address with its prefix length, spelled one way (IPv6 compressed)."""
    return str(ipaddress.ip_interface(text))


def ip(text: object) -> str:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


# --- reading a machine -----------------------------------------------------------------

_TC_RATE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)bit$")
_TC_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


#: Debian keeps tc, bridge and ethtool in /usr/sbin and /sbin, which are not on an SSH
#: user's PATH unless it is root: look there too (seen in the VM tier as a skipped ring check).
SBIN = "PATH=$PATH:/usr/sbin:/sbin "


# --- tc's text -------------------------------------------------------------------------
# Also read by `kvmnet lab` (generator/lab/qdiscs.py): one reader of tc's state for both.


def htb_class_in(text: str, classid: str) -> dict[str, str]:
    """rate and ceil of one htb class in `tc class show` text, as tc prints them
    (`tc -j class` is text in iproute2 6.1)."""
    for line in text.splitlines():
        words = line.split()
        if words[:3] == ["class", "htb", classid]:
            return {k: words[words.index(k) + 1] for k in ("rate", "ceil") if k in words}
    return {}


class Policer(NamedTuple):
    rate: int  # bit/s
    burst: int  # bytes, as tc prints it back (rounded: see parse_size)
    mtu: int | None  # bytes; None when tc printed none


def policers_in(text: str) -> list[Policer]:
    """The police actions in `tc filter show ... ingress` text.

    From tc's text, not its JSON: iproute2 6.1 (Debian 12) leaves a police action's
    rate, burst and mtu out of `tc -j` (index, control action, overhead only; seen on a
    Debian 12 VM), while the text says `police 0x1 rate 2Gbit burst 1Mb mtu 64Kb ...`."""
    return [
        Policer(parse_rate(rate), parse_size(burst), parse_size(mtu) if mtu else None)
        for rate, burst, mtu in re.findall(
            r"\bpolice 0x[0-9a-f]+ rate (\S+) burst (\S+)(?: mtu (\S+))?", text
        )
    ]


_TC_SIZES = {"b": 1, "Kb": 1024, "Mb": 1024**2, "Gb": 1024**3}


def parse_size(text: str) -> int:
    """A size as tc prints it, in bytes: `64Kb` -> 65536. tc prints binary units, rounded
    to the nearest unit when within 16 bytes (Kb) or 1 KiB (Mb) of it (sprint_size)."""
    match = re.fullmatch(r"([0-9.]+)(b|Kb|Mb|Gb)", text)
    if match is None:
        raise ValueError(f"not a tc size: {text!r}")
    return round(float(match.group(1)) * _TC_SIZES[match.group(2)])


def size_text(size: int) -> str:
    """A size in bytes as kvmnet writes it in messages: 65536 -> `65536 bytes (64 KiB)`."""
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale and size % scale == 0:
            return f"{size} bytes ({size // scale} {unit})"
    return f"{size} bytes"


# --- ethtool's and bridge's text ----------------------------------------------------------


class Feature(NamedTuple):
    on: bool
    fixed: bool  # the driver does not let it change


def features_in(text: str) -> dict[str, Feature]:
    """The features in `ethtool -k DEV` text (`name: on|off [fixed]`, a sub-feature
    indented by a tab; `off [requested on]` when the kernel overrode a request)."""
    return {
        name: Feature(state == "on", "[fixed]" in rest)
        for name, state, rest in re.findall(r"^\t?([a-z0-9_-]+): (on|off)(.*)$", text, re.MULTILINE)
    }


def onoff(on: bool) -> str:
    return "on" if on else "off"


def offload_problem(offload: Offload, found: Mapping[str, Feature]) -> str | None:
    """What is wrong with one offload setting on a NIC whose features are `found`; None if
    nothing. A feature the driver fixes counts only when none of the setting's features can
    change: then the .link cannot take effect on this NIC, which is a failure too."""
    setting = f"{offload['setting']}={'yes' if offload['on'] else 'no'}"
    shown = {name: found[name] for name in offload["features"] if name in found}
    if not shown:
        return f"{setting}: `ethtool -k` shows none of {', '.join(offload['features'])}"
    free = {name: f for name, f in shown.items() if not f.fixed}
    wrong = {name: f for name, f in (free or shown).items() if f.on != offload["on"]}
    if not wrong:
        return None
    states = ", ".join(f"{name} {onoff(f.on)}{' [fixed]' if f.fixed else ''}" for name, f in wrong.items())
    if not free:
        return f"{setting} cannot take effect: the driver fixes {states}"
    return f"{setting}: expected {onoff(offload['on'])}, found {states}"


def fdb_in(text: str) -> set[tuple[str, str]]:
    """(MAC, VTEP) of the entries with a destination in `bridge -j fdb show dev VX`."""
    entries: list[Entry] = json.loads(text or "[]")
    return {(e["mac"].lower(), ip(e["dst"])) for e in entries if "dst" in e}


# --- routes and resolvectl --------------------------------------------------------------


class KernelRoute(NamedTuple):
    destination: str  # a network in ipaddress's spelling
    gateway: str | None
    device: str | None  # None for blackhole, unreachable, prohibit
    metric: int
    table: str  # "main", "local" or the number, as ip prints it
    type: str  # "unicast", "blackhole", "local"...


def routes_in(entries: list[Entry], version: int) -> list[KernelRoute]:
    """The routes of `ip -j -4|-6 route show table all` (iproute2 6.1): `dst` is `default`
    or a prefix (a host route without /32), `table` and `type` are left out for main and
    unicast, and an IPv4 `metric` of 0."""
    out = []
    for entry in entries:
        dst = entry.get("dst", "default")
        destination = (
            ("0.0.0.0/0" if version == 4 else "::/0")
            if dst == "default"
            else str(ipaddress.ip_network(dst, strict=False))
        )
        gateway = entry.get("gateway")
        out.append(
            KernelRoute(
                destination,
                ip(gateway) if gateway else None,
                entry.get("dev"),
                int(entry.get("metric", 0)),
                str(entry.get("table", "main")),
                str(entry.get("type", "unicast")),
            )
        )
    return out


#: The kernel's reserved route tables, as ip names them.
TABLE_NAMES = {253: "default", 254: "main", 255: "local"}


def route_text(route: LinkRoute) -> str:
    """A planned route as ip would write it: `10.0.0.0/8 via 192.0.2.254 metric 200 table 100`."""
    words = [route.get("type", ""), route["destination"]]
    if "gateway" in route:
        words += ["via", route["gateway"]]
    if "metric" in route:
        words += ["metric", str(route["metric"])]
    if "table" in route:
        words += ["table", TABLE_NAMES.get(route["table"], str(route["table"]))]
    return " ".join(w for w in words if w)


def kernel_route_text(route: KernelRoute) -> str:
    words = [route.type if route.type != "unicast" else "", route.destination]
    if route.gateway:
        words += ["via", route.gateway]
    if route.device:
        words += ["dev", route.device]
    words += ["metric", str(route.metric)]
    if route.table != "main":
        words += ["table", route.table]
    return " ".join(w for w in words if w)


def matching_routes(found: list[KernelRoute], route: LinkRoute, device: str) -> list[KernelRoute]:
    """The kernel routes that are `route` on `device` (a typed route has no device)."""
    destination = str(ipaddress.ip_network(route["destination"]))
    kind = route.get("type", "unicast")
    table = TABLE_NAMES.get(route.get("table", 254), str(route.get("table")))
    return [
        r
        for r in found
        if r.destination == destination
        and r.table == table
        and r.type == kind
        and (kind != "unicast" or r.device == device)
        and ("gateway" not in route or r.gateway == ip(route["gateway"]))
        and ("metric" not in route or r.metric == route["metric"])
    ]


def resolvectl_items(text: str) -> list[str]:
    """The values of `resolvectl dns|domain LINK` (systemd 252): `Link 2 (eno1): a b`, long
    lists wrapped onto lines indented by 8 spaces; a link with none prints `Link 2 (eno1):`."""
    items: list[str] = []
    started = False
    for line in text.splitlines():
        head = re.match(r"^Link \d+ \([^)]*\):(.*)$", line)
        if head:
            started = True
            items += head.group(1).split()
        elif started and line.startswith(" "):
            items += line.split()
        elif started:
            break
    return items


def server_address(text: str) -> str:
    """A DNS server as the profile or resolvectl spells it (`192.0.2.53`, `[2001:db8::53]:53`,
    `192.0.2.53#dns.example`), reduced to the address in ipaddress's spelling."""
    bare = text.split("#", 1)[0].split("%", 1)[0]
    if bare.startswith("["):
        bare = bare[1 : bare.index("]")]
    elif bare.count(":") == 1:
        bare = bare.split(":", 1)[0]
    return ip(bare)


class Machine:
    """One machine, read through a testinfra host. Each listing is read once per module."""

    def __init__(self, host: Any) -> None:
        self.host = host

    def output(self, command: str, *args: str) -> str:
        result = self.host.run(SBIN + command, *args)
        if result.rc != 0:
            shown = command % args if args else command
            pytest.fail(f"`{shown}` failed (exit {result.rc}): {result.stderr.strip()}", pytrace=False)
        return str(result.stdout)

    def read(self, path: str) -> str | None:
        """A file's text, or None if it does not exist."""
        result = self.host.run("cat %s", path)
        return str(result.stdout) if result.rc == 0 else None

    def exists(self, path: str) -> bool:
        return bool(self.host.file(path).exists)

    def has_command(self, name: str) -> bool:
        return bool(self.host.run(SBIN + "command -v %s", name).rc == 0)

    # network devices

    @cached_property
    def links(self) -> dict[str, Entry]:
        return {link["ifname"]: link for link in json.loads(self.output("ip -j -d link show"))}

    @cached_property
    def addresses(self) -> dict[str, list[Entry]]:
        return {a["ifname"]: a.get("addr_info", []) for a in json.loads(self.output("ip -j address show"))}

    @cached_property
    def bridge_vlans(self) -> dict[str, list[Entry]]:
        return {
            p["ifname"]: p.get("vlans", []) for p in json.loads(self.output("bridge -j vlan show") or "[]")
        }

    def find(self, entry: Link) -> Entry | None:
        """The device `entry` describes: by name, else as networkd matches it (MAC, name glob)."""
        if name := entry["name"]:
            return self.links.get(name)
        match = entry.get("match", {})
        found = [
            link
            for link in self.links.values()
            if ("mac" not in match or match["mac"] in (link.get("address"), link.get("permaddr")))
            and ("name" not in match or fnmatch.fnmatchcase(link["ifname"], match["name"]))
        ]
        return found[0] if len(found) == 1 else None

    def with_mac(self, mac: str) -> Entry | None:
        return next(
            (link for link in self.links.values() if mac in (link.get("address"), link.get("permaddr"))),
            None,
        )

    def global_addresses(self, ifname: str) -> set[str]:
        return {
            address(f"{a['local']}/{a['prefixlen']}")
            for a in self.addresses.get(ifname, [])
            if a.get("scope") == "global"
        }

    def ipv6_addresses(self, ifname: str) -> set[str]:
        return {
            f"{a['local']}/{a['prefixlen']}"
            for a in self.addresses.get(ifname, [])
            if a.get("family") == "inet6"
        }

    # traffic control

    def routes(self, version: int) -> list[KernelRoute]:
        return self._routes[version]

    @cached_property
    def _routes(self) -> dict[int, list[KernelRoute]]:
        found = {4: routes_in(json.loads(self.output("ip -j -4 route show table all") or "[]"), 4)}
        # Without an IPv6 stack (ipv6.disable=1) `ip -6` fails: there are no IPv6 routes then.
        ipv6 = self.exists("/proc/net/if_inet6")
        found[6] = []
        if ipv6:
            found[6] = routes_in(json.loads(self.output("ip -j -6 route show table all") or "[]"), 6)
        return found

    def qdiscs(self, device: str) -> list[Entry]:
        data: list[Entry] = json.loads(self.output("tc -j qdisc show dev %s", device) or "[]")
        return data

    def root_qdisc(self, device: str) -> Entry | None:
        return next((q for q in self.qdiscs(device) if q.get("root")), None)

    def tx_queues(self, device: str) -> int:
        """How many TX queues the device has now (/sys/class/net/DEV/queues/tx-N)."""
        names = self.output("ls /sys/class/net/%s/queues", device).split()
        return sum(1 for name in names if name.startswith("tx-"))

    def htb_class(self, device: str, classid: str) -> dict[str, str]:
        return htb_class_in(self.output("tc class show dev %s", device), classid)

    def police_rates(self, device: str) -> list[int]:
        return [p.rate for p in self.policers(device)]

    def policers(self, device: str) -> list[Policer]:
        return policers_in(self.output("tc filter show dev %s ingress", device))

    # kernel

    def sysctl(self, key: str) -> str | None:
        """A sysctl's value with whitespace normalised, or None if it does not exist."""
        path = key if "/" in key else key.replace(".", "/")
        text = self.read(f"/proc/sys/{path}")
        return None if text is None else " ".join(text.split())

    @cached_property
    def module_support(self) -> bool:
        """Can this kernel load modules at all (is there a /proc/modules)?"""
        return self.exists("/proc/modules")

    @cached_property
    def modules_present(self) -> set[str]:
        """Modules loaded, plus every name in /sys/module (built-ins with parameters show there)."""
        names = set(self.output("ls /sys/module").split())
        names |= {line.split()[0] for line in (self.read("/proc/modules") or "").splitlines() if line}
        release = self.output("uname -r").strip()
        for line in (self.read(f"/lib/modules/{release}/modules.builtin") or "").splitlines():
            names.add(line.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_"))
        return names

    def module_loaded(self, module: str) -> bool:
        return module.replace("-", "_") in self.modules_present

    def kernel_lacks(self, module: str) -> str | None:
        """Why this kernel cannot have `module`'s feature; None if it has it or could load it."""
        if self.module_loaded(module):
            return None
        if not self.module_support:
            return (
                f"this kernel shows no {module}: it cannot load modules (no /proc/modules) and has "
                f"no /sys/module/{module}"
            )
        if not self.has_command("modinfo") or self.host.run(SBIN + "modinfo -n %s", module).rc == 0:
            return None  # loadable: the feature is missing for some other reason
        return f"this kernel has no {module}: not loaded, not built in, and modinfo finds no such module"

    def lacking(self, modules: list[str]) -> str | None:
        return next((why for m in modules if (why := self.kernel_lacks(m))), None)

    def driver(self, link: Entry) -> str:
        """The device's driver: a virtual device's kind (veth...), else its bound driver."""
        kind = link.get("linkinfo", {}).get("info_kind")
        if kind:
            return str(kind)
        target = self.host.run("readlink %s", f"/sys/class/net/{link['ifname']}/device/driver")
        return target.stdout.strip().rsplit("/", 1)[-1] if target.rc == 0 else "none"


def info(link: Entry) -> Entry:
    data: Entry = link.get("linkinfo", {}).get("info_data", {})
    return data


# --- hosts: devices --------------------------------------------------------------------


KIND_WORDS = {
    "ether": "an ethernet",
    "tap": "a tap",
    "bond": "a bond",
    "bridge": "a bridge",
    "vlan": "a VLAN",
    "vxlan": "a VXLAN",
    "gre": "a GRE",
    "gretap": "a gretap",
}


def why_absent(machine: Machine, link: Link) -> str | None:
    """Why a missing device cannot exist on this machine; None if it should be there."""
    if link.get("guest"):
        guest = link["guest"]
        return f"the tap of guest {guest}: libvirt makes it when the guest starts, removes it when it stops"
    lack = machine.lacking(link.get("needs", []))
    return f"cannot exist on this machine: {lack}" if lack else None


def device(machine: Machine, link: Link) -> Entry:
    """The device, or skip the calling check (test_link_exists reports a missing device)."""
    found = machine.find(link)
    if found is None:
        skip(label(link), why_absent(machine, link) or "does not exist (reported by test_link_exists)")
    return found


def link_exists(machine: Machine, link: Link) -> None:
    found = machine.find(link)
    name = label(link)
    if found is None:
        if reason := why_absent(machine, link):
            skip(name, reason)
        kind = KIND_WORDS.get(link["kind"], link["kind"])
        how = "" if link.get("name") else f" matching {link['match']}"
        pytest.fail(f"{name}: expected {kind} device{how}, found none", pytrace=False)
    if link.get("mac") and link["mac"] not in (found.get("address"), found.get("permaddr")):
        bonded = found.get("linkinfo", {}).get("info_slave_kind") == "bond"
        if bonded and not found.get("permaddr"):
            # A bond gives its ports its own MAC; a real NIC still shows its burnt-in one
            # as permaddr, a veth (the lab's stand-in) has none to show.
            skip(
                name,
                "a bond port without a permanent MAC address (a veth stands in for the NIC here): "
                "its MAC is its bond's",
            )
        fail(name, "MAC address", link["mac"], found.get("permaddr") or found.get("address"))


def link_kind(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    expect(label(link), "kind", link["kind"], found.get("linkinfo", {}).get("info_kind", "none"))


def link_mtu(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    master = link.get("master")
    if master and master["kind"] == "bond" and master["name"] not in machine.links:
        # The bonding driver sets its ports' MTU: without the bond, a port keeps its own.
        why = machine.lacking(master["needs"])
        gone = (
            f"cannot exist on this machine: {why}" if why else "does not exist (reported by test_link_exists)"
        )
        skip(label(link), f"its MTU is set by its bond {master['name']}, which {gone}")
    expect(label(link), "MTU", link["mtu"], found["mtu"])


def link_master(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    master = link["master"]
    missing = found.get("master") != master["name"] and master["name"] not in machine.links
    if missing and (lack := machine.lacking(master.get("needs", []))):
        skip(label(link), f"its {master['kind']} {master['name']} cannot exist on this machine: {lack}")
    expect(label(link), "master", master["name"], found.get("master", "none"))


def link_addresses(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    have = machine.global_addresses(found["ifname"])
    want = [address(a) for a in link["addresses"]]
    if not set(want) <= have:
        fail(label(link), "addresses", ", ".join(want), ", ".join(sorted(have)) or "none")


def vlan(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    expect(label(link), "VLAN id", link["vlan"]["id"], info(found).get("id"))
    expect(label(link), "VLAN parent", link["vlan"]["link"], found.get("link", "none"))


def vxlan(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    want, data, name = link["vxlan"], info(found), label(link)
    expect(name, "VNI", want["vni"], data.get("id"))
    for key in ("local", "remote", "group"):
        if key in want:
            expect(name, f"VXLAN {key}", ip(want[key]), ip(data.get(key, "none")))
    if "port" in want:
        expect(name, "VXLAN UDP port", want["port"], data.get("port"))


def vxlan_fdb(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    have = fdb_in(machine.output("bridge -j fdb show dev %s", found["ifname"]))
    want = {(e["mac"].lower(), ip(e["dst"])) for e in link["fdb"]}
    bridge = machine.links.get(found.get("master", ""))
    if not want <= have and link.get("port_vlans") and bridge and (why := no_vlan_filtering(bridge)):
        # networkd stops configuring a bridge port whose VLANs the kernel refuses, before
        # it adds the port's [BridgeFDB] entries: they cannot be here
        skip(label(link), why)
    if not want <= have:

        def shown(entries: set[tuple[str, str]]) -> str:
            return ", ".join(f"{mac} dst {dst}" for mac, dst in sorted(entries)) or "none"

        fail(label(link), "FDB entries", shown(want), shown(have))


def link_offloads(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    name = found["ifname"]
    if not machine.has_command("ethtool"):
        skip(name, "ethtool is not installed here: offloads cannot be read")
    features = features_in(machine.output("ethtool -k %s", name))
    problems = [p for o in link["offloads"] if (p := offload_problem(o, features))]
    if problems:
        pytest.fail(f"{label(link)}: {'; '.join(problems)}", pytrace=False)


def gre(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    want, data, name = link["gre"], info(found), label(link)
    for key in ("local", "remote"):
        if key in want:
            expect(name, f"tunnel {key}", ip(want[key]), ip(data.get(key, "none")))
    if "ttl" in want:
        expect(name, "TTL", want["ttl"], data.get("ttl"))


def bridge_stp(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    state = "on" if info(found).get("stp_state") else "off"
    expect(label(link), "STP", "on" if link["bridge"]["stp"] else "off", state)


def no_vlan_filtering(bridge: Entry) -> str | None:
    """Why this kernel's bridge cannot filter VLANs (iproute2 shows vlan_protocol only if it can)."""
    if "vlan_protocol" in info(bridge):
        return None
    return (
        f"this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING): "
        f"{bridge['ifname']} reports no vlan_protocol"
    )


def vlan_filtering(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    want, data, name = link["bridge"], info(found), label(link)
    if want["vlan_filtering"] and (why := no_vlan_filtering(found)):
        skip(name, why)
    expect(
        name,
        "VLAN filtering",
        "on" if want["vlan_filtering"] else "off",
        "on" if data.get("vlan_filtering") else "off",
    )
    if "default_pvid" in want:
        expect(name, "default PVID", want["default_pvid"], data.get("vlan_default_pvid"))


def port_vlans(machine: Machine, link: Link) -> None:
    found = device(machine, link)
    name = label(link)
    is_bridge = found.get("linkinfo", {}).get("info_kind") == "bridge"
    bridge = found if is_bridge else machine.links.get(found.get("master", ""))
    if bridge is None:
        skip(name, "not a port of any bridge here (reported by test_master)")
    if why := no_vlan_filtering(bridge):
        skip(name, why)
    want = link["port_vlans"]
    vids = expand(want["vlans"])
    seen: set[int] = set()
    untagged: set[int] = set()
    pvid = None
    for entry in machine.bridge_vlans.get(found["ifname"], []):
        span = set(range(int(entry["vlan"]), int(entry.get("vlanEnd") or entry["vlan"]) + 1))
        seen |= span
        if "PVID" in entry.get("flags", []):
            pvid = int(entry["vlan"])
        if "Egress Untagged" in entry.get("flags", []):
            untagged |= span
    default = info(bridge).get("vlan_default_pvid") or 0
    if default and default not in vids:
        # The kernel puts every new port in the bridge's default PVID by itself: not a VLAN
        # kvmnet asked for, so not one to report.
        seen.discard(default)
        untagged.discard(default)
        pvid = None if pvid == default else pvid
    expect(name, "VLANs", spans(vids), spans(seen))
    expect(name, "PVID", want["pvid"] or "none", pvid or "none")
    expect(name, "untagged VLANs", spans(expand(want["untagged"])), spans(untagged))


# --- hosts: traffic control ------------------------------------------------------------


def shaped_device(machine: Machine, qdisc: Qdisc) -> str:
    device = qdisc["device"]
    if device not in machine.links:
        skip(device, "does not exist (reported by test_link_exists)")
    return str(device)


def lacks(machine: Machine, module: str | None) -> str | None:
    """Why this machine cannot have a qdisc of `module` (None: built in, or it can)."""
    return None if module is None else machine.kernel_lacks(module)


def root_qdisc(machine: Machine, qdisc: Qdisc) -> None:
    device = shaped_device(machine, qdisc)
    want = qdisc["root"]
    planned, handle, module = want["kind"], want["handle"], want["module"]
    if "per_queue" in qdisc and machine.tx_queues(device) > 1:
        # Several TX queues: the unit keeps mq at the root (test_per_queue_qdiscs checks under it).
        planned, handle, module = "mq", qdisc["per_queue"]["mq"], None
    root = machine.root_qdisc(device)
    kind = root["kind"] if root else "none"
    if kind != planned and (lack := lacks(machine, module)):
        skip(device, f"root qdisc {planned} cannot be set on this machine: {lack}")
    expect(device, "root qdisc", f"{planned} {handle}", f"{kind} {root['handle'] if root else ''}".strip())


def per_queue_qdiscs(machine: Machine, qdisc: Qdisc) -> None:
    device = shaped_device(machine, qdisc)
    want = qdisc["per_queue"]
    queues = machine.tx_queues(device)
    if queues <= 1:  # one queue: the unit sets the qdisc at the root, which is its one queue's
        root = machine.root_qdisc(device)
        kind = root["kind"] if root else "none"
        if kind != want["kind"] and (lack := lacks(machine, want["module"])):
            skip(device, f"{want['kind']} cannot be set on this machine: {lack}")
        expect(device, "qdisc of its one TX queue (the root)", want["kind"], kind)
        return
    by_parent = {q.get("parent"): q.get("kind", "none") for q in machine.qdiscs(device)}
    parents = [f"{want['mq']}{n:x}" for n in range(1, queues + 1)]
    found = [by_parent.get(parent, "none") for parent in parents]
    if any(kind != want["kind"] for kind in found) and (lack := lacks(machine, want["module"])):
        skip(device, f"{want['kind']} cannot be set on this machine: {lack}")
    wrong = [f"{parent} {kind}" for parent, kind in zip(parents, found, strict=True) if kind != want["kind"]]
    if wrong:
        fail(device, f"qdisc under each of {queues} TX queues", want["kind"], ", ".join(wrong))


def shaping_rate(machine: Machine, qdisc: Qdisc) -> None:
    device = shaped_device(machine, qdisc)
    want = qdisc["rate"]
    root = machine.root_qdisc(device)
    if root is None or root["kind"] != want["kind"]:
        skip(device, f"no {want['kind']} root qdisc to read a rate from (reported by test_root_qdisc)")
    if want["kind"] == "tbf":
        expect(
            device, "root qdisc rate", rate_text(want["rate"]), rate_text(int(root["options"]["rate"]) * 8)
        )
        return
    found = machine.htb_class(device, want["class"])
    for key in ("rate", "ceil"):
        text = found.get(key, "none")
        if not tc_rate_matches(text, want[key]):
            fail(device, f"htb class {want['class']} {key}", rate_text(want[key]), text)


def tc_rate_matches(text: str, bits: int) -> bool:
    """tc prints a rate in the largest unit it divides evenly (or truncated above 1000 units)."""
    match = _TC_RATE.match(text)
    if not match:
        return False
    unit = _TC_UNITS[match.group(2)]
    return bits // unit == int(float(match.group(1))) and (bits % unit == 0 or bits >= 1000 * unit)


def leaf_qdisc(machine: Machine, qdisc: Qdisc) -> None:
    device = shaped_device(machine, qdisc)
    want = qdisc["leaf"]
    leaf = next((q for q in machine.qdiscs(device) if q.get("handle") == want["handle"]), None)
    kind = leaf["kind"] if leaf else "none"
    if kind != want["kind"] and (lack := lacks(machine, want["module"])):
        skip(device, f"qdisc {want['kind']} under the shaper cannot be set on this machine: {lack}")
    expect(device, f"qdisc {want['handle']}", want["kind"], kind)
    # Under the shaper's class: anywhere else the shaper's own FIFO still queues.
    expect(device, f"qdisc {want['handle']} parent", want["parent"], (leaf or {}).get("parent", "none"))


def ingress_policing(machine: Machine, qdisc: Qdisc) -> None:
    device = shaped_device(machine, qdisc)
    want = qdisc["police"]
    policers = machine.policers(device)  # one `tc filter show` for rate, mtu and burst
    rates = [p.rate for p in policers]
    has_ingress = any(q.get("kind") == "ingress" for q in machine.qdiscs(device))
    needs = [m for m in want["needs"] if not (has_ingress and m == "sch_ingress")]
    if not rates and (lack := machine.lacking(needs)):
        skip(device, f"ingress policing cannot be set on this machine: {lack}")
    found = ", ".join(rate_text(r) for r in rates) or "none"
    expect(device, "ingress police rate", rate_text(want["rate"]), found)
    # The policer's mtu: without it the kernel caps conforming packets at 2040 bytes and
    # drops every jumbo frame (the device's MTU is above that on kvmnet's underlays).
    mtus = [p.mtu for p in policers]
    expect(
        device,
        "ingress police mtu",
        size_text(want["mtu"]),
        ", ".join("none" if m is None else size_text(m) for m in mtus) or "none",
    )
    # tc prints the burst back from the kernel's token time, rounded: within 1 %.
    bursts = [p.burst for p in policers]
    if not bursts or any(abs(b - want["burst"]) > want["burst"] // 100 for b in bursts):
        fail(device, "ingress police burst", size_text(want["burst"]), ", ".join(map(size_text, bursts)))


# --- hosts: kernel and services --------------------------------------------------------


def sysctl(machine: Machine, entry: Sysctl) -> None:
    key = entry["key"]
    found = machine.sysctl(key)
    if found is None and entry.get("optional"):
        skip(
            key, "does not exist here, and is written with systemd-sysctl's '-' prefix: skipped when missing"
        )
    expect(key, "value", " ".join(entry["value"].split()), "no such sysctl" if found is None else found)


def module_loaded(machine: Machine, module: Module) -> None:
    name = module["name"]
    if machine.module_loaded(name):
        return
    if not machine.module_support:
        skip(name, f"cannot tell: the kernel cannot load modules (no /proc/modules), no /sys/module/{name}")
    fail(name, "kernel module", "loaded", "not loaded")


def kernel_argument(machine: Machine, argument: Argument, marker: str) -> None:
    arg = argument["argument"]
    running = (machine.read("/proc/cmdline") or "").split()
    if arg in running:
        return
    if machine.exists(marker):
        skip(arg, f"not on the running kernel's command line yet: a reboot is pending ({marker} exists)")
    fail("kernel command line", "argument", arg, " ".join(running) or "nothing")


def unit_enabled(machine: Machine, qdisc: Qdisc) -> None:
    unit = qdisc["unit"]
    if not machine.has_command("systemctl"):
        skip(unit, "systemctl is not installed: this machine has no systemd")
    state = machine.host.run("systemctl is-enabled %s", unit).stdout.strip()
    expect(unit, "unit", "enabled", state or "not found")


def unit_active(machine: Machine, qdisc: Qdisc) -> None:
    """Enabled is not applied: the oneshot unit (RemainAfterExit=yes) stays active only
    when its tc commands succeeded; a failed run leaves it `failed`."""
    unit = qdisc["unit"]
    if not machine.has_command("systemctl"):
        skip(unit, "systemctl is not installed: this machine has no systemd")
    state = machine.host.run("systemctl is-active %s", unit).stdout.strip()
    expect(unit, "unit", "active", state or "not found")


# --- access and the virtualization stack -----------------------------------------------


def passwd_entry(machine: Machine, name: str) -> list[str] | None:
    result = machine.host.run("getent passwd %s", name)
    return str(result.stdout).strip().split(":") if result.rc == 0 else None


def user_exists(machine: Machine, user: User) -> None:
    """The user exists, with its shell and (at least) its groups."""
    entry = passwd_entry(machine, user["name"])
    if entry is None:
        fail(user["name"], "account", "present", "missing")
    expect(user["name"], "shell", user["shell"], entry[6])
    groups = set(machine.output("id -nG %s", user["name"]).split())
    missing = [g for g in user["groups"] if g not in groups]
    if missing:
        fail(user["name"], "groups", ", ".join(user["groups"]), ", ".join(sorted(groups)))


def user_keys(machine: Machine, user: User) -> None:
    """Every key of the user is in its authorized_keys, which only it can read or change."""
    entry = passwd_entry(machine, user["name"])
    if entry is None:
        skip(user["name"], "no such user (reported by test_user_exists)")
    path = f"{entry[5].rstrip('/')}/.ssh/authorized_keys"
    text = machine.read(path)
    if text is None:
        fail(user["name"], path, "present", "missing")
    lines = {line.strip() for line in text.splitlines()}
    missing = [key.split()[-1] for key in user["ssh_keys"] if key not in lines]
    if missing:
        fail(user["name"], f"keys in {path}", "all of the profile's", f"missing {', '.join(missing)}")
    mode = machine.output("stat -c %s %s", "%a %U", path).strip()
    expect(user["name"], f"mode and owner of {path}", f"600 {user['name']}", mode)


def user_sudo(machine: Machine, user: User) -> None:
    """The user's sudo rule is in place (sudoers.d, mode 0440)."""
    path, rule = user["sudoers"], user["sudo_rule"]
    assert path is not None and rule is not None
    text = machine.read(path)
    if text is None:
        fail(user["name"], "sudo rule", path, "missing")
    expect(
        user["name"],
        f"rule in {path}",
        rule,
        next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "none"),
    )
    expect(user["name"], f"mode of {path}", "440", machine.output("stat -c %s %s", "%a", path).strip())


def package_installed(machine: Machine, package: Package) -> None:
    name = package["name"]
    if package["manager"] == "rpm":
        found = machine.host.run("rpm -q %s", name).rc == 0
    else:
        status = machine.host.run("dpkg-query -W -f %s %s", "${db:Status-Status}", name)
        found = status.rc == 0 and status.stdout.strip() == "installed"
    expect(name, "package", "installed", "installed" if found else "not installed")


def libvirt_answers(machine: Machine, libvirt: Libvirt) -> None:
    """libvirt's daemon answers on its URI (libvirtd, or EL9's socket-activated virtqemud)."""
    if not machine.has_command("virsh"):
        fail(libvirt["uri"], "virsh", "installed", "missing")
    result = machine.host.run("virsh -c %s uri", libvirt["uri"])
    expect(libvirt["uri"], "libvirt", "answering", "answering" if result.rc == 0 else result.stderr.strip())


def libvirt_network(machine: Machine, network: Network) -> None:
    """The generated network is defined, active and autostarted."""
    result = machine.host.run("virsh -c %s net-info %s", network["uri"], network["name"])
    if result.rc != 0:
        fail(network["name"], "libvirt network", "defined", result.stderr.strip() or "missing")
    pairs = (line.partition(":") for line in str(result.stdout).splitlines())
    fields = {key.strip(): value.strip() for key, _, value in pairs}
    expect(network["name"], "active", "yes", fields.get("Active", "unknown"))
    expect(network["name"], "autostart", "yes", fields.get("Autostart", "unknown"))


# --- guests ----------------------------------------------------------------------------


def nic_device(machine: Machine, nic: Nic) -> Entry:
    found = machine.with_mac(nic["mac"])
    if found is None:
        skip(nic["name"], f"no NIC with MAC {nic['mac']} (reported by test_nic_exists)")
    return found


def nic_exists(machine: Machine, nic: Nic) -> None:
    found = machine.with_mac(nic["mac"])
    if found is None:
        others = ", ".join(f"{n} {link.get('address')}" for n, link in machine.links.items() if n != "lo")
        pytest.fail(
            f"{nic['name']}: expected a NIC with MAC {nic['mac']}, found none ({others or 'no NICs'})",
            pytrace=False,
        )
    expect(f"NIC {nic['mac']}", "name", nic["name"], found["ifname"])


def nic_mtu(machine: Machine, nic: Nic) -> None:
    found = nic_device(machine, nic)
    expect(found["ifname"], "MTU", nic["mtu"], found["mtu"])


def nic_addresses(machine: Machine, nic: Nic) -> None:
    found = nic_device(machine, nic)
    have = machine.global_addresses(found["ifname"])
    want = [address(a) for a in nic["addresses"]]
    if not set(want) <= have:
        fail(found["ifname"], "addresses", ", ".join(want), ", ".join(sorted(have)) or "none")


def nic_ipv6(machine: Machine, nic: Nic) -> None:
    found = nic_device(machine, nic)
    name = found["ifname"]
    disabled = machine.sysctl(f"net/ipv6/conf/{name}/disable_ipv6")
    if disabled is None:  # ipv6.disable=1 on the kernel command line: no IPv6 at all
        expect(
            name, "IPv6", nic["ipv6"], "disabled" if nic["ipv6"] == "disabled" else "removed from the kernel"
        )
        return
    if nic["ipv6"] == "disabled":
        expect(name, "disable_ipv6", "1", disabled)
        expect(name, "IPv6 addresses", "none", ", ".join(sorted(machine.ipv6_addresses(name))) or "none")
    else:
        expect(name, "disable_ipv6", "0", disabled)


def virtio_nic(machine: Machine, nic: Nic, what: str) -> Entry:
    """The NIC, if it is a virtio NIC whose `what` can be read; else skip or fail saying why."""
    found = nic_device(machine, nic)
    driver = machine.driver(found)
    if found.get("linkinfo", {}).get("info_kind"):
        skip(found["ifname"], f"a {driver} device stands in for the virtio NIC here: it has no virtio {what}")
    expect(found["ifname"], "driver", "virtio_net", driver)
    return found


def nic_channels(machine: Machine, nic: Nic) -> None:
    found = virtio_nic(machine, nic, "queues")
    name = found["ifname"]
    # virtio_net keeps one rx queue per combined channel in use (what `ethtool -l` shows).
    queues = [
        q for q in machine.output("ls %s", f"/sys/class/net/{name}/queues").split() if q.startswith("rx-")
    ]
    expect(name, "combined channels", nic["channels"], len(queues))


def nic_rx_ring(machine: Machine, nic: Nic) -> None:
    found = virtio_nic(machine, nic, "rings")
    name = found["ifname"]
    if not machine.has_command("ethtool"):
        skip(name, "ethtool is not installed here: ring sizes cannot be read")
    text = machine.output("ethtool -g %s", name)
    current = text.split("Current hardware settings:")[-1]
    match = re.search(r"^RX:\s+(\d+)", current, re.MULTILINE)
    expect(name, "RX ring size", nic["rx_ring"], int(match.group(1)) if match else "none")


# --- routes ----------------------------------------------------------------------------


def link_routes(machine: Machine, link: Link) -> None:
    """Every route networkd should have added for the device is in the kernel."""
    found = device(machine, link)
    missing = []
    for route in link["routes"]:
        version = ipaddress.ip_network(route["destination"]).version
        routes = machine.routes(version)
        if not matching_routes(routes, route, found["ifname"]):
            destination = str(ipaddress.ip_network(route["destination"]))
            near = [kernel_route_text(r) for r in routes if r.destination == destination]
            missing.append(f"{route_text(route)} (found: {'; '.join(near) or 'no route to it'})")
    if missing:
        pytest.fail(f"{label(link)}: routes missing: {', '.join(missing)}", pytrace=False)


# --- DNS -------------------------------------------------------------------------------


def resolver(machine: Machine, entry: Resolver) -> None:
    """systemd-resolved is active and /etc/resolv.conf leads to its stub (127.0.0.53)."""
    state = machine.host.run("systemctl is-active %s", entry["unit"]).stdout.strip() or "unknown"
    expect(entry["unit"], "state", "active", state)
    target = machine.host.run("readlink -f %s", entry["resolv_conf"]).stdout.strip()
    expect(entry["resolv_conf"], "target", entry["stub"], target or "none")


# --- firewall --------------------------------------------------------------------------


def firewall_opening(machine: Machine, entry: Opening) -> None:
    """firewalld lets the tunnels' port or protocol in, now and permanently (EL9 enables
    it by default; its default zone drops VXLAN and GRE). No firewalld running: nothing
    drops them."""
    state = machine.host.run("systemctl is-active firewalld").stdout.strip() or "unknown"
    if state != "active":
        skip(entry["name"], f"firewalld is {state}: nothing drops it")
    for scope, option in (("runtime", ""), ("permanent", "--permanent ")):
        query = f"{SBIN}firewall-cmd {option}--query-{entry['kind']}=%s"
        answer = machine.host.run(query, entry["value"]).stdout.strip() or "no answer"
        expect(entry["name"], f"let in ({scope})", "yes", answer)


def dns_servers(machine: Machine, link: Link) -> None:
    """resolved knows the device's planned DNS servers and search domains, in order."""
    found = device(machine, link)
    dns = link["dns"]
    servers = resolvectl_items(machine.output("resolvectl dns %s", found["ifname"]))
    expect(label(link), "DNS servers", [ip(s) for s in dns["servers"]], [server_address(s) for s in servers])
    domains = resolvectl_items(machine.output("resolvectl domain %s", found["ifname"]))
    expect(label(link), "search domains", dns["domains"], domains)


def dns_resolves(machine: Machine, link: Link) -> None:
    """The device's DNS servers answer for its first search domain (its SOA record), asked
    through resolved on that device only, with DNS only and no cache: a server that is
    unreachable, or does not know the site's domain, fails it."""
    found = device(machine, link)
    dns = link["dns"]
    zones = [d.lstrip("~") for d in dns["domains"] if d.lstrip("~")]
    if not zones:
        skip(label(link), "no search domain in the profile: no name the servers must know")
    zone = zones[0]
    result = machine.host.run(
        SBIN + "resolvectl query --interface=%s --protocol=dns --cache=no --legend=no --type=SOA %s",
        found["ifname"],
        zone,
    )
    answered = result.rc == 0 and re.search(rf"(^|\s){re.escape(zone)}\.?\s+IN\s+SOA\s", result.stdout, re.M)
    if not answered:
        servers = ", ".join(dns["servers"])
        why = (result.stderr or result.stdout).strip() or f"exit {result.rc}"
        pytest.fail(f"{label(link)}: {zone} SOA through {servers}: {why}", pytrace=False)
