"""What a host's firewall must let in for its tunnels to work.

EL9 installs firewalld and enables it (the `@core` group; anaconda's default): its
default zone drops every port and protocol it was not told about, VXLAN's UDP port and
GRE (IP protocol 47, also gretap's) among them, so tunnels come up and carry nothing.
Debian 12 and Ubuntu install no firewall by default (Ubuntu's ufw is installed but
inactive): nothing to open there, and kvmnet does not install one.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator.plan.types import FirewallPlan, Interface, Kind

#: Linux's VXLAN port when none is configured (the vxlan module's `udp_port` parameter:
#: `ip link add ... type vxlan` without dstport says "Will use Linux kernel default
#: (non-standard value)"); networkd writes no port unless `DestinationPort=` is set.
KERNEL_VXLAN_PORT = 8472
#: The distros whose installer enables a firewall that drops tunnels.
FIREWALLED = frozenset({"el9"})


def vxlan_port(interface: Interface) -> int:
    """The UDP port a VXLAN device sends to and listens on."""
    port = interface.tunnel.port if interface.tunnel else None
    return port if port is not None else KERNEL_VXLAN_PORT


def plan_firewall(distro: str, interfaces: Sequence[Interface]) -> FirewallPlan | None:
    """The ports and protocols to open on `distro`; None where nothing needs opening."""
    if distro not in FIREWALLED:
        return None
    ports = sorted({vxlan_port(i) for i in interfaces if i.kind is Kind.VXLAN})
    protocols = ["gre"] if any(i.kind in (Kind.GRE, Kind.GRETAP) for i in interfaces) else []
    if not ports and not protocols:
        return None
    return FirewallPlan(udp_ports=tuple(ports), protocols=tuple(protocols))
