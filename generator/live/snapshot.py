"""What the kernel ended up with in one namespace: links, addresses, FDB, port VLANs."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2 import NetNS

from generator.live.commands import run

IFF_UP = 0x1
NUD_PERMANENT = 0x80


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
    operstate: str = "UNKNOWN"  # RFC 2863: "UP" when it can pass traffic, "DOWN", "LOWERLAYERDOWN"...


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
    """A link's IFLA_INFO_DATA as a dict: {} for none, and for a kind pyroute2 does not
    decode, whose data it leaves as a hex string (found in a Debian VM: `erspan0`, the
    fallback device ip_gre adds to every namespace once loaded)."""
    if message is None or isinstance(message, (str, bytes)):
        return {}
    return {str(key): value for key, value in message["attrs"]}


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
            operstate=str(m.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
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
