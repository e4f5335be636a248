"""A host's devices while the plan is being worked out, and the rules within one host.

`Dev` is the mutable working record (overlays still add ports and FDB entries to it);
`build.py` freezes it into a `plan.types.Interface` at the end.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from generator.errors import Diagnostic, KeyPath, format_path
from generator.model.network import (
    Bond,
    Bridge,
    Ethernet,
    GretapTunnel,
    GreTunnel,
    Network,
    Vlan,
    VxlanTunnel,
)
from generator.model.types import interface_name_problem
from generator.plan.types import Fdb, Kind, PortVlans

Spec = Ethernet | Bond | Bridge | Vlan | VxlanTunnel | GreTunnel | GretapTunnel

_SECTIONS: tuple[tuple[str, Kind | None], ...] = (
    ("ethernets", Kind.ETHERNET),
    ("bonds", Kind.BOND),
    ("bridges", Kind.BRIDGE),
    ("vlans", Kind.VLAN),
    ("tunnels", None),  # the kind is the tunnel's mode
)
_TUNNEL_KINDS = {"vxlan": Kind.VXLAN, "gre": Kind.GRE, "gretap": Kind.GRETAP}
#: What makes a `match: {name: ...}` a glob rather than a name.
GLOB_CHARS = frozenset("*?[")


@dataclass
class Dev:
    id: str
    kind: Kind
    origin: KeyPath
    spec: Spec | None  # None for devices an overlay creates
    name: str | None
    mtu_request: int | str | None  # a number, "auto", or unset
    ports: list[str] = field(default_factory=list)
    lower: str | None = None  # the device this one rides on
    master: str | None = None
    stacked: list[tuple[str, str]] = field(default_factory=list)
    fdb: list[Fdb] = field(default_factory=list)
    overlay: str | None = None
    port_vlans: PortVlans | None = None
    ipv6_underlay: bool = False
    local: str | None = None  # tunnel endpoint address on this host
    vni: int | None = None

    @property
    def section(self) -> str:
        return str(self.origin[3]) if len(self.origin) > 3 else ""


@dataclass(frozen=True, slots=True)
class GuestTap:
    """A tap a guest names with `target:`; libvirt creates it and adds it to `bridge`."""

    bridge: str
    origin: KeyPath  # the guest interface


@dataclass(frozen=True, slots=True)
class TapPort:
    """A guest tap listed in a VLAN-aware bridge's `kvmnet.ports`."""

    tap: str
    bridge: str
    origin: KeyPath
    vlans: PortVlans | None


@dataclass
class HostDevices:
    """Every device of one host, by id, plus the host's static addresses."""

    host: str
    devs: dict[str, Dev]
    addresses: dict[str, str]  # IP address (no prefix) -> device id
    tap_ports: list[TapPort] = field(default_factory=list)

    def path(self, *rest: str | int) -> KeyPath:
        return ("hosts", self.host, "network", *rest)

    def known(self) -> str:
        return ", ".join(sorted(self.devs)) or "none"


def collect(host: str, network: Network, problems: list[Diagnostic]) -> HostDevices:
    """Gather the declared devices of `host`, name them and check references within it."""
    devs: dict[str, Dev] = {}
    table = HostDevices(host, devs, {})
    for section, kind in _SECTIONS:
        entries: dict[str, Spec] = getattr(network, section)
        for ident, spec in sorted(entries.items()):
            origin = table.path(section, ident)
            if ident in devs:
                problems.append(
                    Diagnostic(
                        f"id {ident!r} is already used by {devs[ident].section}.{ident}; "
                        "device ids must be unique across ethernets, bonds, bridges, vlans and tunnels",
                        origin,
                        on_key=True,
                    )
                )
                continue
            dev_kind = kind or _TUNNEL_KINDS[getattr(spec, "mode")]  # noqa: B009
            devs[ident] = Dev(
                id=ident,
                kind=dev_kind,
                origin=origin,
                spec=spec,
                name=_kernel_name(ident, spec, origin, problems),
                mtu_request=getattr(spec, "mtu", None),
                vni=spec.id if isinstance(spec, VxlanTunnel) else None,
            )
    for dev in devs.values():
        if dev.spec is None:
            continue
        for address in dev.spec.addresses:
            table.addresses.setdefault(str(ipaddress.ip_interface(address).ip), dev.id)
    _resolve(table, problems)
    return table


def _kernel_name(ident: str, spec: Spec, origin: KeyPath, problems: list[Diagnostic]) -> str | None:
    """The name the device will have in the kernel, or None if only its MAC is known."""
    if isinstance(spec, Ethernet) and spec.match is not None:
        if spec.set_name:
            return spec.set_name
        name = spec.match.name
        if name is None or GLOB_CHARS & set(name):
            return None
        problem = interface_name_problem(name)
        if problem:
            problems.append(Diagnostic(problem, (*origin, "match", "name")))
        return name
    # Without a match the id *is* the name (netdevs are validated as names in the model;
    # ethernet ids only here, because with a match they may be any label).
    problem = interface_name_problem(ident)
    if problem:
        problems.append(Diagnostic(problem, origin, on_key=True))
    return ident


def _resolve(table: HostDevices, problems: list[Diagnostic]) -> None:
    devs = table.devs
    for dev in list(devs.values()):
        spec = dev.spec
        if isinstance(spec, Bridge | Bond):
            for index, port in enumerate(spec.interfaces):
                attach(table, dev, port, (*dev.origin, "interfaces", index), problems)
        if isinstance(spec, Bridge):
            _bridge_options(table, dev, spec, problems)
        primary = spec.parameters.primary if isinstance(spec, Bond) and spec.parameters else None
        if isinstance(spec, Bond) and primary is not None and primary not in spec.interfaces:
            problems.append(
                Diagnostic(
                    f"primary {primary!r} is not one of the bond's interfaces "
                    f"({', '.join(spec.interfaces) or 'none'})",
                    (*dev.origin, "parameters", "primary"),
                )
            )
        if isinstance(spec, Vlan):
            _stack(table, dev, spec.link, "VLAN", (*dev.origin, "link"), problems)
        if isinstance(spec, VxlanTunnel | GreTunnel | GretapTunnel):
            _tunnel(table, dev, spec, problems)
    _unique_names(table, problems)
    _unique_vlan_ids(table, problems)


def attach(table: HostDevices, master: Dev, port: str, path: KeyPath, problems: list[Diagnostic]) -> None:
    """Make `port` a member of bridge or bond `master`, checking it can be one."""
    member = table.devs.get(port)
    what = "bridge" if master.kind is Kind.BRIDGE else "bond"
    if member is None:
        problems.append(
            Diagnostic(
                f"{what} {master.id} lists port {port!r}, which is not defined on host "
                f"{table.host} (defined: {table.known()})",
                path,
            )
        )
        return
    if member.master is not None:
        problems.append(
            Diagnostic(f"{port} is already a port of {member.master}; a device can have one master", path)
        )
        return
    if member is master:
        problems.append(Diagnostic(f"{what} {master.id} cannot be a port of itself", path))
        return
    if master.kind is Kind.BOND and member.kind is not Kind.ETHERNET:
        problems.append(Diagnostic(f"bond ports must be ethernets; {port} is a {member.kind.value}", path))
        return
    if master.kind is Kind.BRIDGE and member.kind is Kind.BRIDGE:
        problems.append(Diagnostic(f"{port} is a bridge; Linux cannot put a bridge inside a bridge", path))
        return
    if master.kind is Kind.BRIDGE and not member.kind.carries_ethernet:
        problems.append(
            Diagnostic(f"{port} is a layer-3 GRE tunnel and cannot be a bridge port; use mode: gretap", path)
        )
        return
    spec = member.spec
    if spec is not None and (spec.addresses or spec.dhcp4 or spec.dhcp6):
        problems.append(
            Diagnostic(
                f"{port} is a port of {what} {master.id} and cannot have addresses or DHCP of its "
                f"own; configure them on {master.id}",
                member.origin,
            )
        )
    member.master = master.id
    master.ports.append(port)


def _bridge_options(table: HostDevices, dev: Dev, spec: Bridge, problems: list[Diagnostic]) -> None:
    params = spec.parameters
    if params is not None:
        for key in ("path-cost", "port-priority"):
            for port in getattr(params, key.replace("-", "_")):
                if port not in spec.interfaces:
                    problems.append(
                        Diagnostic(
                            f"{port!r} is not a port of bridge {dev.id} "
                            f"(ports: {', '.join(spec.interfaces) or 'none'})",
                            (*dev.origin, "parameters", key, port),
                            on_key=True,
                        )
                    )
        if params.stp:
            _stp_ranges(dev, params.forward_delay, params.hello_time, params.max_age, problems)
    ext = spec.kvmnet
    if ext is None:
        return
    if not ext.vlan_filtering and (ext.vlans or ext.pvid or ext.untagged or ext.ports or ext.default_pvid):
        problems.append(
            Diagnostic(
                "VLAN lists need `vlan-filtering: true` on the bridge (without it the bridge "
                "ignores VLAN membership)",
                (*dev.origin, "kvmnet"),
            )
        )
    dev.port_vlans = _port_vlans(ext.vlans, ext.pvid, ext.untagged, (*dev.origin, "kvmnet"), problems)


def _stp_ranges(
    dev: Dev, forward: int | None, hello: int | None, max_age: int | None, problems: list[Diagnostic]
) -> None:
    # With STP on, the kernel refuses timers outside IEEE 802.1D's ranges (br_stp_timer.c).
    for key, value, lo, hi in (
        ("forward-delay", forward, 2, 30),
        ("hello-time", hello, 1, 10),
        ("max-age", max_age, 6, 40),
    ):
        if value is not None and not lo * 1000 <= value <= hi * 1000:
            problems.append(
                Diagnostic(
                    f"with stp: true, {key} must be {lo}–{hi} seconds (IEEE 802.1D), got {value / 1000:g}",
                    (*dev.origin, "parameters", key),
                )
            )


def _port_vlans(
    vlans: tuple[tuple[int, int], ...],
    pvid: int | None,
    untagged: tuple[tuple[int, int], ...],
    path: KeyPath,
    problems: list[Diagnostic],
) -> PortVlans | None:
    if not (vlans or pvid or untagged):
        return None
    member = {v for lo, hi in vlans for v in range(lo, hi + 1)} | ({pvid} if pvid else set())
    for lo, hi in untagged:
        missing = [v for v in range(lo, hi + 1) if v not in member]
        if missing:
            problems.append(
                Diagnostic(
                    f"untagged VLAN {missing[0]} is not carried by this port; "
                    "add it to vlans or make it the pvid",
                    (*path, "untagged"),
                )
            )
            break
    return PortVlans(vlans=vlans, pvid=pvid, untagged=untagged)


def port_options(table: HostDevices, taps: Mapping[str, GuestTap], problems: list[Diagnostic]) -> None:
    """Apply `kvmnet.ports` of VLAN-aware bridges; runs after overlays added their ports.

    A port may also be a guest's tap (`target:` of a guest interface on this bridge): with
    libvirt before 11.0 this is how a guest's port gets its VLANs on a Linux bridge.
    """
    for dev in table.devs.values():
        if not isinstance(dev.spec, Bridge) or dev.spec.kvmnet is None:
            continue
        for port, cfg in sorted(dev.spec.kvmnet.ports.items()):
            path = (*dev.origin, "kvmnet", "ports", port)
            vlans = _port_vlans(cfg.vlans, cfg.pvid, cfg.untagged, path, problems)
            if port in dev.ports:
                table.devs[port].port_vlans = vlans
                continue
            tap = taps.get(port)
            if tap is not None and tap.bridge == dev.id:
                table.tap_ports.append(TapPort(port, dev.id, path, vlans))
                continue
            if tap is not None:
                why = f"the tap of {format_path(tap.origin)}, which attaches to {tap.bridge}, not {dev.id}"
            else:
                mine = sorted(name for name, t in taps.items() if t.bridge == dev.id)
                why = (
                    f"not a port of bridge {dev.id} (ports: {', '.join(dev.ports) or 'none'}; guest taps "
                    f"on it: {', '.join(mine) or 'none'}, named by a guest interface's target:)"
                )
            problems.append(Diagnostic(f"{port!r} is {why}", path, on_key=True))


def _stack(
    table: HostDevices, dev: Dev, link: str, key: str, path: KeyPath, problems: list[Diagnostic]
) -> None:
    lower = table.devs.get(link)
    if lower is None:
        problems.append(
            Diagnostic(f"link {link!r} is not defined on host {table.host} (defined: {table.known()})", path)
        )
        return
    if lower is dev:
        problems.append(Diagnostic(f"{dev.id} cannot ride on itself", path))
        return
    if key == "VLAN" and not lower.kind.carries_ethernet:
        problems.append(Diagnostic(f"VLANs need an Ethernet link; {link} is a layer-3 GRE tunnel", path))
        return
    dev.lower = link
    lower.stacked.append((key, dev.id))


def _tunnel(
    table: HostDevices, dev: Dev, spec: VxlanTunnel | GreTunnel | GretapTunnel, problems: list[Diagnostic]
) -> None:
    endpoints = [a for a in (spec.local, spec.remote) if a is not None]
    families = {ipaddress.ip_address(a).version for a in endpoints}
    if len(families) > 1:
        problems.append(Diagnostic("local and remote must both be IPv4 or both IPv6", dev.origin))
    dev.ipv6_underlay = 6 in families
    if dev.ipv6_underlay and dev.kind is not Kind.VXLAN:
        problems.append(
            Diagnostic(
                f"mode {dev.kind.value} carries IPv4 endpoints only (IPv6 needs ip6gre/ip6gretap, "
                "which kvmnet does not write yet)",
                (*dev.origin, "local" if spec.local else "remote"),
            )
        )
    dev.local = spec.local
    link = spec.link if isinstance(spec, VxlanTunnel) else None
    if spec.local is not None and spec.local not in table.addresses:
        problems.append(
            Diagnostic(
                f"local {spec.local} is not a static address of host {table.host} "
                f"(its addresses: {', '.join(sorted(table.addresses)) or 'none'})",
                (*dev.origin, "local"),
            )
        )
    if link is not None:
        _stack(table, dev, link, "VXLAN", (*dev.origin, "link"), problems)
    elif spec.local is not None and spec.local in table.addresses:
        # Not bound to a device: networkd creates it Independent=, and the underlay is
        # whichever device holds the local address.
        dev.lower = table.addresses[spec.local]
    elif spec.local is None:
        need = "local: (one of the host's addresses) or link:" if isinstance(spec, VxlanTunnel) else "local:"
        problems.append(
            Diagnostic(
                f"tunnel {dev.id} needs {need} so kvmnet can find its underlay and check the MTU",
                dev.origin,
            )
        )


def _unique_names(table: HostDevices, problems: list[Diagnostic]) -> None:
    seen: dict[str, Dev] = {}
    for dev in table.devs.values():
        if dev.name is None:
            continue
        first = seen.setdefault(dev.name, dev)
        if first is not dev:
            problems.append(
                Diagnostic(
                    f"{dev.id} would be named {dev.name!r} in the kernel, like {first.id}; "
                    "interface names must be unique on a host",
                    dev.origin,
                )
            )


def _unique_vlan_ids(table: HostDevices, problems: list[Diagnostic]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for dev in table.devs.values():
        if isinstance(dev.spec, Vlan) and dev.lower is not None:
            key = (dev.lower, dev.spec.id)
            first = seen.setdefault(key, dev.id)
            if first != dev.id:
                problems.append(
                    Diagnostic(
                        f"VLAN id {dev.spec.id} is already used on link {dev.lower} by {first}; "
                        "VLAN ids must be unique per link",
                        (*dev.origin, "id"),
                    )
                )
