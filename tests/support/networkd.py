"""A bench for the real systemd-networkd 252: network namespaces, simulated NICs, networkd
processes with their journal, a read-back of what the kernel ended up with, and the small
vocabulary (Check, Result, Tolerance) the tests use to compare it with what they expect.

Machinery only; what to expect comes from the plan, in tests/test_networkd_real.py.

networkd runs without systemd as PID 1 (the recipe in the project's FACTS notes): a private
mount namespace (`unshare -m`) with tmpfs on /run/systemd and /etc/systemd/network, the files
in /run/systemd/network, a per-host /etc/machine-id bind-mounted (networkd derives bridge and
VXLAN MACs from it, so simulated hosts sharing one would share MACs no two real hosts have),
then `ip netns exec NS` with /sys remounted read-only, which makes networkd stop waiting for
a udev that does not run here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import NetNS

NETWORKD = Path("/lib/systemd/systemd-networkd")
RUN_NETWORK = "/run/systemd/network"
#: sd-messages.h SD_MESSAGE_INVALID_CONFIGURATION: every log_syntax() warning carries it.
INVALID_CONFIGURATION = "c772d24e9a884cbeb9ea12625c306c01"
WARNING = 4  # syslog priority; this and lower numbers (err, crit...) are problems
COMMAND_TIMEOUT = 20.0
IFF_UP = 0x1
NUD_PERMANENT = 0x80
SO_RCVBUFFORCE = 33  # socket(7); Python's socket module does not export it
_NUMBERS = itertools.count(1)  # shared by all Labs of this process, so names never repeat

# --- the one deliberate change to generated files ----------------------------------------

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]*)\]\s*$")
_PERMANENT_MAC = re.compile(r"^(?P<indent>\s*)PermanentMACAddress=")


def adapt_for_veth(text: str) -> str:
    """Return `text` with `PermanentMACAddress=` turned into `MACAddress=` in [Match] sections.

    This is the only change made to generated files on their way into the bench. Physical
    NICs are matched by their burnt-in address (as netplan does: it survives a MAC change),
    but the NICs here are veth devices, which have none (`ethtool -P`: "Permanent address:
    not set"), so no such [Match] could ever select them. The value stays the same and
    every other byte stays as generated.
    """
    out = []
    section = None
    for line in text.splitlines(keepends=True):
        if header := _SECTION.match(line):
            section = header["name"]
        out.append(
            _PERMANENT_MAC.sub(r"\g<indent>MACAddress=", line, count=1) if section == "Match" else line
        )
    return "".join(out)


def machine_id(seed: str) -> str:
    """A stable, distinct machine-id per simulated host (32 lowercase hex digits)."""
    return hashlib.sha256(f"kvmnet-test/{seed}".encode()).hexdigest()[:32]


# --- commands ----------------------------------------------------------------------------


def run(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def ping(
    ns: str, destination: str, payload: int, count: int = 3, deadline: int = 5
) -> subprocess.CompletedProcess[str]:
    """ICMP echo with Don't Fragment set, so a frame too big anywhere on the path is lost.

    Succeeds only if all `count` replies arrive within `deadline` seconds.
    """
    return run(
        *("ip", "netns", "exec", ns, "ping", "-n", "-M", "do", "-s", str(payload)),
        *("-c", str(count), "-i", "0.2", "-w", str(deadline), destination),
        check=False,
    )


# --- the kernel --------------------------------------------------------------------------

#: How to ask the kernel for one device of each networkd kind (an underlay veth `p0` exists).
_PROBES: Mapping[str, tuple[str, ...]] = {
    "bridge": ("type", "bridge"),
    "bond": ("type", "bond"),
    "vlan": ("link", "p0", "type", "vlan", "id", "2"),
    "vxlan": ("type", "vxlan", "id", "2", "dstport", "4789", "local", "192.0.2.1"),
    "gre": ("type", "gre", "local", "192.0.2.1", "remote", "192.0.2.2"),
    "gretap": ("type", "gretap", "local", "192.0.2.1", "remote", "192.0.2.2"),
}
_MODULES = {"bond": "bonding", "vlan": "8021q", "gre": "ip_gre", "gretap": "ip_gre"}
#: What iproute2 says when the kernel lacks a feature; any other error is a broken probe.
_UNSUPPORTED = ("Unknown device type", "Operation not supported")


@dataclass(frozen=True)
class Kernel:
    """What this kernel can do, found by trying it once in a scratch namespace."""

    cannot_create: Mapping[str, str]  # networkd kind -> why the kernel refuses it
    vlan_filtering: str | None  # why a bridge cannot filter VLANs; None if it can
    bridge_vlans: str | None  # why VLANs cannot be set on bridge ports; None if they can


def _refused(result: subprocess.CompletedProcess[str], what: str) -> str | None:
    if result.returncode == 0:
        return None
    said = result.stderr.strip()
    if not any(marker in said for marker in _UNSUPPORTED):
        raise RuntimeError(f"probe {what!r} failed for an unexpected reason: {said}")
    return said


def probe(lab: Lab, kinds: Iterable[str]) -> Kernel:
    ns = lab.namespace("probe")
    lab.veth(ns, "p0", peer_ns=ns, peer_name="p1")
    cannot = {}
    for kind in kinds:
        command = ("ip", "-n", ns, "link", "add", f"t-{kind}", *_PROBES[kind])
        if said := _refused(run(*command, check=False), " ".join(command[3:])):
            module = _MODULES.get(kind, kind)
            cannot[kind] = f"sandbox kernel cannot create {kind} devices (no {module}: {said!r})"
    bridge = "t-bridge"
    if "bridge" in cannot:  # nothing below can be asked without a bridge
        return Kernel(cannot, cannot["bridge"], cannot["bridge"])
    said = _refused(
        run("ip", "-n", ns, "link", "set", bridge, "type", "bridge", "vlan_filtering", "1", check=False),
        "vlan_filtering 1",
    )
    filtering = f"sandbox kernel has no bridge VLAN filtering ({said!r})" if said else None
    run("ip", "-n", ns, "link", "set", "p0", "master", bridge)
    said = _refused(run("bridge", "-n", ns, "vlan", "add", "dev", "p0", "vid", "2", check=False), "vlan add")
    port_vlans = f"sandbox kernel cannot set VLANs on bridge ports ({said!r})" if said else None
    lab.remove_namespace(ns)
    return Kernel(cannot, filtering, port_vlans)


# --- networkd's journal ------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    fields: Mapping[str, str]

    @property
    def priority(self) -> int:
        return int(self.fields.get("PRIORITY", "7"))

    @property
    def message(self) -> str:
        return self.fields.get("MESSAGE", "")

    @property
    def interface(self) -> str | None:
        return self.fields.get("INTERFACE")

    @property
    def is_syntax_warning(self) -> bool:
        """A complaint about a configuration file (log_syntax(): file, line and message id)."""
        return (
            "CONFIG_FILE" in self.fields
            or self.fields.get("MESSAGE_ID") == INVALID_CONFIGURATION
            or re.search(r"Unknown (key|section|lvalue)|Failed to parse", self.message) is not None
        )


def parse_datagram(data: bytes) -> JournalEntry:
    """journald's native protocol: `KEY=value` lines, or `KEY`, a 64-bit LE size and raw bytes."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = end + 1
        else:
            size = int.from_bytes(data[end + 1 : end + 9], "little")
            key, value = line, data[end + 9 : end + 9 + size]
            pos = end + 9 + size + 1
        if key:
            fields[key.decode()] = value.decode(errors="replace")
    return JournalEntry(fields)


class JournalSink:
    """A stand-in for journald's socket, so networkd's messages keep their priority and fields.

    On the console networkd prints bare text; to the journal it sends PRIORITY=, INTERFACE=,
    ERRNO= and, for configuration syntax problems, CONFIG_FILE= and a MESSAGE_ID. The socket
    lives in the test's work directory and is bind-mounted over /run/systemd/journal/socket
    in networkd's mount namespace.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        path.chmod(0o666)  # networkd drops to the systemd-network user
        # net.unix.max_dgram_qlen is small (10 here): a burst of debug lines blocks networkd's
        # logging (for up to 10 s per line in log.c) unless the queue is drained and roomy.
        self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._drain, name=f"journal {path}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._entries.append(parse_datagram(data))

    def entries(self) -> tuple[JournalEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


# --- networkd ----------------------------------------------------------------------------

_START = r"""
set -eu
umask 022  # networkd reads its files and state directories as the systemd-network user
ns=$1 files=$2 machine_id=$3 journal=$4 networkd=$5
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp /run/systemd/journal
chown -R systemd-network:systemd-network /run/systemd/netif
cp -R "$files" /run/systemd/network
chmod -R a+rX /run/systemd/network
touch /run/systemd/journal/socket
mount --bind "$journal" /run/systemd/journal/socket
mount --bind "$machine_id" /etc/machine-id
exec ip netns exec "$ns" sh -c 'mount -o remount,ro /sys && exec "$0"' "$networkd"
"""


class Networkd:
    """One systemd-networkd in network namespace `ns`, reading exactly `files`."""

    def __init__(self, ns: str, files: Mapping[str, bytes], seed: str, workdir: Path) -> None:
        self.ns = ns
        workdir.mkdir(parents=True)
        network = workdir / "network"
        network.mkdir()
        for name, content in files.items():
            (network / name).write_text(adapt_for_veth(content.decode()))
        identity = workdir / "machine-id"
        identity.write_text(machine_id(seed) + "\n")
        identity.chmod(0o444)  # bind-mounted as is; read after networkd drops privileges
        self.journal = JournalSink(workdir / "journal.sock")
        self.console = workdir / "console.log"
        env = {**os.environ, "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_TARGET": "journal"}
        with self.console.open("wb") as console:
            # unshare, sh and ip all exec, so this PID ends up being networkd's own.
            self.process = subprocess.Popen(
                [
                    *("unshare", "-m", "--propagation", "private", "sh", "-c", _START, "sh"),
                    *(ns, str(network), str(identity), str(self.journal.path), str(NETWORKD)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                env=env,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def entries(self) -> tuple[JournalEntry, ...]:
        return self.journal.entries()

    def console_output(self) -> str:
        """Anything printed instead of sent to the journal (a failed start, or lost log lines)."""
        return self.console.read_text(errors="replace")

    def link_state(self, ifindex: int) -> Mapping[str, str]:
        """networkd's state file for a link (ADMIN_STATE=, NETWORK_FILE=...), {} if none yet."""
        # The file is on a tmpfs of networkd's private mount namespace: reach it via its root.
        path = Path(f"/proc/{self.process.pid}/root/run/systemd/netif/links/{ifindex}")
        try:
            text = path.read_text()
        except OSError:
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.journal.close()


# --- namespaces and devices --------------------------------------------------------------


class Lab:
    """Namespaces and networkd processes; `close()` stops and removes every one of them.

    Names start with `kn-<pid>-`, so parallel test sessions on one machine never collide.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"kn-{os.getpid()}"
        self._namespaces: list[str] = []
        self._daemons: list[Networkd] = []

    def namespace(self, label: str) -> str:
        name = f"{self.prefix}-{next(_NUMBERS)}-{re.sub(r'[^A-Za-z0-9-]', '-', label)}"
        run("ip", "netns", "add", name)
        self._namespaces.append(name)
        return name

    def remove_namespace(self, name: str) -> None:
        self._namespaces.remove(name)
        run("ip", "netns", "delete", name)

    def veth(
        self,
        ns: str,
        name: str,
        *,
        peer_ns: str,
        peer_name: str,
        mac: str | None = None,
        peer_mac: str | None = None,
        mtu: int | None = None,
        peer_up: bool = True,
    ) -> None:
        """A veth pair; the peer is brought up so that `name` sees carrier once it is up."""
        mine = (*(("address", mac) if mac else ()), *(("mtu", str(mtu)) if mtu else ()))
        theirs = (*(("address", peer_mac) if peer_mac else ()), *(("mtu", str(mtu)) if mtu else ()))
        run(
            *("ip", "-n", ns, "link", "add", name, *mine, "type", "veth"),
            *("peer", "name", peer_name, "netns", peer_ns, *theirs),
        )
        if peer_up:
            run("ip", "-n", peer_ns, "link", "set", peer_name, "up")

    def guest(self, ns: str, bridge: str, mtu: int, address: str) -> str:
        """A namespace standing in for a VM: its `eth0` is a veth whose peer is a port of `bridge`."""
        guest = self.namespace("guest")
        self.veth(ns, "kn-guest", mtu=mtu, peer_ns=guest, peer_name="eth0", peer_up=False)
        run("ip", "-n", ns, "link", "set", "kn-guest", "master", bridge, "up")
        run("ip", "-n", guest, "address", "add", address, "dev", "eth0")
        run("ip", "-n", guest, "link", "set", "eth0", "up")
        return guest

    def networkd(self, ns: str, files: Mapping[str, bytes], seed: str) -> Networkd:
        daemon = Networkd(ns, files, seed, self.workdir / f"networkd-{next(_NUMBERS)}")
        self._daemons.append(daemon)
        return daemon

    def close(self) -> None:
        errors = []
        for daemon in reversed(self._daemons):
            try:
                daemon.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"networkd {daemon.process.pid}: {exc}")
        self._daemons.clear()
        for name in reversed(self._namespaces):
            result = run("ip", "netns", "delete", name, check=False)
            if result.returncode != 0:
                errors.append(f"netns {name}: {result.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))


# --- what the kernel ended up with -------------------------------------------------------


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str | None  # IFLA_INFO_KIND ("veth", "bridge", "vxlan"...)
    mtu: int
    mac: str
    up: bool  # administratively (IFF_UP)
    master: str | None
    parent: str | None  # IFLA_LINK in this namespace: a VLAN's lower device
    info: Mapping[str, Any]  # IFLA_INFO_DATA, attribute name -> value as pyroute2 decodes it
    addresses: frozenset[str]  # global scope, "address/prefixlen" in ipaddress' spelling
    fdb: frozenset[tuple[str, str]]  # static (MAC, remote VTEP) entries


@dataclass(frozen=True)
class PortVlans:
    vids: frozenset[int]
    pvid: int | None
    untagged: frozenset[int]


@dataclass(frozen=True)
class Snapshot:
    links: Mapping[str, Link]
    bridge_vlans: Mapping[str, PortVlans] | None  # None: the kernel has no bridge VLAN support

    def link(self, name: str) -> Link | None:
        return self.links.get(name)

    def name_of(self, index: object) -> str | None:
        """The name of the device with ifindex `index` (None for none, or for 0)."""
        return next((link.name for link in self.links.values() if index and link.index == index), None)


def _attrs(message: Any) -> dict[str, Any]:
    return {} if message is None else {str(key): value for key, value in message["attrs"]}


def read(ns: str) -> Snapshot:
    with NetNS(ns) as ipr:
        raw_links = list(ipr.get_links())
        raw_addresses = list(ipr.get_addr())
        raw_fdb = list(ipr.fdb("dump"))
    names = {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in raw_links}
    addresses: dict[int, set[str]] = {}
    for m in raw_addresses:
        if int(m["scope"]) == 0:
            iface = ipaddress.ip_interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
            addresses.setdefault(int(m["index"]), set()).add(str(iface))
    fdb: dict[int, set[tuple[str, str]]] = {}
    for m in raw_fdb:
        # Only static entries: with MAC learning on, traffic adds (MAC, VTEP) pairs of its own.
        if m.get_attr("NDA_DST") is not None and int(m["state"]) & NUD_PERMANENT:
            entry = (str(m.get_attr("NDA_LLADDR")).lower(), str(m.get_attr("NDA_DST")))
            fdb.setdefault(int(m["ifindex"]), set()).add(entry)
    links = {}
    for m in raw_links:
        index = int(m["index"])
        master, parent = m.get_attr("IFLA_MASTER"), m.get_attr("IFLA_LINK")
        same_ns_parent = parent is not None and m.get_attr("IFLA_LINK_NETNSID") is None
        kind = m.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        link = Link(
            index=index,
            name=names[index],
            kind=None if kind is None else str(kind),
            mtu=int(m.get_attr("IFLA_MTU")),
            mac=str(m.get_attr("IFLA_ADDRESS")).lower(),
            up=bool(int(m["flags"]) & IFF_UP),
            master=names.get(int(master)) if master else None,
            parent=names.get(int(parent)) if same_ns_parent and parent != index else None,
            info=_attrs(m.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")),
            addresses=frozenset(addresses.get(index, ())),
            fdb=frozenset(fdb.get(index, ())),
        )
        links[link.name] = link
    return Snapshot(links, _bridge_vlans(ns))


def _bridge_vlans(ns: str) -> Mapping[str, PortVlans] | None:
    result = run("bridge", "-n", ns, "-j", "vlan", "show", check=False)
    if result.returncode != 0:
        return None
    out = {}
    for port in json.loads(result.stdout or "[]"):
        vids: set[int] = set()
        untagged: set[int] = set()
        pvid = None
        for entry in port.get("vlans", []):
            span = range(int(entry["vlan"]), int(entry.get("vlanEnd", entry["vlan"])) + 1)
            vids.update(span)
            flags = entry.get("flags", [])
            if "PVID" in flags:
                pvid = int(entry["vlan"])
            if "Egress Untagged" in flags:
                untagged.update(span)
        out[str(port["ifname"])] = PortVlans(frozenset(vids), pvid, frozenset(untagged))
    return out


# --- comparing what is there with what is expected ---------------------------------------

MISSING = "(no such device)"


@dataclass(frozen=True)
class Observed:
    """Everything known about one device: the kernel's view, networkd's log and state file."""

    link: Link | None
    snapshot: Snapshot
    entries: tuple[JournalEntry, ...]
    state: Mapping[str, str]


Reader = Callable[[Observed], object]


@dataclass(frozen=True)
class Check:
    label: str
    expected: object
    actual: Reader
    blocked: str | None = None  # why this cannot be verified on this machine


@dataclass(frozen=True)
class Result:
    check: Check
    actual: object

    @property
    def wrong(self) -> bool:
        return self.check.blocked is None and self.actual != self.check.expected


@dataclass(frozen=True)
class Tolerance:
    """A networkd warning that is the known consequence of a feature this kernel lacks."""

    interface: str
    message: str  # regex for the text after "<interface>: "

    def covers(self, entry: JournalEntry) -> bool:
        text = entry.message.removeprefix(f"{self.interface}: ")
        return entry.interface == self.interface and re.fullmatch(self.message, text) is not None


def on_link(read_link: Callable[[Link], object]) -> Reader:
    return lambda observed: MISSING if observed.link is None else read_link(observed.link)


def info(attr: str, convert: Callable[[Any], object] = lambda value: value) -> Reader:
    """An IFLA_INFO_DATA attribute (None when the kernel does not report it)."""
    return on_link(lambda link: None if link.info.get(attr) is None else convert(link.info[attr]))


def ip(text: object) -> str:
    return str(ipaddress.ip_address(str(text)))


def any_ip(*attrs: str) -> Reader:
    """The first of several attributes that is set (IPv4 and IPv6 come in different ones)."""
    return on_link(lambda link: next((ip(link.info[a]) for a in attrs if link.info.get(a) is not None), None))


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
