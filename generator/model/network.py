"""A host's `network:` section: netplan v2's vocabulary, plus kvmnet's extensions.

The netplan part takes the same keys and values as netplan 0.106, so an existing
netplan file (or cloud-init network-config v2) can be pasted in. kvmnet's own
additions are kept apart so that removing them leaves a valid netplan file:
- `kvmnet:` blocks inside a device (VLAN-aware bridges);
- the value `mtu: auto` (the largest MTU the underlay can carry).
Netplan keys kvmnet does not write for networkd are refused by name, not ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from generator.model.base import Entries, Items, StrictModel, no_entries
from generator.model.types import (
    DeviceId,
    DomainName,
    Flag,
    InterfaceName,
    IPAddress,
    IPInterface,
    MacAddress,
    Metric,
    Mtu,
    MtuOrAuto,
    NameGlob,
    RouteDestination,
    RouteTable,
    Ttl,
    UdpPort,
    VlanId,
    VlanRange,
    Vni,
    fail,
    ranged,
    timespan,
)


class Match(StrictModel):
    name: NameGlob | None = None
    macaddress: MacAddress | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if self.name is None and self.macaddress is None:
            raise fail("match needs 'name' or 'macaddress'")
        return self


class Nameservers(StrictModel):
    addresses: Items[IPAddress] = ()
    search: Items[DomainName] = ()


class Route(StrictModel):
    to: RouteDestination
    via: IPAddress | None = None
    from_: IPAddress | None = None
    metric: Metric | None = None
    on_link: Flag | None = None
    table: RouteTable | None = None
    scope: Literal["global", "link", "host"] | None = None
    type: Literal["unicast", "blackhole", "unreachable", "prohibit", "throw"] | None = None


class Device(StrictModel):
    """Keys every netplan device type shares."""

    addresses: Items[IPInterface] = ()
    routes: Items[Route] = ()
    gateway4: IPAddress | None = None
    gateway6: IPAddress | None = None
    nameservers: Nameservers | None = None
    dhcp4: Flag = False
    dhcp6: Flag = False
    link_local: Items[Literal["ipv4", "ipv6"]] | None = None
    accept_ra: Flag | None = None
    macaddress: MacAddress | None = None
    optional: Flag = False


class Ethernet(Device):
    match: Match | None = None
    set_name: InterfaceName | None = None
    mtu: Mtu | None = None
    wakeonlan: Flag = False
    receive_checksum_offload: Flag | None = None
    transmit_checksum_offload: Flag | None = None
    tcp_segmentation_offload: Flag | None = None
    tcp6_segmentation_offload: Flag | None = None
    generic_segmentation_offload: Flag | None = None
    generic_receive_offload: Flag | None = None
    large_receive_offload: Flag | None = None

    @model_validator(mode="after")
    def _set_name_needs_match(self) -> Ethernet:
        if self.set_name is not None and self.match is None:
            raise fail("set-name needs a match: (a device can only be renamed once it is found)")
        return self


BridgePriority = Annotated[int, ranged(0, 65_535, "bridge priority")]
PortPriority = Annotated[int, ranged(0, 63, "bridge port priority")]
PathCost = Annotated[int, ranged(1, 65_535, "bridge path cost")]


class BridgeParameters(StrictModel):
    stp: Flag | None = None
    forward_delay: Annotated[int, timespan("s", "forward-delay")] | None = None
    hello_time: Annotated[int, timespan("s", "hello-time")] | None = None
    max_age: Annotated[int, timespan("s", "max-age")] | None = None
    ageing_time: Annotated[int, timespan("s", "ageing-time")] | None = None
    priority: BridgePriority | None = None
    path_cost: Entries[DeviceId, PathCost] = Field(default_factory=no_entries)
    port_priority: Entries[DeviceId, PortPriority] = Field(default_factory=no_entries)


class BridgePortVlans(StrictModel):
    """kvmnet extension: the VLANs one bridge port carries (networkd `[BridgeVLAN]`)."""

    vlans: Items[VlanRange] = ()
    pvid: VlanId | None = None
    untagged: Items[VlanRange] = ()


class BridgeExtension(BridgePortVlans):
    """kvmnet extension: a VLAN-aware bridge.

    `vlans`/`pvid`/`untagged` at this level are the bridge's own port (where the host's
    VLAN devices on top of the bridge attach); `ports` configures its member ports.
    """

    vlan_filtering: Flag = False
    default_pvid: VlanId | Literal["none"] | None = None
    ports: Entries[InterfaceName, BridgePortVlans] = Field(default_factory=no_entries)


class Bridge(Device):
    interfaces: Items[DeviceId] = ()
    parameters: BridgeParameters | None = None
    mtu: MtuOrAuto | None = None
    kvmnet: BridgeExtension | None = None


BondMode = Literal[
    "balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"
]


class BondParameters(StrictModel):
    mode: BondMode | None = None
    lacp_rate: Literal["slow", "fast"] | None = None
    mii_monitor_interval: Annotated[int, timespan("ms", "mii-monitor-interval")] | None = None
    min_links: Annotated[int, ranged(0, 1024, "min-links")] | None = None
    transmit_hash_policy: Literal["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4"] | None = None
    ad_select: Literal["stable", "bandwidth", "count"] | None = None
    all_slaves_active: Flag | None = None
    arp_interval: Annotated[int, timespan("ms", "arp-interval")] | None = None
    arp_ip_targets: Items[IPAddress] = ()
    arp_validate: Literal["none", "active", "backup", "all"] | None = None
    arp_all_targets: Literal["any", "all"] | None = None
    up_delay: Annotated[int, timespan("ms", "up-delay")] | None = None
    down_delay: Annotated[int, timespan("ms", "down-delay")] | None = None
    fail_over_mac_policy: Literal["none", "active", "follow"] | None = None
    gratuitous_arp: Annotated[int, ranged(1, 255, "gratuitous-arp")] | None = None
    packets_per_slave: Annotated[int, ranged(0, 65_535, "packets-per-slave")] | None = None
    primary_reselect_policy: Literal["always", "better", "failure"] | None = None
    resend_igmp: Annotated[int, ranged(0, 255, "resend-igmp")] | None = None
    learn_packet_interval: Annotated[int, timespan("s", "learn-packet-interval")] | None = None
    primary: DeviceId | None = None

    @model_validator(mode="after")
    def _whole_seconds(self) -> BondParameters:
        # The bonding driver counts learning packets' interval in seconds, from 1.
        interval = self.learn_packet_interval
        if interval is not None and (interval < 1000 or interval % 1000):
            raise fail(f"learn-packet-interval must be whole seconds, at least 1s, got {interval}ms")
        return self


class Bond(Device):
    interfaces: Items[DeviceId] = ()
    parameters: BondParameters | None = None
    mtu: Mtu | None = None


class Vlan(Device):
    id: VlanId
    link: DeviceId
    mtu: MtuOrAuto | None = None


class _Tunnel(Device):
    local: IPAddress | None = None
    ttl: Ttl | None = None
    mtu: MtuOrAuto | None = None


class VxlanTunnel(_Tunnel):
    mode: Literal["vxlan"]
    id: Vni
    #: A unicast peer, or a multicast group (networkd `Group=`), as in netplan.
    remote: IPAddress | None = None
    port: UdpPort | None = None
    link: DeviceId | None = None
    mac_learning: Flag | None = None


class GreTunnel(_Tunnel):
    mode: Literal["gre"]
    remote: IPAddress


class GretapTunnel(_Tunnel):
    mode: Literal["gretap"]
    remote: IPAddress


Tunnel = Annotated[VxlanTunnel | GreTunnel | GretapTunnel, Field(discriminator="mode")]
TUNNEL_MODES = ("vxlan", "gre", "gretap")


class Network(StrictModel):
    version: Annotated[int, ranged(2, 2, "netplan version", " (netplan's v2 format)")] = 2
    renderer: Literal["networkd"] = "networkd"
    ethernets: Entries[DeviceId, Ethernet] = Field(default_factory=no_entries)
    bonds: Entries[InterfaceName, Bond] = Field(default_factory=no_entries)
    bridges: Entries[InterfaceName, Bridge] = Field(default_factory=no_entries)
    vlans: Entries[InterfaceName, Vlan] = Field(default_factory=no_entries)
    tunnels: Entries[InterfaceName, Tunnel] = Field(default_factory=no_entries)
