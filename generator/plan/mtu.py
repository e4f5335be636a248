"""The MTU chain: what each encapsulation costs, and how much fits through an underlay.

Linux counts MTU as the largest IP packet a device sends, without its own Ethernet
header. An encapsulating device therefore has to fit its whole inner frame, plus its
outer headers, inside its underlay's MTU:

    VXLAN over IPv4  50 = outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
    VXLAN over IPv6  70 = outer IPv6 40 + UDP 8 + VXLAN 8 + inner Ethernet 14
    GRE              24 = outer IPv4 20 + GRE 4 (no key, checksum or sequence)
    gretap           38 = GRE 24 + inner Ethernet 14
    802.1Q tag        4 = only where a tagged frame travels *inside* a layer-2 tunnel;
                          a VLAN device on a NIC does not lose MTU (the NIC carries the tag)

Two kernel defaults matter: a VXLAN device created without an underlay link gets MTU
1500 whatever its underlay carries, and a VLAN device inherits its parent's MTU even
when the parent is a tunnel that cannot carry the extra tag. kvmnet refuses both
situations instead of letting traffic vanish, and `mtu: auto` writes the largest MTU
that fits.
"""

from __future__ import annotations

from generator.plan.types import Kind

#: What kvmnet assumes for a physical NIC whose MTU the profile does not set.
ETHERNET_DEFAULT_MTU = 1500
#: What the kernel gives a new bond, bridge without ports, or link-less VXLAN.
KERNEL_DEFAULT_MTU = 1500
VLAN_TAG = 4

_OVERHEAD = {
    (Kind.VXLAN, False): (50, "VXLAN over IPv4 adds 50 bytes"),
    (Kind.VXLAN, True): (70, "VXLAN over IPv6 adds 70 bytes"),
    (Kind.GRE, False): (24, "GRE adds 24 bytes"),
    (Kind.GRETAP, False): (38, "gretap adds 38 bytes"),
}


def overhead(kind: Kind, ipv6: bool) -> tuple[int, str]:
    """Bytes an encapsulation adds, and how to say so in an error."""
    return _OVERHEAD[(kind, ipv6)]


def does_not_fit(requested: int, lower: str, lower_mtu: int, cost: int, why: str) -> str:
    """The error text for an MTU too large for its underlay, with the arithmetic."""
    limit = lower_mtu - cost
    return (
        f"MTU {requested} does not fit: {lower} carries {lower_mtu} and {why}, so at most "
        f"{lower_mtu} - {cost} = {limit} fits; lower the MTU, use mtu: auto, or raise "
        f"{lower}'s MTU to {requested + cost}"
    )
