"""The plan: every derived value, resolved and checked, ready for renderers to format.

Plain frozen dataclasses with tuples only, so a plan cannot change after `make_plan`
and serialises to JSON as is (`kvmnet plan --json`). Field names say what a value
means on the machine, not which profile key it came from.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from generator.errors import Diagnostic, KeyPath
from generator.model.frozen import EMPTY, FrozenData

VlanSpan = tuple[int, int]  # inclusive first, last


class Kind(StrEnum):
    """Device kinds, spelled as systemd-networkd's `Kind=` (ethernet has no netdev)."""

    ETHERNET = "ether"
    BOND = "bond"
    BRIDGE = "bridge"
    VLAN = "vlan"
    VXLAN = "vxlan"
    GRE = "gre"
    GRETAP = "gretap"
    #: A guest's tap: libvirt creates it; kvmnet only writes its bridge-port settings.
    TAP = "tap"

    @property
    def word(self) -> str:
        """How messages and drawings name the kind (networkd's `ether` reads as ethernet)."""
        return "ethernet" if self is Kind.ETHERNET else self.value

    @property
    def is_netdev(self) -> bool:
        return self not in (Kind.ETHERNET, Kind.TAP)

    @property
    def carries_ethernet(self) -> bool:
        """Layer-2 devices: they can be bridge ports and carry VLAN tags."""
        return self is not Kind.GRE


@dataclass(frozen=True, slots=True)
class Route:
    destination: str
    gateway: str | None = None
    preferred_source: str | None = None
    metric: int | None = None
    on_link: bool | None = None
    table: int | None = None
    scope: str | None = None  # only when not the default "global"
    type: str | None = None  # only when not the default "unicast"


@dataclass(frozen=True, slots=True)
class PortVlans:
    """`[BridgeVLAN]` of one bridge port (or of the bridge itself)."""

    vlans: tuple[VlanSpan, ...] = ()
    pvid: int | None = None
    untagged: tuple[VlanSpan, ...] = ()

    def tagged(self) -> bool:
        """True if any VLAN leaves this port with an 802.1Q tag."""
        untagged = {v for lo, hi in self.untagged for v in range(lo, hi + 1)}
        return any(v not in untagged for lo, hi in self.vlans for v in range(lo, hi + 1))


@dataclass(frozen=True, slots=True)
class Fdb:
    """A static forwarding entry on a VXLAN port: frames for `mac` go to VTEP `destination`."""

    mac: str
    destination: str


@dataclass(frozen=True, slots=True)
class Match:
    name: str | None = None  # a name or a shell glob
    mac: str | None = None  # permanent MAC address


#: Per offload key of a .link, the lines of `ethtool -k` (ethtool 6.1) it sets. systemd 252
#: sets kernel features by name (src/shared/ethtool-util.c, netdev_feature_table):
#: rx-checksum, every tx-checksum-*, tx-tcp-segmentation, tx-tcp6-segmentation,
#: tx-generic-segmentation, rx-gro, rx-lro. `ethtool -k` shows a feature that is alone
#: under its old ioctl flag by the flag's name (rx-checksum as rx-checksumming, rx-gro
#: as generic-receive-offload...), the others by their own names, indented.
ETHTOOL_FEATURES: Mapping[str, tuple[str, ...]] = {
    "ReceiveChecksumOffload": ("rx-checksumming",),
    "TransmitChecksumOffload": (
        "tx-checksum-ipv4",
        "tx-checksum-ip-generic",
        "tx-checksum-ipv6",
        "tx-checksum-fcoe-crc",
        "tx-checksum-sctp",
    ),
    "TCPSegmentationOffload": ("tx-tcp-segmentation",),
    "TCP6SegmentationOffload": ("tx-tcp6-segmentation",),
    "GenericSegmentationOffload": ("generic-segmentation-offload",),
    "GenericReceiveOffload": ("generic-receive-offload",),
    "LargeReceiveOffload": ("large-receive-offload",),
}


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """What udev applies through a `.link` file before networkd sees the device."""

    match: Match
    #: The udev property that carries `match.name` at link-setup time (plan/naming.py):
    #: the file matches `Property=<this>=<name>`; None: `OriginalName=<name>`.
    name_property: str | None
    name: str | None  # rename to this
    wake_on_lan: bool
    mtu: int | None
    offloads: tuple[tuple[str, bool], ...]  # (networkd key, value)


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    stp: bool | None = None
    forward_delay_ms: int | None = None
    hello_time_ms: int | None = None
    max_age_ms: int | None = None
    ageing_time_ms: int | None = None
    priority: int | None = None
    vlan_filtering: bool = False
    default_pvid: int | str | None = None  # a VLAN id or "none"
    #: `[NetDev] MACAddress=none`: the kernel gives the bridge its (lowest) port's MAC
    #: instead of networkd's machine-id-derived one, so that DHCP on the bridge asks with
    #: the NIC's MAC, as the installer did (docs/hypervisor.md, "DHCP on a bridge").
    mac_from_ports: bool = False


@dataclass(frozen=True, slots=True)
class BondSettings:
    mode: str | None = None
    lacp_rate: str | None = None
    mii_monitor_ms: int | None = None
    min_links: int | None = None
    transmit_hash_policy: str | None = None
    ad_select: str | None = None
    all_slaves_active: bool | None = None
    arp_interval_ms: int | None = None
    arp_ip_targets: tuple[str, ...] = ()
    arp_validate: str | None = None
    arp_all_targets: str | None = None
    up_delay_ms: int | None = None
    down_delay_ms: int | None = None
    fail_over_mac_policy: str | None = None
    gratuitous_arp: int | None = None
    packets_per_slave: int | None = None
    primary_reselect_policy: str | None = None
    resend_igmp: int | None = None
    learn_packet_interval_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TunnelSettings:
    """VXLAN, GRE and gretap endpoints. `remote` of a VXLAN may be a multicast group."""

    local: str | None = None
    remote: str | None = None
    group: str | None = None
    ttl: int | None = None
    vni: int | None = None  # VXLAN only
    port: int | None = None  # VXLAN only
    mac_learning: bool | None = None  # VXLAN only
    independent: bool = False  # not bound to an underlay device


@dataclass(frozen=True, slots=True)
class MtuStep:
    """One line of the MTU arithmetic, kept so `plan --json` and errors can show it."""

    device: str
    mtu: int
    reason: str


class Dhcp(StrEnum):
    """networkd's `DHCP=`: which DHCP clients a device runs."""

    YES = "yes"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True, slots=True)
class Interface:
    id: str  # the profile's key (netplan's "id")
    kind: Kind
    origin: KeyPath  # where the profile declares it
    name: str | None  # kernel name, when known at generation time
    match: Match  # what networkd's [Match] selects
    #: The name the device has where kvmnet makes the machine itself (`kvmnet lab`'s
    #: namespaces, the Vagrantfile's VMs, the test tiers): `name` when known; for a NIC
    #: matched by a glob, a name the glob selects (plan/ifnames.py); for one matched by MAC
    #: alone, its id. None when no name will do (the plan warns).
    concrete_name: str | None
    mtu: int  # the MTU the device will have
    mtu_written: int | None  # written as MTUBytes= (configured, or derived for `auto`)
    mtu_chain: tuple[MtuStep, ...] = ()
    link: LinkSettings | None = None  # a .link file is needed
    macaddress: str | None = None
    addresses: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    dhcp: Dhcp | None = None
    #: DHCPv4 `ClientIdentifier=`: "mac" (type 1 + the link's MAC, as installers ask),
    #: not networkd's default DUID; None without a DHCPv4 client.
    dhcp4_client_id: str | None = None
    link_local: str = "ipv6"  # networkd LinkLocalAddressing=
    accept_ra: bool | None = None
    required_for_online: bool = True
    configure_without_carrier: bool = False
    master: str | None = None  # id of the bridge or bond this device is a port of
    master_kind: Kind | None = None
    primary_port: bool = False  # the bond's primary
    port_cost: int | None = None
    port_priority: int | None = None
    port_vlans: PortVlans | None = None
    stacked: tuple[tuple[str, str], ...] = ()  # (networkd key, device) riding on this one
    fdb: tuple[Fdb, ...] = ()
    lower: str | None = None  # id of the device this one is carried by
    bridge: BridgeSettings | None = None
    bond: BondSettings | None = None
    vlan_id: int | None = None
    tunnel: TunnelSettings | None = None

    @property
    def netdev_name(self) -> str:
        """Name of a virtual device (its id; netdevs are always named by their id)."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class OverlayMember:
    host: str
    underlay: str  # device id on that host
    local: str  # VTEP address


@dataclass(frozen=True, slots=True)
class OverlayPlan:
    name: str
    vni: int
    device: str
    bridge: str
    port: int
    mtu: int
    overhead: int
    members: tuple[OverlayMember, ...]


#: The qdisc handles kvmnet uses, one per kind. The kernel refuses to `replace` a qdisc
#: with one of another kind under the same handle ("Invalid qdisc name: must match
#: existing qdisc"), so each kind gets its own.
HANDLES = {
    "tbf": 0x10,
    "htb": 0x20,
    "fq_codel": 0x30,
    "fq": 0x40,
    "cake": 0x50,
    "pfifo": 0x60,
    "bfifo": 0x70,
    "mq": 0x80,
}
HTB_CLASS = 0x10  # the one class of an htb shaper, and its default
#: The parent of ingress filters: the ingress qdisc's fixed handle.
INGRESS_PARENT = "ffff:"

#: The kernel module behind each kind of device, and why a host loads it. A host's
#: modules-load.d lists them (plan/tuning.py); the generated checks use them to tell
#: "this kernel cannot have it" from "it is missing" (renderers/expected.py).
KIND_MODULES: Mapping[Kind, tuple[str, str]] = {
    Kind.BRIDGE: ("bridge", "Linux bridges"),
    Kind.VLAN: ("8021q", "VLAN devices"),
    Kind.VXLAN: ("vxlan", "VXLAN devices"),
    Kind.GRE: ("ip_gre", "GRE tunnels"),
    Kind.GRETAP: ("ip_gre", "gretap tunnels"),
    Kind.BOND: ("bonding", "bonds"),
}
#: The kernel module of each qdisc kvmnet sets (the kinds of HANDLES); None for those
#: always built into the kernel (sch_fifo and sch_mq are not tristate: no module to load).
QDISC_MODULES: Mapping[str, str | None] = {
    "tbf": "sch_tbf",
    "htb": "sch_htb",
    "fq_codel": "sch_fq_codel",
    "fq": "sch_fq",
    "cake": "sch_cake",
    "pfifo": None,
    "bfifo": None,
    "mq": None,
}
#: The qdisc under a shaper when the profile names none. A shaper's own queue is a FIFO
#: (htb's default child is a pfifo of txqueuelen packets, tbf's a bfifo of `latency`):
#: every flow waits behind a standing queue. fq_codel is the usual AQM: upstream
#: systemd's net.core.default_qdisc (its 50-default.conf) and OpenWrt SQM's leaf under
#: a shaper; docs/hypervisor.md says why not fq or cake.
DEFAULT_LEAF = "fq_codel"
#: What ingress policing takes: the ingress qdisc, a match-all filter and the police action.
POLICE_MODULES = ("sch_ingress", "cls_matchall", "act_police")


class Shaper(StrEnum):
    """The shaping qdiscs, spelled as tc names them."""

    TBF = "tbf"
    HTB = "htb"


class TcEngine(StrEnum):
    """Who sets a device's tc: kvmnet's `kvmnet-tc@` unit, or networkd's own tc sections."""

    SERVICE = "service"
    NETWORKD = "networkd"


@dataclass(frozen=True, slots=True)
class Shape:
    kind: Shaper
    rate: int  # bits per second
    ceil: int | None  # htb
    burst: int | None  # bytes
    latency_us: int | None  # tbf
    quantum: int | None = None  # htb: bytes a class sends per round


@dataclass(frozen=True, slots=True)
class Police:
    rate: int  # bits per second
    burst: int  # bytes
    #: The largest packet the policer lets conform (bytes). Without one, tc sizes the rate
    #: table for 2047 bytes and the kernel's act_police caps packets at 255 << cell_log =
    #: 2040 bytes: every jumbo frame and GRO aggregate goes to the exceed action (drop).
    #: 64 KiB covers the largest GRO aggregate Debian 12's kernel builds (gro_max_size
    #: 65536), as libvirt writes on its own policers (`mtu 64kb`).
    mtu: int = 65536


@dataclass(frozen=True, slots=True)
class TcPlan:
    device_id: str
    device: str  # kernel name
    unit: str  # systemd unit instance: kvmnet-tc@<escaped>.service
    engine: TcEngine
    #: The root qdisc, or under a shaper the leaf: the profile's, else DEFAULT_LEAF.
    qdisc: str | None
    shape: Shape | None
    police: Police | None
    mtu: int
    #: The leaf is kvmnet's default (the profile named no qdisc under its shaper).
    default_leaf: bool = False
    #: pfifo's limit in packets, bfifo's in bytes; None for the other kinds. Written
    #: always: networkd 252 sends a limit of 0 when none is given (every packet dropped).
    fifo_limit: int | None = None

    @property
    def root_kind(self) -> str | None:
        """The root qdisc kvmnet sets: the shaper, else the qdisc. None when the device is
        only policed: policing is an ingress filter, and the root is left as it was."""
        return self.shape.kind if self.shape else self.qdisc

    @property
    def root_handle(self) -> int | None:
        return None if self.root_kind is None else HANDLES[self.root_kind]

    @property
    def leaf_handle(self) -> int | None:
        """Handle of the qdisc under the shaper: shaper handle * 16 + the qdisc's."""
        if self.shape is None or self.qdisc is None:
            return None
        return HANDLES[self.shape.kind] * 0x10 + HANDLES[self.qdisc]

    # The same handles as tc and networkd write them ("20:", "20:10"): the tc batch, the
    # .network file, the expected state and the lab all take these, none spells its own.

    @property
    def root_id(self) -> str | None:
        return None if self.root_handle is None else f"{self.root_handle:x}:"

    @property
    def leaf_id(self) -> str | None:
        return None if self.leaf_handle is None else f"{self.leaf_handle:x}:"

    @property
    def shaper_class(self) -> str | None:
        """The class traffic leaves the shaper by, where a leaf qdisc hangs: htb's one
        class (also its default), or tbf's single built-in class `<handle>:1`."""
        if self.shape is None or self.root_handle is None:
            return None
        minor = HTB_CLASS if self.shape.kind == "htb" else 1
        return f"{self.root_handle:x}:{minor:x}"

    @property
    def per_queue(self) -> bool:
        """A plain qdisc (no shaper) that the service engine sets: on a multiqueue device
        the unit keeps an mq root (`mq_id`) and puts the qdisc under each of its TX
        queues, so that every CPU keeps its own queue and lock; on a single-queue device
        the qdisc is the root (`root_id`). Shapers are one queue by nature: always root."""
        return self.engine is TcEngine.SERVICE and self.shape is None and self.qdisc is not None

    @property
    def mq_id(self) -> str | None:
        """The handle of the mq root a per-queue qdisc hangs under, by TX queue N (1-based,
        in hex): `<mq_id>N`."""
        return f"{HANDLES['mq']:x}:" if self.per_queue else None

    @property
    def qdisc_parent(self) -> str | None:
        """Where `qdisc` goes: under the shaper's class, or the root when nothing shapes."""
        if self.qdisc is None:
            return None
        return self.shaper_class or "root"


@dataclass(frozen=True, slots=True)
class Sysctl:
    key: str
    value: str
    #: Written with systemd-sysctl's "-" prefix: ignore the key if it does not exist
    #: (net.bridge.* exists only while br_netfilter is loaded).
    optional: bool = False


#: What `ipv6: disabled` sets, on a host (`kernel.ipv6`) as on a guest (`ipv6`): the stack
#: stays, addresses go (`ipv6: removed`, ipv6.disable=1 on the command line, takes the stack).
IPV6_OFF = (Sysctl("net.ipv6.conf.all.disable_ipv6", "1"), Sysctl("net.ipv6.conf.default.disable_ipv6", "1"))


@dataclass(frozen=True, slots=True)
class KernelPlan:
    ipv6: str
    sysctls: tuple[Sysctl, ...]
    modules: tuple[tuple[str, str], ...]  # (module, why)
    cmdline: tuple[str, ...]

    @property
    def bridge_sysctls_reapplied(self) -> bool:
        """Whether net.bridge.* must be applied again when br_netfilter loads: it loads
        with bridge-nf-call-* = 1 whenever something asks for it after boot (Docker,
        Kubernetes, a physdev rule), undoing kvmnet's 0 (sysctl.d(5), example 2)."""
        return any(s.key.startswith("net.bridge.") and s.value == "0" for s in self.sysctls)


class ProbeFrom(StrEnum):
    """Where the bootstrap's probe address comes from."""

    PROFILE = "profile"  # given
    ROUTE = "route"  # the planned default gateway
    RUNTIME = "runtime"  # the default gateway found when the bootstrap runs
    NONE = "none"


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    probe: str | None  # address that must answer after a network change
    probe_from: ProbeFrom
    rollback_after_s: int


#: udev's stable links to a whole disk that `install.disk` accepts (model/host.py).
DISK_LINKS = ("/dev/disk/by-id/", "/dev/disk/by-path/")


@dataclass(frozen=True, slots=True)
class InstallPlan:
    distro: str
    mirror: str | None
    epel: str | None
    #: The whole disk to install on, as a device path (`/dev/sda`, `/dev/disk/by-id/...`);
    #: None: the installer's first disk. What every installer and deploy ramdisk reads.
    disk: str | None
    timezone: str
    #: How the boot service installs the host: "installer" or "image" (plan/boot.py).
    method: str = "installer"

    @property
    def disk_is_link(self) -> bool:
        """A udev stable link (by-id, by-path), resolved to its kernel device at install time."""
        return self.disk is not None and self.disk.startswith(DISK_LINKS)


@dataclass(frozen=True, slots=True)
class ResolverPlan:
    """systemd-resolved on a host: the only reader of networkd's `DNS=`/`Domains=`."""

    #: The distro's package, or None where the `systemd` package carries it (Ubuntu 22.04).
    package: str | None
    #: Where /etc/resolv.conf points once the host uses it (relative, as Debian's postinst).
    stub: str = "../run/systemd/resolve/stub-resolv.conf"


@dataclass(frozen=True, slots=True)
class FirewallPlan:
    """What firewalld must let in, permanently, in its default zone (plan/firewall.py)."""

    udp_ports: tuple[int, ...]  # each VXLAN device's destination port, sorted
    protocols: tuple[str, ...]  # "gre" for GRE and gretap tunnels

    @property
    def ports(self) -> tuple[str, ...]:
        """The ports as firewalld writes them: "4789/udp"."""
        return tuple(f"{port}/udp" for port in self.udp_ports)

    @property
    def openings(self) -> tuple[tuple[str, str], ...]:
        """(firewalld option kind, value): ("port", "4789/udp"), ("protocol", "gre")."""
        return tuple(("port", p) for p in self.ports) + tuple(("protocol", p) for p in self.protocols)


@dataclass(frozen=True, slots=True)
class UserPlan:
    name: str
    ssh_keys: tuple[str, ...]
    passwd: str | None
    sudo: bool
    groups: tuple[str, ...]
    shell: str


@dataclass(frozen=True, slots=True)
class VirtPlan:
    """What makes the host a KVM host (plan/virt.py): packages every vehicle installs,
    units enabled, and the libvirt networks the bootstrap defines and autostarts."""

    packages: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()  # one per host bridge, named as the bridge
    uri: str = "qemu:///system"


@dataclass(frozen=True, slots=True)
class HostPlan:
    name: str
    interfaces: tuple[Interface, ...]  # sorted by id
    tc: tuple[TcPlan, ...] = ()
    kernel: KernelPlan = KernelPlan("enabled", (), (), ())
    bootstrap: BootstrapPlan = BootstrapPlan(None, ProbeFrom.NONE, 60)
    install: InstallPlan = InstallPlan("debian12", None, None, None, "UTC")
    #: Guest taps that are VLAN-aware bridge ports (`kvmnet.ports` naming a guest's `target`).
    tap_ports: tuple[Interface, ...] = ()
    #: systemd-resolved, when some device has nameservers: None keeps the host's resolver.
    resolver: ResolverPlan | None = None
    #: EL9's firewalld: what the host's tunnels need let in; None: nothing to open.
    firewall: FirewallPlan | None = None
    #: Login users the bootstrap creates or updates (root only when listed).
    users: tuple[UserPlan, ...] = ()
    virt: VirtPlan = VirtPlan()

    def get(self, ident: str) -> Interface:
        # Binary search: interfaces are sorted by id, and renderers look devices up once
        # per device (a linear scan made a 9000-device host quadratic).
        at = bisect.bisect_left(self.interfaces, ident, key=lambda i: i.id)
        if at < len(self.interfaces) and self.interfaces[at].id == ident:
            return self.interfaces[at]
        raise KeyError(ident)


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """libvirt's units: rates in kilobytes (1000 bytes) per second, bursts in KiB."""

    inbound_average: int | None = None
    inbound_peak: int | None = None
    inbound_burst: int | None = None
    outbound_average: int | None = None
    outbound_burst: int | None = None


class Attach(StrEnum):
    """How a guest NIC reaches the host: libvirt's `<interface type=...>`."""

    BRIDGE = "bridge"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class GuestNic:
    index: int
    name: str  # in the guest (set-name)
    mac: str
    attach: Attach
    source: str  # the bridge or libvirt network
    model: str
    queues: int | None  # queue pairs; None when the model has no multiqueue
    channels: int | None  # what the guest should use: `channels:`, or min(queues, vCPUs)
    rx_ring: int | None
    mtu: int
    target: str | None
    bandwidth: Bandwidth | None
    host_offloads: tuple[tuple[str, bool], ...]  # only the ones turned off
    guest_offloads: tuple[tuple[str, bool], ...]
    vlan: int | None
    addresses: tuple[str, ...]
    routes: tuple[Route, ...]
    dns: tuple[str, ...]
    domains: tuple[str, ...]
    dhcp4: bool
    optional: bool  # not needed for boot: only the first NIC is waited for


@dataclass(frozen=True, slots=True)
class NicTuning:
    """What a guest's NIC is tuned to, found by its MAC: channels and rx ring, each None
    when left as the driver has it."""

    mac: str
    channels: int | None
    rx_ring: int | None


#: The files kvmnet writes into a guest (plan/guestfiles.py), one class each. Every one has
#: its machine path, its mode and the typed values it holds; renderers/guestfiles.py
#: formats them, and the vehicles (cloud-init's write_files, the image element) carry
#: them. `kind` names the class in `kvmnet plan --json`.


@dataclass(frozen=True, slots=True)
class SysctlDropIn:
    path: str
    mode: int
    sysctls: tuple[Sysctl, ...]
    kind: Literal["sysctl"] = "sysctl"


@dataclass(frozen=True, slots=True)
class NicLink:
    """A `.link` file: udev applies it when the NIC appears."""

    path: str
    mode: int
    nic: NicTuning
    kind: Literal["link"] = "link"


@dataclass(frozen=True, slots=True)
class NicTuningScript:
    """The ethtool fallback for kernels that ignore the `.link` files' tuning."""

    path: str
    mode: int
    nics: tuple[NicTuning, ...]
    kind: Literal["nic-tuning-script"] = "nic-tuning-script"


@dataclass(frozen=True, slots=True)
class NicTuningUnit:
    """The unit that runs the script at boot: `name` is what `systemctl enable` takes."""

    path: str
    mode: int
    name: str
    script: str
    kind: Literal["nic-tuning-unit"] = "nic-tuning-unit"


GuestFile = SysctlDropIn | NicLink | NicTuningScript | NicTuningUnit


@dataclass(frozen=True, slots=True)
class GuestPlan:
    name: str
    host: str
    hostname: str = ""
    vcpus: int = 1
    memory_kib: int = 0
    machine: str = "q35"
    firmware: str = "bios"
    virt_type: str = "kvm"
    disk_path: str = ""
    disk_image: str | None = None
    disk_size: int = 0
    disk_bus: str = "virtio"
    disk_target: str = "vda"  # libvirt's <target dev=...> of the disk
    seed_path: str = ""
    seed_target: str = "sdb"  # the NoCloud seed's CD-ROM
    seed_bus: str = "sata"
    nics: tuple[GuestNic, ...] = ()
    ipv6: str = "enabled"
    #: What the guest's user-data writes to sysctl.d (IPV6_OFF when its ipv6 is disabled).
    sysctls: tuple[Sysctl, ...] = ()
    #: Every file kvmnet writes into the guest, in the order its user-data writes them.
    files: tuple[GuestFile, ...] = ()
    users: tuple[UserPlan, ...] = ()
    #: Extra cloud-config from the profile (keys sorted; frozen like the rest of the plan).
    cloud_config: FrozenData = EMPTY

    @property
    def uuid(self) -> str:
        """The guest's identity, from its host and name only: libvirt's domain UUID (so a
        redefined domain keeps it) and the seed's instance-id (so a profile change does
        not make cloud-init take the guest for a new instance)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvmnet:{self.host}/{self.name}"))


@dataclass(frozen=True, slots=True)
class BootEntry:
    """One host's iPXE script: what its provisioning NIC boots."""

    host: str
    mac: str  # the provisioning NIC's, lower case
    method: str  # "installer" | "image"
    kernel: str  # URL
    initrd: str  # URL
    args: tuple[str, ...]  # the kernel command line, word by word
    #: URL paths (relative to the tree's URL) of what the boot needs that kvmnet does not
    #: build: the kernel, the initrd, the host's image and its checksum, Ubuntu's ISO.
    assets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BootPlan:
    """The fleet's PXE boot service (`pxe:`; docs/pxe.md)."""

    url: str  # the HTTP tree's base URL, ending in /
    subnet: str
    range: tuple[str, str] | None  # None: proxy-DHCP
    tftp_root: str
    entries: tuple[BootEntry, ...]  # by host name
    gateway: str | None = None  # with a range: handed out with the lease
    nameservers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    hosts: tuple[HostPlan, ...]
    overlays: tuple[OverlayPlan, ...] = ()
    guests: tuple[GuestPlan, ...] = ()
    #: Things that work but are probably not meant (the CLI prints them, the build goes on).
    warnings: tuple[Diagnostic, ...] = ()
    boot: BootPlan | None = None
