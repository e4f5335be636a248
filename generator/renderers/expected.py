"""The expected state of every machine, as data: what the generated check suites compare with.

One JSON document per host and per guest (`output/tests/host_<host>.json`,
`guest_<guest>.json`), made from the plan only. Keys appear only where the plan has
something to check, so a document reads as a description of the machine. Every check
carries a scope: `netns` when a network namespace shows it (devices, addresses, qdiscs,
per-namespace sysctls), `machine` when only the whole machine does (kernel modules and
command line, systemd units, global sysctls).

The documents' schema is the TypedDicts of the check library that reads them
(generator/checks/kvmnet_checks.py): mypy checks this writer and that reader against the
same types. They are imported for type checking only: the library imports pytest, which a
plain install of the generator does not have.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Final

from generator import layout
from generator.plan.types import (
    ETHTOOL_FEATURES,
    KIND_MODULES,
    POLICE_MODULES,
    QDISC_MODULES,
    GuestPlan,
    HostPlan,
    Interface,
    Kind,
    Plan,
    Shaper,
    TcEngine,
    TcPlan,
    TunnelSettings,
    UserPlan,
)
from generator.plan.users import SUDO_RULE

if TYPE_CHECKING:
    from generator.checks.kvmnet_checks import (
        Argument,
        GuestState,
        HostState,
        Link,
        LinkBridge,
        LinkGre,
        LinkMatch,
        LinkRoute,
        LinkVxlan,
        Module,
        Nic,
        Opening,
        Qdisc,
        QdiscRate,
        Resolver,
        Scope,
        Sysctl,
        User,
    )

NETNS: Final = "netns"
MACHINE: Final = "machine"


# --- sysctl scopes ---------------------------------------------------------------------
# A network namespace has its own copy of most net.* sysctls, but not all: on Debian 12's
# kernel 6.1, net.core.* (except somaxconn), tcp_mem, udp_mem and the neighbour table's
# gc_thresh* are global and absent or read-only inside a namespace. Those are `machine`
# checks, so that a namespace lab never reports the host's global value as the guest's.
# Keys not known to be per-namespace count as global: a missed check in the lab is better
# than a wrong one.
_PER_NAMESPACE = re.compile(
    r"""^net\.(
        core\.somaxconn
      | ipv4\.conf\..+ | ipv6\.conf\..+
      | ipv4\.(ip_forward|ip_nonlocal_bind|ip_local_port_range|ip_no_pmtu_disc
              |fib_multipath_hash_policy|icmp_echo_ignore_broadcasts|icmp_ratelimit)
      | ipv4\.tcp_(?!mem$)[a-z0-9_]+
      | bridge\..+
      | netfilter\.nf_conntrack_tcp_timeout_established
    )$""",
    re.VERBOSE,
)


def sysctl_scope(key: str) -> Scope:
    return NETNS if _PER_NAMESPACE.match(key) else MACHINE


# --- hosts -----------------------------------------------------------------------------


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _needs(host: HostPlan, iface: Interface) -> list[str]:
    """Modules without which the device cannot exist: its own kind's, then its lower device's."""
    needs: list[str] = []
    current: Interface | None = iface
    while current is not None:
        module = KIND_MODULES[current.kind][0] if current.kind in KIND_MODULES else None
        if module and module not in needs:
            needs.append(module)
        bound = current.lower is not None and not (current.tunnel and current.tunnel.independent)
        current = host.get(current.lower) if bound and current.lower else None
    return needs


def _match(iface: Interface) -> LinkMatch:
    match: LinkMatch = {}
    if iface.match.name is not None:
        match["name"] = iface.match.name
    if iface.match.mac is not None:
        match["mac"] = iface.match.mac
    return match


def _vxlan(vni: int, tunnel: TunnelSettings) -> LinkVxlan:
    vxlan: LinkVxlan = {"vni": vni}
    if tunnel.local:
        vxlan["local"] = tunnel.local
    if tunnel.remote:
        vxlan["remote"] = tunnel.remote
    if tunnel.group:
        vxlan["group"] = tunnel.group
    if tunnel.port is not None:
        vxlan["port"] = tunnel.port
    return vxlan


def _gre(tunnel: TunnelSettings) -> LinkGre:
    gre: LinkGre = {}
    if tunnel.local:
        gre["local"] = tunnel.local
    if tunnel.remote:
        gre["remote"] = tunnel.remote
    if tunnel.ttl is not None:
        gre["ttl"] = tunnel.ttl
    return gre


def _routes(iface: Interface) -> list[LinkRoute]:
    """The routes networkd adds for the device: `Gateway=` (a default route), then `[Route]`s."""
    routes: list[LinkRoute] = [
        {"destination": "::/0" if ":" in gateway else "0.0.0.0/0", "gateway": gateway}
        for gateway in iface.gateways
    ]
    for route in iface.routes:
        entry: LinkRoute = {"destination": route.destination}
        if route.gateway is not None:
            entry["gateway"] = route.gateway
        if route.metric is not None:
            entry["metric"] = route.metric
        if route.table is not None:
            entry["table"] = route.table
        if route.type is not None:
            entry["type"] = route.type
        routes.append(entry)
    return routes


def link_entry(host: HostPlan, iface: Interface, guest: str | None = None) -> Link:
    entry: Link = {"id": iface.id, "name": iface.name, "kind": iface.kind.value, "mtu": iface.mtu}
    if iface.name is None:  # networkd finds it by [Match]: so does the check
        entry["match"] = _match(iface)
    elif iface.kind is Kind.ETHERNET and iface.match.mac:
        entry["mac"] = iface.match.mac
    if guest is not None:
        entry["guest"] = guest  # a guest's tap: libvirt makes it while the guest runs
    if needs := _needs(host, iface):
        entry["needs"] = needs
    if iface.master:
        master = host.get(iface.master)
        entry["master"] = {
            "name": master.netdev_name,
            "kind": master.kind.value,
            "needs": _needs(host, master),
        }
    if iface.addresses:
        entry["addresses"] = list(iface.addresses)
    if routes := _routes(iface):
        entry["routes"] = routes
    if iface.dns or iface.domains:
        entry["dns"] = {"servers": list(iface.dns), "domains": list(iface.domains)}
    if iface.kind is Kind.VLAN and iface.vlan_id is not None and iface.lower:
        entry["vlan"] = {"id": iface.vlan_id, "link": host.get(iface.lower).netdev_name}
    tunnel = iface.tunnel
    if iface.kind is Kind.VXLAN and tunnel is not None and tunnel.vni is not None:
        entry["vxlan"] = _vxlan(tunnel.vni, tunnel)
    if iface.kind in (Kind.GRE, Kind.GRETAP) and tunnel is not None:
        entry["gre"] = _gre(tunnel)
    if iface.bridge is not None:
        bridge: LinkBridge = {"vlan_filtering": iface.bridge.vlan_filtering}
        if iface.bridge.stp is not None:
            bridge["stp"] = iface.bridge.stp
        pvid = iface.bridge.default_pvid
        if pvid is not None:
            bridge["default_pvid"] = 0 if pvid == "none" else int(pvid)
        entry["bridge"] = bridge
    if iface.fdb:
        entry["fdb"] = [{"mac": f.mac, "dst": f.destination} for f in iface.fdb]
    if iface.link is not None and iface.link.offloads:
        entry["offloads"] = [
            {"setting": key, "features": list(ETHTOOL_FEATURES[key]), "on": on}
            for key, on in iface.link.offloads
        ]
    if iface.port_vlans is not None:
        vlans = iface.port_vlans
        entry["port_vlans"] = {
            "vlans": [_span(lo, hi) for lo, hi in vlans.vlans],
            "pvid": vlans.pvid,
            "untagged": [_span(lo, hi) for lo, hi in vlans.untagged],
        }
    return entry


def qdisc_entry(tc: TcPlan) -> Qdisc:
    entry: Qdisc = {"device": tc.device, "engine": tc.engine}
    kind, root, shaper_class = tc.root_kind, tc.root_id, tc.shaper_class
    if kind is not None and root is not None:  # None: only policed, the root is not kvmnet's
        entry["root"] = {"kind": kind, "handle": root, "module": QDISC_MODULES[kind]}
    if tc.shape is not None:
        rate: QdiscRate = {"kind": tc.shape.kind, "rate": tc.shape.rate}
        if tc.shape.kind is Shaper.HTB and shaper_class is not None:
            rate["class"] = shaper_class
            rate["ceil"] = tc.shape.ceil or tc.shape.rate
        entry["rate"] = rate
    if tc.mq_id is not None and tc.qdisc is not None:
        entry["per_queue"] = {"kind": tc.qdisc, "mq": tc.mq_id, "module": QDISC_MODULES[tc.qdisc]}
    if tc.leaf_id is not None and tc.qdisc is not None and tc.qdisc_parent is not None:
        entry["leaf"] = {
            "kind": tc.qdisc,
            "handle": tc.leaf_id,
            "module": QDISC_MODULES[tc.qdisc],
            "parent": tc.qdisc_parent,
        }
    if tc.police is not None:
        entry["police"] = {
            "rate": tc.police.rate,
            "burst": tc.police.burst,
            "mtu": tc.police.mtu,
            "needs": list(POLICE_MODULES),
        }
    if tc.engine is TcEngine.SERVICE:
        entry["unit"] = tc.unit
    return entry


def _tap_guests(plan: Plan, host: HostPlan) -> dict[str, str]:
    return {
        nic.target: guest.name
        for guest in plan.guests
        if guest.host == host.name
        for nic in guest.nics
        if nic.target
    }


def _sysctl(key: str, value: str, optional: bool = False) -> Sysctl:
    entry: Sysctl = {"key": key, "value": value, "scope": sysctl_scope(key)}
    if optional:
        entry["optional"] = True
    return entry


def _resolver(host: HostPlan) -> Resolver | None:
    if host.resolver is None:
        return None
    stub = posixpath.normpath(posixpath.join(posixpath.dirname(layout.RESOLV_CONF), host.resolver.stub))
    return {"unit": layout.RESOLVED_UNIT, "resolv_conf": layout.RESOLV_CONF, "stub": stub}


def _firewall(host: HostPlan) -> list[Opening]:
    if host.firewall is None:
        return []
    openings: list[Opening] = [{"kind": "port", "value": p, "name": p} for p in host.firewall.ports]
    openings += [{"kind": "protocol", "value": p, "name": p} for p in host.firewall.protocols]
    return openings


def host_state(plan: Plan, host: HostPlan, generated: str) -> HostState:
    taps = _tap_guests(plan, host)
    kernel = host.kernel
    modules: list[Module] = [{"name": name, "why": why} for name, why in kernel.modules]
    cmdline: list[Argument] = [{"argument": arg} for arg in kernel.cmdline]
    return {
        "generated": generated,
        "machine": host.name,
        "role": "host",
        "links": [link_entry(host, i) for i in host.interfaces]
        + [link_entry(host, t, guest=taps.get(t.id, "?")) for t in host.tap_ports],
        "qdiscs": [qdisc_entry(t) for t in host.tc],
        "sysctls": [_sysctl(s.key, s.value, s.optional) for s in kernel.sysctls],
        "modules": modules,
        "cmdline": cmdline,
        "reboot_marker": layout.REBOOT_MARKER,
        "resolver": _resolver(host),
        "firewall": _firewall(host),
        "users": [_user(u) for u in host.users],
        "packages": [
            {"name": name, "manager": "rpm" if host.install.distro == "el9" else "dpkg"}
            for name in host.virt.packages
        ],
        "libvirt": {"uri": host.virt.uri, "units": list(host.virt.units)},
        "networks": [{"name": name, "uri": host.virt.uri} for name in host.virt.networks],
    }


def _user(user: UserPlan) -> User:
    return {
        "name": user.name,
        "shell": user.shell,
        "groups": list(user.groups),
        "ssh_keys": list(user.ssh_keys),
        "sudoers": layout.sudoers_file(user.name) if user.sudo else None,
        "sudo_rule": f"{user.name} {SUDO_RULE}" if user.sudo else None,
    }


# --- guests ----------------------------------------------------------------------------


def guest_state(guest: GuestPlan, generated: str) -> GuestState:
    nics: list[Nic] = []
    for nic in guest.nics:
        entry: Nic = {
            "name": nic.name,
            "mac": nic.mac,
            "model": nic.model,
            "mtu": nic.mtu,
            "dhcp4": nic.dhcp4,
            "ipv6": guest.ipv6,
        }
        if nic.addresses:
            entry["addresses"] = list(nic.addresses)
        if nic.channels is not None:
            entry["channels"] = nic.channels
        if nic.rx_ring is not None:
            entry["rx_ring"] = nic.rx_ring
        nics.append(entry)
    sysctls = [_sysctl(s.key, s.value) for s in guest.sysctls]
    return {
        "generated": generated,
        "machine": guest.name,
        "role": "guest",
        "hypervisor": guest.host,
        "vcpus": guest.vcpus,
        "nics": nics,
        "sysctls": sysctls,
    }
