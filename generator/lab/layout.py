"""What a lab is made of, derived from the plan and the generated guest files: one namespace
per hypervisor with veth NICs into the lab switch, one per guest with veths in place of
its taps. Pure: nothing here touches the machine.

The lab switch is one namespace with one bridge per NIC name: every host's `eno1` is a
port of the switch's bridge `eno1`, as if each NIC of that name were cabled to one
top-of-rack switch (or VLAN). Its ports take the largest MTU of the NICs on that wire,
so the hosts' own MTUs are what limits a frame, as with a jumbo-frame switch.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from generator.lab import guestfiles, sysctls
from generator.lab.names import LabError, Names
from generator.plan.types import GuestNic, HostPlan, Interface, Kind, Plan


def kernel_name(iface: Interface) -> str:
    """The device's name in the lab: the plan's `concrete_name`."""
    if iface.concrete_name is None:  # the plan warned
        raise LabError.single(f"the plan has no name for {iface.id} in the lab (`kvmnet validate` says why)")
    return iface.concrete_name


@dataclass(frozen=True)
class HostNic:
    name: str  # in the host's namespace
    mac: str | None  # the NIC's burnt-in address, as the profile matches it
    wire: str  # the switch bridge it is cabled to
    port: str  # its peer, a port of that bridge in the switch namespace


@dataclass(frozen=True)
class HostLayout:
    name: str
    ns: str
    nics: tuple[HostNic, ...]


@dataclass(frozen=True)
class Wire:
    name: str
    mtu: int


@dataclass(frozen=True)
class GuestPort:
    """A guest NIC: the tap end on the host (from domain.xml), the guest end (network-config)."""

    tap: str
    bridge: str
    tap_mtu: int | None
    vlan: int | None  # libvirt tags the tap's bridge port (libvirt >= 11)
    queues: int | None
    joined_by_networkd: bool  # a generated tap-port .network makes it a bridge port
    mac: str
    name: str  # in the guest
    mtu: int | None
    addresses: tuple[str, ...]
    routes: tuple[tuple[str, str | None], ...]
    dhcp4: bool
    planned: GuestNic


@dataclass(frozen=True)
class GuestLayout:
    name: str
    host: str
    ns: str
    ports: tuple[GuestPort, ...]
    sysctls: tuple[sysctls.Setting, ...]


@dataclass(frozen=True)
class Layout:
    names: Names
    wires: tuple[Wire, ...]
    hosts: tuple[HostLayout, ...]
    guests: tuple[GuestLayout, ...]

    def host(self, name: str) -> HostLayout:
        return next(h for h in self.hosts if h.name == name)

    def guest(self, name: str) -> GuestLayout:
        return next(g for g in self.guests if g.name == name)


def nics_of(host: HostPlan) -> list[Interface]:
    return [i for i in host.interfaces if i.kind is Kind.ETHERNET]


def make_layout(names: Names, plan: Plan, output: Path) -> Layout:
    wires: dict[str, int] = {}
    hosts = []
    for h, host in enumerate(plan.hosts):
        nics = []
        for n, nic in enumerate(nics_of(host)):
            name = kernel_name(nic)
            wires[name] = max(wires.get(name, 0), nic.mtu)
            nics.append(HostNic(name, nic.match.mac, wire=name, port=f"p{h}-{n}"))
        hosts.append(HostLayout(host.name, names.host(host.name), tuple(nics)))
    guests = []
    vnets: dict[str, int] = {}
    for guest in plan.guests:
        host = next(h for h in plan.hosts if h.name == guest.host)
        configs = {c.mac: c for c in guestfiles.network_config(output, guest.name)}
        ports = []
        for index, dnic in enumerate(guestfiles.domain_nics(output, guest.host, guest.name)):
            if dnic.target:
                tap = dnic.target
            else:  # as libvirt names taps it was not given a name for
                tap = f"vnet{vnets.get(guest.host, 0)}"
                vnets[guest.host] = vnets.get(guest.host, 0) + 1
            config = configs.get(dnic.mac)
            planned = next(n for n in guest.nics if n.mac == dnic.mac)
            ports.append(
                GuestPort(
                    tap=tap,
                    bridge=dnic.bridge,
                    tap_mtu=dnic.mtu,
                    vlan=dnic.vlan,
                    queues=dnic.queues,
                    joined_by_networkd=any(t.id == tap for t in host.tap_ports),
                    mac=dnic.mac,
                    name=config.name if config else f"eth{index}",
                    mtu=config.mtu if config else None,
                    addresses=config.addresses if config else (),
                    routes=config.routes if config else (),
                    dhcp4=config.dhcp4 if config else False,
                    planned=planned,
                )
            )
        guests.append(
            GuestLayout(
                guest.name,
                guest.host,
                names.guest(guest.name),
                tuple(ports),
                sysctls.parse(guestfiles.sysctl_text(output, guest.name)),
            )
        )
    return Layout(names, tuple(Wire(n, m) for n, m in sorted(wires.items())), tuple(hosts), tuple(guests))


def planned_addresses(iface: Interface) -> set[str]:
    """The interface's static addresses, spelled as the kernel read-back spells them."""
    return {str(ipaddress.ip_interface(a)) for a in iface.addresses}


def free_address(network: ipaddress.IPv4Network | ipaddress.IPv6Network, used: set[str]) -> str | None:
    """The highest address of `network` that no one in the plan uses (for a probe)."""
    hosts = list(network.hosts()) if network.num_addresses <= 4096 else [network[-2], network[-3]]
    for candidate in reversed(hosts):
        if str(candidate) not in used:
            return str(candidate)
    return None
