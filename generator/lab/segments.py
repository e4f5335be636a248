"""Which endpoints of a lab must reach each other, and which must not, worked out from the plan.

An endpoint is an address on a host interface or a guest NIC. Layer-2 segments are
found by joining, in a union-find, what the plan connects: a bridge with each of its
ports; a NIC with the lab switch's wire of its name; an overlay's VXLAN devices on all
members; the two ends of a GRE, gretap or point-to-point VXLAN tunnel; a VLAN device
with VLAN N of what it rides on; and, on a VLAN-filtering bridge, each VLAN on its own.

Each join records the kernel features it needs (device kinds, bridge VLAN filtering).
Three graphs follow from the same joins:
- *planned*: all of them: what the profile means;
- *working*: only joins whose features this kernel has: pairs joined here are tested;
- *physical*: what the kernel really does without a feature: a bridge that cannot filter
  VLANs floods all of them as one, a device that cannot be created joins nothing.
Endpoints in one IP subnet and one planned segment must reach each other (tested when the
working graph joins them too, skipped with the missing features otherwise); endpoints in
one subnet but different planned segments must not (skipped where the physical graph
joins them, because this kernel cannot keep them apart). Endpoints in different subnets
would need a router: they are not paired.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from generator.lab.layout import Layout, kernel_name
from generator.plan.types import HostPlan, Interface, Kind, OverlayPlan, Plan, TunnelSettings

Node = tuple[Hashable, ...]
FILTERING = "vlan-filtering"  # a feature: bridge VLAN filtering and port VLANs


@dataclass(frozen=True)
class Endpoint:
    machine: str
    ns: str
    interface: str  # its name in that namespace
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    mtu: int  # planned
    node: Node
    needs: frozenset[str]  # features its own interface (and attachment) needs

    @property
    def label(self) -> str:
        return f"{self.machine}/{self.interface}"

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass(frozen=True)
class Pair:
    a: Endpoint
    b: Endpoint
    expect: str  # "reach" | "isolated"
    blocked: str | None  # why this pair cannot be tested on this kernel

    @property
    def label(self) -> str:
        return f"{self.a.label} ↔ {self.b.label}"

    @property
    def mtu(self) -> int:
        """The largest packet both ends are planned to send and take."""
        return min(self.a.mtu, self.b.mtu)


@dataclass(frozen=True)
class _Join:
    a: Node
    b: Node
    needs: frozenset[str]


class _Sets:
    def __init__(self) -> None:
        self._parent: dict[Node, Node] = {}

    def find(self, node: Node) -> Node:
        self._parent.setdefault(node, node)
        while self._parent[node] != node:
            self._parent[node] = self._parent[self._parent[node]]
            node = self._parent[node]
        return node

    def union(self, a: Node, b: Node) -> None:
        self._parent[self.find(a)] = self.find(b)


def _vlan_set(spans: Iterable[tuple[int, int]]) -> set[int]:
    return {v for lo, hi in spans for v in range(lo, hi + 1)}


def _tunnel_key(t: TunnelSettings) -> frozenset[str]:
    return frozenset(x for x in (t.local, t.remote or t.group) if x)


class _Graph:
    """The joins of one plan, and the endpoints on them."""

    def __init__(self, plan: Plan, layout: Layout) -> None:
        self.plan = plan
        self.layout = layout
        self.overlay_of: dict[tuple[str, str], OverlayPlan] = {
            (m.host, o.device): o for o in plan.overlays for m in o.members
        }
        self.joins: list[_Join] = []
        self.endpoints: list[Endpoint] = []
        for host in plan.hosts:
            self._host(host)
        self._guests()

    def _bridge_filters(self, host: HostPlan, bridge_id: str) -> bool:
        bridge = host.get(bridge_id)
        return bridge.bridge is not None and bridge.bridge.vlan_filtering

    def _attach(
        self, host: HostPlan, iface: Interface, vlan: int | None
    ) -> list[tuple[Node, frozenset[str]]]:
        """Where frames leaving `iface` (tagged `vlan`) end up outside the host."""
        if iface.kind is Kind.ETHERNET:
            return [(("wire", kernel_name(iface), vlan), frozenset())]
        if iface.kind is Kind.BOND:
            ports = [i for i in host.interfaces if i.master == iface.id and i.master_kind is Kind.BOND]
            return [(node, needs | {"bond"}) for p in ports for node, needs in self._attach(host, p, vlan)]
        if iface.kind is Kind.VLAN and iface.lower is not None and iface.vlan_id is not None:
            lower = host.get(iface.lower)
            if lower.kind is Kind.BRIDGE:
                needs = frozenset({"vlan", FILTERING} if self._bridge_filters(host, lower.id) else {"vlan"})
                return [(("bridge", host.name, lower.id, iface.vlan_id), needs)]
            return [(n, needs | {"vlan"}) for n, needs in self._attach(host, lower, iface.vlan_id)]
        if iface.kind is Kind.VXLAN and iface.tunnel is not None:
            overlay = self.overlay_of.get((host.name, iface.id))
            if overlay is not None:
                return [(("overlay", overlay.name, vlan), frozenset({"vxlan"}))]
            key = ("vxlan", iface.tunnel.vni, _tunnel_key(iface.tunnel), vlan)
            return [(key, frozenset({"vxlan"}))]
        if iface.kind is Kind.GRETAP and iface.tunnel is not None:
            return [(("gretap", _tunnel_key(iface.tunnel), vlan), frozenset({"gretap"}))]
        return []

    def _host(self, host: HostPlan) -> None:
        for iface in host.interfaces:
            if iface.master is not None and iface.master_kind is Kind.BRIDGE:
                self._port(host, iface)
            if iface.kind is Kind.BOND:  # one link to the switch, however many cables
                wires = self._attach(host, iface, None)
                for (a, needs), (b, _) in itertools.pairwise(wires):
                    self.joins.append(_Join(a, b, needs))
            if iface.master is None:
                self._host_endpoints(host, iface)

    def _port(self, host: HostPlan, port: Interface) -> None:
        bridge = port.master
        assert bridge is not None
        if not self._bridge_filters(host, bridge):
            for node, needs in self._attach(host, port, None):
                self.joins.append(_Join(("bridge", host.name, bridge, None), node, needs))
            return
        vlans = port.port_vlans
        if vlans is None:
            return
        untagged = _vlan_set(vlans.untagged)
        for vlan in sorted(_vlan_set(vlans.vlans)):
            for node, needs in self._attach(host, port, None if vlan in untagged else vlan):
                self.joins.append(_Join(("bridge", host.name, bridge, vlan), node, needs | {FILTERING}))

    def _host_endpoints(self, host: HostPlan, iface: Interface) -> None:
        places: list[tuple[Node, frozenset[str]]]
        if iface.kind is Kind.BRIDGE:
            filters = self._bridge_filters(host, iface.id)
            pvid = iface.port_vlans.pvid if filters and iface.port_vlans else None
            places = [(("bridge", host.name, iface.id, pvid), frozenset({FILTERING} if filters else ()))]
        elif iface.kind is Kind.GRE and iface.tunnel is not None:
            places = [(("gre", _tunnel_key(iface.tunnel)), frozenset({"gre"}))]
        else:
            places = self._attach(host, iface, None)
        if not places:
            return
        node, needs = places[0]
        if iface.kind.is_netdev and iface.kind is not Kind.BRIDGE:
            needs |= {iface.kind.value}
        ns = self.layout.host(host.name).ns
        for address in iface.addresses:
            self.endpoints.append(
                Endpoint(
                    host.name, ns, kernel_name(iface), ipaddress.ip_interface(address), iface.mtu, node, needs
                )
            )

    def _guests(self) -> None:
        for guest in self.layout.guests:
            host = next(h for h in self.plan.hosts if h.name == guest.host)
            for port in guest.ports:
                bridge = next(i for i in host.interfaces if i.netdev_name == port.bridge)
                filters = self._bridge_filters(host, bridge.id)
                vlan = None
                if filters:
                    tap = next((t for t in host.tap_ports if t.id == port.tap), None)
                    vlan = port.vlan or (tap.port_vlans.pvid if tap and tap.port_vlans else None)
                node: Node = ("bridge", host.name, bridge.id, vlan)
                needs = frozenset({FILTERING} if filters else ())
                for address in port.addresses:
                    self.endpoints.append(
                        Endpoint(
                            guest.name,
                            guest.ns,
                            port.name,
                            ipaddress.ip_interface(address),
                            port.planned.mtu,
                            node,
                            needs,
                        )
                    )


def _untag(node: Node) -> Node:
    """The node with its VLAN dropped (how it looks to a bridge that cannot filter VLANs)."""
    return (*node[:-1], None) if node[0] in ("bridge", "wire", "overlay", "gretap", "vxlan") else node


def pairs(plan: Plan, layout: Layout, missing: Mapping[str, str]) -> Iterator[Pair]:
    """Every pair of endpoints in one IP subnet, with what to expect of it."""
    graph = _Graph(plan, layout)
    planned, working, physical = _Sets(), _Sets(), _Sets()
    needs_of: dict[Node, set[str]] = {}
    for join in graph.joins:
        planned.union(join.a, join.b)
        if not join.needs & missing.keys():
            working.union(join.a, join.b)
        devices = join.needs - {FILTERING}
        if not devices & missing.keys():
            if FILTERING in join.needs and FILTERING in missing:
                physical.union(_untag(join.a), _untag(join.b))
            else:
                physical.union(join.a, join.b)
    for join in graph.joins:
        needs_of.setdefault(planned.find(join.a), set()).update(join.needs)

    def physical_node(e: Endpoint) -> Node:
        return _untag(e.node) if FILTERING in e.needs and FILTERING in missing else e.node

    for a, b in itertools.combinations(graph.endpoints, 2):
        if a.machine == b.machine or a.address.network != b.address.network:
            continue
        if planned.find(a.node) == planned.find(b.node):
            needed = a.needs | b.needs | needs_of.get(planned.find(a.node), set())
            lacking = sorted(needed & missing.keys())
            if not lacking and working.find(a.node) == working.find(b.node):
                yield Pair(a, b, "reach", None)
            else:
                yield Pair(a, b, "reach", "; ".join(missing[f] for f in lacking) or "not joined here")
            continue
        lacking = sorted((a.needs | b.needs) & missing.keys() - {FILTERING})
        if lacking:
            yield Pair(a, b, "isolated", "; ".join(missing[f] for f in lacking))
        elif physical.find(physical_node(a)) == physical.find(physical_node(b)):
            yield Pair(a, b, "isolated", f"{missing[FILTERING]}: the bridges between them flood all VLANs")
        else:
            yield Pair(a, b, "isolated", None)


def missing_features(cannot_create: Mapping[str, str], vlan_filtering: str | None) -> dict[str, str]:
    """Feature -> why this kernel lacks it, in the words `pairs` uses."""
    missing = dict(cannot_create)
    if vlan_filtering:
        missing[FILTERING] = vlan_filtering
    return missing
