"""The fleet as a Graphviz graph (`kvmnet graph`): hosts, their devices, overlays, tunnels
and guests, drawn from the plan.

Pure: this builds the DOT text; generator/live/graphviz.py turns it into SVG with `dot`.
One cluster per host; inside it, a node per device (labelled with kind and MTU) and edges
from ports to their bridge or bond, from VLANs and tunnels to the device that carries
them. Between hosts: each overlay as a mesh of dashed edges between its VXLAN devices,
point-to-point tunnels to the host that owns the remote address (or to a node for an
address outside the fleet). Guests hang off the bridge each NIC attaches to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from generator.plan.types import HostPlan, Interface, Kind, Plan
from generator.templating import render as render_template

#: Graphviz shapes by device kind: physical things boxy, software bridges round.
_SHAPES = {
    Kind.ETHERNET: "box",
    Kind.BOND: "box3d",
    Kind.BRIDGE: "ellipse",
    Kind.VLAN: "cds",
    Kind.VXLAN: "hexagon",
    Kind.GRE: "hexagon",
    Kind.GRETAP: "hexagon",
    Kind.TAP: "invhouse",
}


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str
    shape: str


@dataclass(frozen=True, slots=True)
class Edge:
    tail: str
    head: str
    label: str = ""
    style: str = "solid"


@dataclass(frozen=True, slots=True)
class Cluster:
    id: str
    label: str
    nodes: tuple[Node, ...]


def _node_id(host: str, device: str) -> str:
    return f"{host}/{device}"


def _device(host: HostPlan, iface: Interface) -> Node:
    label = f"{iface.netdev_name}\n{iface.kind.word}, MTU {iface.mtu}"
    if iface.vlan_id is not None:
        label += f"\nVLAN {iface.vlan_id}"
    if iface.tunnel is not None and iface.tunnel.vni is not None:
        label += f"\nVNI {iface.tunnel.vni}"
    if iface.addresses:
        label += "\n" + "\n".join(iface.addresses)
    return Node(_node_id(host.name, iface.id), label, _SHAPES[iface.kind])


def _owners(plan: Plan) -> dict[str, str]:
    """Address (no prefix) -> node id of the device that has it."""
    out = {}
    for host in plan.hosts:
        for iface in host.interfaces:
            for address in iface.addresses:
                out[str(ipaddress.ip_interface(address).ip)] = _node_id(host.name, iface.id)
    return out


def graph(plan: Plan, title: str) -> str:
    clusters: list[Cluster] = []
    edges: list[Edge] = []
    outside: dict[str, Node] = {}
    owners = _owners(plan)
    overlay_devices = {(m.host, o.device) for o in plan.overlays for m in o.members}
    for host in plan.hosts:
        nodes = [_device(host, i) for i in (*host.interfaces, *host.tap_ports)]
        clusters.append(Cluster(f"cluster_{host.name}", f"host {host.name}", tuple(nodes)))
        for iface in (*host.interfaces, *host.tap_ports):
            me = _node_id(host.name, iface.id)
            if iface.master is not None:
                edges.append(Edge(me, _node_id(host.name, iface.master), "port"))
            if iface.lower is not None:
                edges.append(Edge(me, _node_id(host.name, iface.lower), "over"))
            tunnel = iface.tunnel
            remote = tunnel.remote if tunnel else None
            if remote is None or (host.name, iface.id) in overlay_devices:
                continue
            far = owners.get(str(ipaddress.ip_address(remote)))
            if far is None:
                far = f"remote/{remote}"
                outside.setdefault(far, Node(far, f"{remote}\n(outside the fleet)", "plaintext"))
            edges.append(Edge(me, far, f"{iface.kind.word} to {remote}", "dashed"))
    for overlay in plan.overlays:
        members = [_node_id(m.host, overlay.device) for m in overlay.members]
        label = f"overlay {overlay.name}\nVNI {overlay.vni}, MTU {overlay.mtu}"
        edges += [Edge(a, b, label, "dashed") for i, a in enumerate(members) for b in members[i + 1 :]]
    guests = []
    for guest in plan.guests:
        gid = f"guest/{guest.name}"
        guests.append(Node(gid, f"{guest.name}\n{guest.vcpus} vCPU", "component"))
        for nic in guest.nics:
            label = f"{nic.name} {nic.model}, MTU {nic.mtu}"
            if nic.vlan is not None:
                label += f", VLAN {nic.vlan}"
            edges.append(Edge(gid, _node_id(guest.host, nic.source), label))
    return render_template(
        "graph/topology.dot.j2",
        title=title,
        clusters=clusters,
        guests=guests,
        outside=sorted(outside.values(), key=lambda n: n.id),
        edges=edges,
    )
