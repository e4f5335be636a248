"""Stage 3: Profile -> Plan. Every cross-object rule and every derived value lives here."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace

from generator.errors import Diagnostic, PlanError
from generator.model.network import Bond, Bridge, Ethernet, GretapTunnel, GreTunnel, Vlan, VxlanTunnel
from generator.model.network import Route as RouteSpec
from generator.model.profile import Host, Profile
from generator.plan.boot import plan_boot
from generator.plan.chain import MtuSolver
from generator.plan.devices import Dev, GuestTap, HostDevices, TapPort, collect, port_options
from generator.plan.firewall import plan_firewall
from generator.plan.guests import DISTRO_LIBVIRT, plan_guests
from generator.plan.hugepages import unused_hugepages
from generator.plan.ifnames import concrete_names
from generator.plan.mtu import overhead
from generator.plan.names import check_machine_names
from generator.plan.naming import naming_property, unmatched_at_boot
from generator.plan.overlays import OverlayDraft, expand, tunnel_settings
from generator.plan.tuning import plan_bootstrap, plan_kernel, plan_tc
from generator.plan.types import (
    BondSettings,
    BridgeSettings,
    Dhcp,
    GuestPlan,
    HostPlan,
    InstallPlan,
    Interface,
    Kind,
    LinkSettings,
    Match,
    OverlayMember,
    OverlayPlan,
    Plan,
    ResolverPlan,
    Route,
    TunnelSettings,
)
from generator.plan.users import plan_users
from generator.plan.virt import plan_virt

#: netplan key -> systemd.link key, for the offloads an ethernet may switch.
OFFLOADS = (
    ("receive_checksum_offload", "ReceiveChecksumOffload"),
    ("transmit_checksum_offload", "TransmitChecksumOffload"),
    ("tcp_segmentation_offload", "TCPSegmentationOffload"),
    ("tcp6_segmentation_offload", "TCP6SegmentationOffload"),
    ("generic_segmentation_offload", "GenericSegmentationOffload"),
    ("generic_receive_offload", "GenericReceiveOffload"),
    ("large_receive_offload", "LargeReceiveOffload"),
)


def make_plan(profile: Profile) -> Plan:
    problems: list[Diagnostic] = []
    check_machine_names(profile, problems)
    tables = {name: collect(name, host.network, problems) for name, host in sorted(profile.hosts.items())}
    drafts = expand(dict(profile.overlays), tables, problems)
    taps = _guest_taps(profile)
    for name, table in tables.items():
        port_options(table, taps.get(name, {}), problems)
        _unique_vnis(table, problems)
        _filtered_vlans(table, problems)
    solver = MtuSolver(tables, drafts, problems)
    warnings: list[Diagnostic] = []
    hosts = tuple(
        _host(name, profile.hosts[name], table, solver, drafts, taps.get(name, {}), problems, warnings)
        for name, table in tables.items()
    )
    overlays = tuple(_overlay(d, solver) for d in drafts)
    libvirt = {
        name: spec.libvirt_version or DISTRO_LIBVIRT[spec.distro] for name, spec in profile.hosts.items()
    }
    guests = plan_guests(profile.guests, {h.name: h for h in hosts}, libvirt, problems, warnings)
    hosts = tuple(_with_stack(h, profile.hosts[h.name], guests, problems) for h in hosts)
    boot = plan_boot(profile, hosts, problems, warnings)
    if problems:
        unique = list(dict.fromkeys(problems))
        raise PlanError(unique)
    return Plan(
        hosts=hosts,
        overlays=overlays,
        guests=guests,
        warnings=tuple(dict.fromkeys(warnings)),
        boot=boot,
    )


def _with_stack(
    host: HostPlan, spec: Host, guests: Sequence[GuestPlan], problems: list[Diagnostic]
) -> HostPlan:
    """The host's users and virtualization stack (which needs its guests' firmware)."""
    users = plan_users(spec.users, ("hosts", host.name), problems)
    uefi = any(g.host == host.name and g.firmware == "uefi" for g in guests)
    return replace(host, users=users, virt=plan_virt(host, spec.install.packages, users, uefi))


def _guest_taps(profile: Profile) -> dict[str, dict[str, GuestTap]]:
    """Per host, the taps guests name with `target:`, and the bridge each joins."""
    out: dict[str, dict[str, GuestTap]] = {}
    for guest_name, guest in sorted(profile.guests.items()):
        for index, nic in enumerate(guest.interfaces or ()):
            bridge = nic.bridge or nic.network
            if nic.target is not None and bridge is not None:
                origin = ("guests", guest_name, "interfaces", index)
                out.setdefault(guest.host, {}).setdefault(nic.target, GuestTap(bridge, origin))
    return out


def _tap_port(port: TapPort, bridge: Interface, ipv6: bool) -> Interface:
    """A guest tap as a bridge port: networkd applies its VLANs when libvirt creates it."""
    return Interface(
        id=port.tap,
        kind=Kind.TAP,
        origin=port.origin,
        name=port.tap,
        match=Match(name=port.tap),
        concrete_name=port.tap,
        mtu=bridge.mtu,  # libvirt gives the tap its bridge's MTU
        mtu_written=None,
        link_local="no",
        accept_ra=None if ipv6 else False,
        # The guest may be shut off when the host boots: never wait for its tap.
        required_for_online=False,
        master=bridge.id,
        master_kind=Kind.BRIDGE,
        port_vlans=port.vlans,
    )


def _host(
    name: str,
    spec: Host,
    table: HostDevices,
    solver: MtuSolver,
    drafts: list[OverlayDraft],
    guest_taps: Mapping[str, GuestTap],
    problems: list[Diagnostic],
    warnings: list[Diagnostic],
) -> HostPlan:
    ipv6 = spec.kernel.ipv6 == "enabled"
    interfaces = tuple(
        _interface(table, table.devs[i], solver, drafts, problems, ipv6) for i in sorted(table.devs)
    )
    made = concrete_names(name, interfaces, guest_taps, warnings)
    warnings.extend(unmatched_at_boot(interfaces, spec.kernel.cmdline))
    warnings.extend(unused_hugepages(name, spec.kernel.cmdline))
    interfaces = tuple(replace(i, concrete_name=made[i.id]) if i.id in made else i for i in interfaces)
    tc = plan_tc(name, spec, {i.id: i for i in interfaces}, problems)
    by_id = {i.id: i for i in interfaces}
    taps = tuple(_tap_port(p, by_id[p.bridge], ipv6) for p in sorted(table.tap_ports, key=lambda p: p.tap))
    return HostPlan(
        name=name,
        interfaces=interfaces,
        tc=tc,
        kernel=plan_kernel(name, spec.kernel, interfaces, tc, problems),
        bootstrap=plan_bootstrap(spec.bootstrap, interfaces),
        install=_install(name, spec, problems),
        tap_ports=taps,
        resolver=_resolver(spec.distro, interfaces),
        firewall=plan_firewall(spec.distro, interfaces),
    )


def _install(name: str, spec: Host, problems: list[Diagnostic]) -> InstallPlan:
    disk = spec.install.disk
    path = disk if disk is None or disk.startswith("/") else f"/dev/{disk}"
    plan = InstallPlan(
        spec.distro,
        spec.install.mirror,
        spec.install.epel,
        path,
        spec.install.timezone,
        method=spec.install.method,
    )
    if plan.disk_is_link and spec.distro.startswith("ubuntu"):
        # Subiquity's storage `match` compares the kernel path (`path: /dev/sda`), udev's
        # ID_SERIAL or, in newer releases, ID_PATH; a key an older release does not know
        # matches every disk. kvmnet does not guess a serial from a by-id name.
        problems.append(
            Diagnostic(
                f"{disk} is a stable link, which Subiquity's storage match cannot name on "
                f"{spec.distro}: give an Ubuntu host's disk by kernel name (sda, vda, nvme0n1)",
                ("hosts", name, "install", "disk"),
            )
        )
    return plan


#: The package of systemd-resolved by distro: Debian 12 and EL9 ship it apart from
#: `systemd` (Debian: only Suggested), Ubuntu 24.04 too; Ubuntu 22.04's `systemd` has it.
RESOLVED_PACKAGE = {
    "debian12": "systemd-resolved",
    "el9": "systemd-resolved",
    "ubuntu2204": None,
    "ubuntu2404": "systemd-resolved",
}


def _resolver(distro: str, interfaces: Sequence[Interface]) -> ResolverPlan | None:
    """systemd-resolved when some device has nameservers (networkd's DNS=/Domains= reach
    nothing else); without any, the host keeps the resolver it has (docs/hypervisor.md)."""
    if not any(i.dns or i.domains for i in interfaces):
        return None
    return ResolverPlan(RESOLVED_PACKAGE[distro])


def _unique_vnis(table: HostDevices, problems: list[Diagnostic]) -> None:
    seen: dict[int, str] = {}
    for dev in table.devs.values():
        vni = dev.vni
        if vni is None:
            continue
        first = seen.setdefault(vni, dev.id)
        if first != dev.id:
            problems.append(
                Diagnostic(
                    f"VNI {vni} is already used on host {table.host} by {first}; "
                    "VNIs must be unique per host",
                    (*dev.origin, "id") if dev.spec is not None else (*dev.origin, "vni"),
                )
            )


def _filtered_vlans(table: HostDevices, problems: list[Diagnostic]) -> None:
    """A VLAN device on a VLAN-filtering bridge only sees VLANs the bridge's own port carries."""
    for dev in table.devs.values():
        if not isinstance(dev.spec, Vlan) or dev.lower is None:
            continue
        bridge = table.devs[dev.lower]
        if not isinstance(bridge.spec, Bridge) or not (
            bridge.spec.kvmnet and bridge.spec.kvmnet.vlan_filtering
        ):
            continue
        own = bridge.port_vlans
        carried = {v for lo, hi in (own.vlans if own else ()) for v in range(lo, hi + 1)}
        if dev.spec.id not in carried:
            problems.append(
                Diagnostic(
                    f"{dev.id} (VLAN {dev.spec.id}) sits on VLAN-filtering bridge {bridge.id}, whose own "
                    f"port does not carry VLAN {dev.spec.id}; add it to bridges.{bridge.id}.kvmnet.vlans",
                    (*dev.origin, "id"),
                )
            )


def _overlay(draft: OverlayDraft, solver: MtuSolver) -> OverlayPlan:
    return OverlayPlan(
        name=draft.name,
        vni=draft.spec.vni,
        device=draft.device,
        bridge=draft.spec.bridge,
        port=draft.spec.port,
        mtu=solver.segment(draft.name),
        overhead=overhead(Kind.VXLAN, draft.ipv6)[0],
        members=tuple(OverlayMember(h, u, local) for h, u, local in draft.members),
    )


def _routes(
    routes: tuple[RouteSpec, ...], path: tuple[str | int, ...], problems: list[Diagnostic]
) -> tuple[Route, ...]:
    out = []
    for index, route in enumerate(routes):
        via = ipaddress.ip_address(route.via) if route.via else None
        if route.to == "default":
            version = via.version if via is not None else 4
            destination = "::/0" if version == 6 else "0.0.0.0/0"
        else:
            version = ipaddress.ip_interface(route.to).version
            destination = str(ipaddress.ip_interface(route.to).network)
            if via is not None and version != via.version:
                message = f"route to {route.to} via {route.via} mixes IPv4 and IPv6"
                problems.append(Diagnostic(message, (*path, index, "via")))
        scope = _route_scope(route, version, (*path, index, "scope"), problems)
        out.append(
            Route(
                destination=destination,
                gateway=route.via,
                preferred_source=route.from_,
                metric=route.metric,
                on_link=route.on_link,
                table=route.table,
                scope=scope,
                type=route.type if route.type != "unicast" else None,
            )
        )
    return tuple(out)


def _route_scope(
    route: RouteSpec, version: int, path: tuple[str | int, ...], problems: list[Diagnostic]
) -> str | None:
    """`Scope=` to write: the one asked for, unless it is what networkd picks anyway.

    networkd 252 gives an IPv4 unicast route without a gateway scope link and any other
    IPv4 route scope global (route_section_verify()); IPv6 routes have no scope.
    """
    if route.scope is None:
        return None
    if version == 6:
        if route.scope != "global":
            problems.append(Diagnostic("scope applies to IPv4 routes only; IPv6 routes have none", path))
        return None
    implied = "link" if route.via is None and route.type in (None, "unicast") else "global"
    return None if route.scope == implied else route.scope


def _link_local(dev: Dev, ipv6: bool, problems: list[Diagnostic]) -> str:
    if dev.master is not None:
        return "no"  # ports carry frames for their master; an address of their own would be noise
    spec = dev.spec
    if spec is None or spec.link_local is None:
        # netplan's default is IPv6 link-local. With IPv6 off it must be "no": networkd
        # re-enables IPv6 on any link it configures for IPv6, undoing disable_ipv6.
        return "ipv6" if ipv6 else "no"
    families = set(spec.link_local)
    if "ipv6" in families and not ipv6:
        problems.append(
            Diagnostic(
                "link-local ipv6 asked for, but the host's kernel.ipv6 is not enabled",
                (*dev.origin, "link-local"),
            )
        )
        families.discard("ipv6")
    if families == {"ipv4", "ipv6"}:
        return "yes"
    return families.pop() if families else "no"


def _interface(
    table: HostDevices,
    dev: Dev,
    solver: MtuSolver,
    drafts: list[OverlayDraft],
    problems: list[Diagnostic],
    ipv6: bool,
) -> Interface:
    mtu = solver.of(table.host, dev.id)
    spec = dev.spec
    master = table.devs.get(dev.master) if dev.master else None
    master_spec = master.spec if master else None
    params = master_spec.parameters if isinstance(master_spec, Bridge) else None
    gateways: tuple[str, ...] = ()
    if spec is not None:
        for key, version in (("gateway4", 4), ("gateway6", 6)):
            gateway = getattr(spec, key)
            if gateway is not None and ipaddress.ip_address(gateway).version != version:
                problems.append(Diagnostic(f"{key} must be an IPv{version} address", (*dev.origin, key)))
        gateways = tuple(g for g in (spec.gateway4, spec.gateway6) if g)
    return Interface(
        id=dev.id,
        kind=dev.kind,
        origin=dev.origin,
        name=dev.name,
        match=_match(dev),
        concrete_name=dev.name,  # the NICs without a name get theirs in _host
        mtu=mtu.mtu,
        mtu_written=mtu.written,
        mtu_chain=mtu.chain,
        link=_link_settings(dev),
        macaddress=spec.macaddress if spec else None,
        addresses=spec.addresses if spec else (),
        gateways=gateways,
        routes=_routes(spec.routes, (*dev.origin, "routes"), problems) if spec else (),
        dns=spec.nameservers.addresses if spec and spec.nameservers else (),
        domains=spec.nameservers.search if spec and spec.nameservers else (),
        dhcp=_dhcp(dev),
        dhcp4_client_id="mac" if spec and spec.dhcp4 else None,
        link_local=_link_local(dev, ipv6, problems),
        accept_ra=_accept_ra(dev, ipv6, problems),
        required_for_online=not (spec.optional if spec else False),
        configure_without_carrier=dev.kind.is_netdev,
        master=dev.master,
        master_kind=master.kind if master else None,
        primary_port=isinstance(master_spec, Bond)
        and master_spec.parameters is not None
        and master_spec.parameters.primary == dev.id,
        port_cost=params.path_cost.get(dev.id) if params else None,
        port_priority=params.port_priority.get(dev.id) if params else None,
        port_vlans=dev.port_vlans,
        stacked=tuple(sorted(dev.stacked)),
        fdb=tuple(dev.fdb),
        lower=dev.lower,
        bridge=_bridge(dev),
        bond=_bond(spec) if isinstance(spec, Bond) else None,
        vlan_id=spec.id if isinstance(spec, Vlan) else None,
        tunnel=_tunnel(dev, drafts),
    )


def _accept_ra(dev: Dev, ipv6: bool, problems: list[Diagnostic]) -> bool | None:
    asked = dev.spec.accept_ra if dev.spec else None
    if ipv6:
        return asked
    if asked:
        problems.append(
            Diagnostic(
                "accept-ra asked for, but the host's kernel.ipv6 is not enabled", (*dev.origin, "accept-ra")
            )
        )
    return False


def _dhcp(dev: Dev) -> Dhcp | None:
    spec = dev.spec
    if spec is None:
        return None
    if spec.dhcp4 and spec.dhcp6:
        return Dhcp.YES
    if spec.dhcp4:
        return Dhcp.IPV4
    return Dhcp.IPV6 if spec.dhcp6 else None


def _match(dev: Dev) -> Match:
    spec = dev.spec
    if isinstance(spec, Ethernet) and spec.match is not None:
        return Match(name=spec.set_name or spec.match.name, mac=spec.match.macaddress)
    return Match(name=dev.id)


def _link_settings(dev: Dev) -> LinkSettings | None:
    spec = dev.spec
    if not isinstance(spec, Ethernet):
        return None
    offloads = tuple((key, getattr(spec, attr)) for attr, key in OFFLOADS if getattr(spec, attr) is not None)
    # netplan writes a .link only when udev has something to do before networkd runs.
    if not (spec.set_name or spec.mtu or spec.wakeonlan or offloads):
        return None
    match = Match(name=spec.match.name, mac=spec.match.macaddress) if spec.match else Match(name=dev.id)
    return LinkSettings(
        match=match,
        name_property=naming_property(match.name) if match.name is not None else None,
        name=spec.set_name,
        wake_on_lan=spec.wakeonlan,
        mtu=spec.mtu,
        offloads=offloads,
    )


def _bridge(dev: Dev) -> BridgeSettings | None:
    if dev.kind is not Kind.BRIDGE:
        return None
    spec = dev.spec
    if not isinstance(spec, Bridge):
        return BridgeSettings()
    p = spec.parameters
    ext = spec.kvmnet
    return BridgeSettings(
        stp=p.stp if p else None,
        forward_delay_ms=p.forward_delay if p else None,
        hello_time_ms=p.hello_time if p else None,
        max_age_ms=p.max_age if p else None,
        ageing_time_ms=p.ageing_time if p else None,
        priority=p.priority if p else None,
        vlan_filtering=bool(ext and ext.vlan_filtering),
        default_pvid=ext.default_pvid if ext else None,
        mac_from_ports=bool(spec.dhcp4) and spec.macaddress is None,
    )


def _bond(spec: Bond) -> BondSettings:
    p = spec.parameters
    if p is None:
        return BondSettings()
    return BondSettings(
        mode=p.mode,
        lacp_rate=p.lacp_rate,
        mii_monitor_ms=p.mii_monitor_interval,
        min_links=p.min_links,
        transmit_hash_policy=p.transmit_hash_policy,
        ad_select=p.ad_select,
        all_slaves_active=p.all_slaves_active,
        arp_interval_ms=p.arp_interval,
        arp_ip_targets=p.arp_ip_targets,
        arp_validate=p.arp_validate,
        arp_all_targets=p.arp_all_targets,
        up_delay_ms=p.up_delay,
        down_delay_ms=p.down_delay,
        fail_over_mac_policy=p.fail_over_mac_policy,
        gratuitous_arp=p.gratuitous_arp,
        packets_per_slave=p.packets_per_slave,
        primary_reselect_policy=p.primary_reselect_policy,
        resend_igmp=p.resend_igmp,
        learn_packet_interval_ms=p.learn_packet_interval,
    )


def _tunnel(dev: Dev, drafts: list[OverlayDraft]) -> TunnelSettings | None:
    spec = dev.spec
    if dev.overlay is not None and dev.kind is Kind.VXLAN:
        draft = next(d for d in drafts if d.name == dev.overlay)
        return tunnel_settings(draft, dev.local or "")
    if isinstance(spec, VxlanTunnel):
        remote = ipaddress.ip_address(spec.remote) if spec.remote else None
        multicast = remote is not None and remote.is_multicast
        return TunnelSettings(
            local=spec.local,
            remote=None if multicast else spec.remote,
            group=spec.remote if multicast else None,
            ttl=spec.ttl,
            vni=spec.id,
            port=spec.port,
            mac_learning=spec.mac_learning,
            independent=spec.link is None,
        )
    if isinstance(spec, GreTunnel | GretapTunnel):
        return TunnelSettings(local=spec.local, remote=spec.remote, ttl=spec.ttl, independent=True)
    return None
