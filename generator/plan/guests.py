"""Guests: placement, NICs and their derived values, and the rules libvirt's schema does
not check that span more than one value (queues against vCPUs, a ring on a non-virtio NIC,
a VLAN on a Linux bridge before libvirt 11...; one value's own range is the model's).

Units follow libvirt: `<bandwidth>` rates are kilobytes per second (1000 bytes, what tc
calls `kbps`), bursts are KiB; memory is KiB. Conversions are exact or refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal

from pydantic_core import PydanticCustomError

from generator import layout
from generator.errors import Diagnostic, KeyPath, format_path
from generator.model.cloudinit import CLOUD_CONFIG_KEYS, EXTENDABLE, MANAGED
from generator.model.frozen import FrozenData, frozen_dict
from generator.model.guest import MAX_QUEUES, Guest, GuestInterface
from generator.model.guest import Bandwidth as BandwidthSpec
from generator.model.types import interface_name_problem
from generator.model.users import password_hash
from generator.plan.guestfiles import guest_files
from generator.plan.types import (
    IPV6_OFF,
    Attach,
    Bandwidth,
    GuestNic,
    GuestPlan,
    HostPlan,
    Interface,
    Kind,
    Route,
)
from generator.plan.users import plan_users

RESERVED_TAPS = ("vnet", "vif", "macvtap", "macvlan")  # libvirt silently renames these
#: The disk's target device, by bus.
DISK_TARGETS = {"virtio": "vda", "scsi": "sda", "sata": "sda"}
#: The NoCloud seed's target device and bus, by machine type: the bus the machine has for
#: CD-ROMs (q35 has no IDE: SATA, as FACTS says; i440fx "pc" keeps IDE).
SEED_TARGETS = {"q35": ("sdb", "sata"), "pc": ("hdc", "ide")}
#: The first libvirt release that tags a guest's port on a plain Linux bridge.
VLAN_ON_LINUX_BRIDGE = (11, 0)
DISTRO_LIBVIRT = {"debian12": "9.0", "ubuntu2204": "8.0", "ubuntu2404": "10.0", "el9": "10.5"}
DEFAULT_VCPUS = 2
DEFAULT_MEMORY = 2 * 2**30
_HOST_OFFLOADS = ("csum", "gso", "tso4", "tso6", "ecn", "ufo", "mrg_rxbuf")
_GUEST_OFFLOADS = ("csum", "tso4", "tso6", "ecn", "ufo")


def mac_for(host: str, guest: str, index: int) -> str:
    """A stable MAC in QEMU's 52:54:00 range, from where the NIC is, not when it was made."""
    digest = hashlib.sha256(f"{host}/{guest}/{index}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _derived(guests: Mapping[str, Guest], nic_path: KeyPath) -> bool:
    """Did kvmnet make up the MAC of the NIC at ("guests", name, "interfaces", index)?"""
    _, name, _, index = nic_path
    interfaces = guests[str(name)].interfaces or ()
    return interfaces[int(index)].mac is None


def plan_guests(
    guests: Mapping[str, Guest],
    hosts: Mapping[str, HostPlan],
    libvirt_versions: Mapping[str, str],
    problems: list[Diagnostic],
    warnings: list[Diagnostic],
) -> tuple[GuestPlan, ...]:
    out = []
    macs: dict[str, KeyPath] = {}
    taps: dict[tuple[str, str], KeyPath] = {}
    for name, guest in sorted(guests.items()):
        path: KeyPath = ("guests", name)
        host = hosts.get(guest.host)
        if host is None:
            known = ", ".join(sorted(hosts)) or "none"
            problems.append(
                Diagnostic(f"host {guest.host!r} is not defined (hosts: {known})", (*path, "host"))
            )
            continue
        plan = _guest(name, guest, host, libvirt_versions[host.name], problems, warnings)
        for nic in plan.nics:
            nic_path: KeyPath = (*path, "interfaces", nic.index)
            first = macs.setdefault(nic.mac, nic_path)
            if first != nic_path:
                # 24 bits of hash after 52:54:00: among 10,000 NICs a few derived MACs collide
                # (found by tests/test_limits.py); the way out is to write one of them.
                why = (
                    " (both derived by kvmnet: 52:54:00 leaves 24 bits, so in a large fleet two can "
                    "meet; set `mac:` on one of these NICs)"
                    if _derived(guests, nic_path) and _derived(guests, first)
                    else ""
                )
                message = f"MAC {nic.mac} is already used by {format_path(first)}{why}"
                problems.append(Diagnostic(message, (*nic_path, "mac")))
            if nic.target:
                tap = taps.setdefault((host.name, nic.target), nic_path)
                if tap != nic_path:
                    problems.append(
                        Diagnostic(
                            f"tap {nic.target} is already used on host {host.name} by {format_path(tap)}",
                            (*nic_path, "target"),
                        )
                    )
        out.append(plan)
    return tuple(out)


def _guest(
    name: str,
    guest: Guest,
    host: HostPlan,
    libvirt: str,
    problems: list[Diagnostic],
    warnings: list[Diagnostic],
) -> GuestPlan:
    path: KeyPath = ("guests", name)
    vcpus = guest.vcpus or DEFAULT_VCPUS
    memory = guest.memory or DEFAULT_MEMORY  # whole MiB, at least 64MiB: checked by the model
    nics = tuple(
        _nic(name, index, spec, vcpus, host, libvirt, (*path, "interfaces", index), problems, warnings)
        for index, spec in enumerate(guest.interfaces or ())
    )
    ipv6 = guest.ipv6 or "enabled"
    if ipv6 == "disabled":
        for nic in nics:
            if any(":" in a for a in nic.addresses):
                problems.append(
                    Diagnostic(
                        "IPv6 addresses on a guest whose ipv6 is disabled", (*path, "interfaces", nic.index)
                    )
                )
    users = plan_users(guest.users or (), path, problems)
    disk = guest.disk
    disk_bus = disk.bus if disk else "virtio"
    machine = guest.machine or "q35"
    seed_target, seed_bus = SEED_TARGETS[machine]
    sysctls = IPV6_OFF if ipv6 == "disabled" else ()
    return GuestPlan(
        name=name,
        host=host.name,
        hostname=guest.hostname or name,
        vcpus=vcpus,
        memory_kib=memory // 1024,
        machine=machine,
        firmware=guest.firmware or "bios",
        virt_type=guest.virt_type or "kvm",
        disk_path=layout.guest_disk(name),
        disk_image=disk.image if disk else None,
        disk_size=disk.size if disk else 20 * 2**30,
        disk_bus=disk_bus,
        disk_target=DISK_TARGETS[disk_bus],
        seed_path=layout.guest_seed_image(name),
        seed_target=seed_target,
        seed_bus=seed_bus,
        nics=nics,
        ipv6=ipv6,
        sysctls=sysctls,
        files=guest_files(sysctls, nics),
        users=users,
        cloud_config=_cloud_config(guest.cloud_config or {}, (*path, "cloud-config"), problems),
    )


def _cloud_config(extra: Mapping[str, object], path: KeyPath, problems: list[Diagnostic]) -> FrozenData:
    import difflib

    for key, value in extra.items():
        if key in MANAGED:
            problems.append(
                Diagnostic(
                    f"{key} is written by kvmnet from the guest's own settings (hostname, users); "
                    "set it there",
                    (*path, key),
                    on_key=True,
                )
            )
        elif key not in CLOUD_CONFIG_KEYS:
            close = difflib.get_close_matches(key, sorted(CLOUD_CONFIG_KEYS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                Diagnostic(
                    f"{key!r} is not a cloud-config key cloud-init 22.4 knows{hint} (it would be ignored "
                    "without a word on the guest)",
                    (*path, key),
                    on_key=True,
                )
            )
        elif key in EXTENDABLE and not isinstance(value, tuple):  # a list (frozen)
            problems.append(Diagnostic(f"{key} must be a list (it is added to kvmnet's own)", (*path, key)))
    problems.extend(_plain_passwords(extra, path))
    return frozen_dict(extra)


def _is_hash(value: object) -> bool:
    try:
        password_hash(value)
    except PydanticCustomError:
        return False
    return True


def _plain_passwords(extra: Mapping[str, object], path: KeyPath) -> list[Diagnostic]:
    """Passwords in extra cloud-config: crypt hashes (or cloud-init's RANDOM) only, as for users.

    Messages never repeat the value: it may be a real password.
    """
    found = []
    message = "plain passwords are refused: give a crypt(3) hash (`mkpasswd -m sha-512`) or RANDOM"
    if "password" in extra and not _is_hash(extra["password"]):
        found.append(Diagnostic(message, (*path, "password")))
    chpasswd = extra.get("chpasswd")
    if isinstance(chpasswd, Mapping):
        entries = chpasswd.get("list")
        lines = (
            entries.splitlines()
            if isinstance(entries, str)
            else entries
            if isinstance(entries, tuple)
            else ()
        )
        for index, line in enumerate(lines):
            given = str(line).partition(":")[2]
            if given not in ("RANDOM", "R") and not _is_hash(given):
                found.append(Diagnostic(message, (*path, "chpasswd", "list", index)))
        users = chpasswd.get("users")
        for index, user in enumerate(users if isinstance(users, tuple) else ()):
            if isinstance(user, Mapping) and user.get("type", "hash") != "RANDOM":
                secret = user.get("password")
                if user.get("type") == "text" or (secret is not None and not _is_hash(secret)):
                    found.append(Diagnostic(message, (*path, "chpasswd", "users", index, "password")))
    return found


def _nic(
    guest: str,
    index: int,
    spec: GuestInterface,
    vcpus: int,
    host: HostPlan,
    libvirt: str,
    path: KeyPath,
    problems: list[Diagnostic],
    warnings: list[Diagnostic],
) -> GuestNic:
    """One guest NIC: each step derives a value or checks a rule across the guest and its host."""
    source = spec.bridge or spec.network or ""
    attach = Attach.BRIDGE if spec.bridge else Attach.NETWORK
    bridge = _bridge(source, attach, host, path, problems)
    mtu = _mtu(spec, source, bridge, path, problems)
    virtio = spec.model == "virtio"
    queues = _queues(spec, vcpus, path, problems, warnings)
    channels = _channels(spec, queues, vcpus, path, problems)
    if spec.rx_ring is not None and not virtio:  # 256, 512 or 1024: the model checks it
        problems.append(Diagnostic(f"rx-ring needs a virtio NIC (model is {spec.model})", (*path, "rx-ring")))
    if spec.target is not None and (problem := _tap_problem(spec.target, host)):
        problems.append(Diagnostic(problem, (*path, "target")))
    if spec.offloads is not None and not virtio:
        problems.append(
            Diagnostic(
                f"offloads are virtio-net's (<driver><host/><guest/>); model {spec.model} has none and "
                "libvirt would drop them (use model: virtio, or leave offloads out)",
                (*path, "offloads"),
            )
        )
    if spec.vlan is not None and (problem := _vlan_problem(spec, source, bridge, host, libvirt)):
        problems.append(Diagnostic(problem, (*path, "vlan")))
    dhcp4 = _dhcp4(spec, path, problems)
    return GuestNic(
        index=index,
        name=f"eth{index}",
        mac=spec.mac or mac_for(host.name, guest, index),
        attach=attach,
        source=source,
        model=spec.model,
        queues=queues,
        channels=channels,
        rx_ring=spec.rx_ring if virtio else None,
        mtu=mtu,
        target=spec.target,
        bandwidth=_bandwidth(spec.bandwidth, attach, (*path, "bandwidth"), problems)
        if spec.bandwidth
        else None,
        host_offloads=_offloads(spec, "host", _HOST_OFFLOADS),
        guest_offloads=_offloads(spec, "guest", _GUEST_OFFLOADS),
        vlan=spec.vlan,
        addresses=spec.addresses,
        routes=tuple(Route(_destination(r.to, r.via), r.via) for r in spec.routes),
        dns=spec.nameservers.addresses if spec.nameservers else (),
        domains=spec.nameservers.search if spec.nameservers else (),
        dhcp4=dhcp4,
        optional=index > 0,
    )


def _bridge(
    source: str, attach: Attach, host: HostPlan, path: KeyPath, problems: list[Diagnostic]
) -> Interface | None:
    """The host bridge the NIC reaches (directly, or through kvmnet's libvirt network of it)."""
    bridge = next((i for i in host.interfaces if i.netdev_name == source and i.kind is Kind.BRIDGE), None)
    if bridge is None:
        bridges = ", ".join(sorted(i.netdev_name for i in host.interfaces if i.kind is Kind.BRIDGE)) or "none"
        what = "bridge" if attach is Attach.BRIDGE else "network (kvmnet defines one per bridge)"
        problems.append(
            Diagnostic(
                f"{what} {source!r} does not exist on host {host.name} (its bridges: {bridges})",
                (*path, attach),
            )
        )
    return bridge


def _mtu(
    spec: GuestInterface, source: str, bridge: Interface | None, path: KeyPath, problems: list[Diagnostic]
) -> int:
    """The NIC's MTU: given, or the bridge's (`auto`); never above what the bridge carries."""
    limit = bridge.mtu if bridge else None
    if not isinstance(spec.mtu, int):
        return limit or 1500
    if limit is not None and spec.mtu > limit:
        problems.append(
            Diagnostic(
                f"MTU {spec.mtu} is above what {source} carries ({limit}): frames that large would be "
                f"dropped on the way (use mtu: auto or at most {limit})",
                (*path, "mtu"),
            )
        )
    return spec.mtu


def _queues(
    spec: GuestInterface, vcpus: int, path: KeyPath, problems: list[Diagnostic], warnings: list[Diagnostic]
) -> int | None:
    """Queue pairs of a virtio NIC: given (at most MAX_QUEUES, a model fact), or one per vCPU."""
    virtio = spec.model == "virtio"
    if spec.queues == "auto":
        return min(vcpus, MAX_QUEUES) if virtio else None
    if not virtio:
        problems.append(
            Diagnostic(
                f"queues need a virtio NIC; model {spec.model} has one queue (use model: virtio, or leave "
                "queues out)",
                (*path, "queues"),
            )
        )
        return None
    assert isinstance(spec.queues, int)
    if spec.queues > vcpus:
        warnings.append(
            Diagnostic(
                f"{spec.queues} queue pairs for {vcpus} vCPUs: the guest uses at most {vcpus}; the rest "
                "only cost memory",
                (*path, "queues"),
            )
        )
    return spec.queues


def _channels(
    spec: GuestInterface, queues: int | None, vcpus: int, path: KeyPath, problems: list[Diagnostic]
) -> int | None:
    """The channels the guest uses: `channels:`, or min(queues, vCPUs), never more."""
    usable = min(queues, vcpus) if queues else None
    if spec.channels is None:
        return usable
    if usable is None:
        problems.append(
            Diagnostic(
                f"channels need a virtio NIC with queue pairs; model {spec.model} has one queue "
                "(use model: virtio, or leave channels out)",
                (*path, "channels"),
            )
        )
        return None
    if spec.channels > usable:
        problems.append(
            Diagnostic(
                f"channels must be at most {usable}, got {spec.channels}: the guest can use "
                f"min(queues {queues}, vCPUs {vcpus}) = {usable} (raise queues and vcpus for more)",
                (*path, "channels"),
            )
        )
        return usable
    return spec.channels


def _dhcp4(spec: GuestInterface, path: KeyPath, problems: list[Diagnostic]) -> bool:
    """DHCPv4: given, or on when the NIC has no address; routes need one or the other."""
    dhcp4 = spec.dhcp4 if spec.dhcp4 is not None else not spec.addresses
    if spec.routes and not (spec.addresses or dhcp4):
        problems.append(
            Diagnostic(
                "routes need an address or DHCP on this interface: cloud-init 22.4 hangs a route on "
                "the interface's first address and drops it when there is none",
                (*path, "routes"),
            )
        )
    return dhcp4


def _vlan_problem(
    spec: GuestInterface, source: str, bridge: Interface | None, host: HostPlan, libvirt: str
) -> str | None:
    """Why `vlan:` would not put the guest's port in that VLAN, if it would not."""
    major, minor = (int(p) for p in libvirt.split("."))
    if (major, minor) < VLAN_ON_LINUX_BRIDGE:
        tap = spec.target or "<tap>"
        vlan = spec.vlan
        return (
            f"libvirt {libvirt} on {host.name} cannot tag a guest's port on a Linux bridge (the guest "
            "fails to start; <vlan> works there from libvirt 11.0). Make the port VLAN-aware on the "
            f"host instead: give this interface target: {tap} and list the tap on the bridge, "
            f"hosts.{host.name}.network.bridges.{source}.kvmnet: {{vlan-filtering: true, ports: "
            f"{{{tap}: {{pvid: {vlan}, untagged: [{vlan}]}}}}}}; or attach the guest to a bridge per "
            "VLAN. If the host runs libvirt 11.0 or newer, say so with "
            f"hosts.{host.name}.libvirt-version"
        )
    if bridge is not None and not (bridge.bridge and bridge.bridge.vlan_filtering):
        return (
            f"bridge {source} does not filter VLANs, so it would ignore the port's VLAN; set "
            f"hosts.{host.name}.network.bridges.{source}.kvmnet.vlan-filtering: true"
        )
    if spec.target is not None and any(t.id == spec.target for t in host.tap_ports):
        return (
            f"tap {spec.target} already has its VLANs from hosts.{host.name}.network.bridges.{source}"
            ".kvmnet.ports; give them in one place"
        )
    return None


def _tap_problem(target: str, host: HostPlan) -> str | None:
    """Why the tap name `target:` would not be the tap's name on the host, if it would not."""
    problem = interface_name_problem(target)
    if problem is None and target.startswith(RESERVED_TAPS):
        problem = (
            f"tap name {target!r} starts with one of {', '.join(RESERVED_TAPS)}, which libvirt "
            "silently replaces with a name of its own; pick another prefix"
        )
    if problem is None:
        clash = next((i for i in host.interfaces if i.netdev_name == target), None)
        if clash is not None:
            problem = (
                f"{target!r} is already the name of {clash.kind.word} {target} on host {host.name}; libvirt "
                "could not create the tap and the guest would not start. Pick another name"
            )
    if problem is None:
        # A device whose kernel name differs from its id (set-name:, match:) still has its
        # networkd files named by the id, as a tap listed in kvmnet.ports has by its name.
        clash = next((i for i in host.interfaces if i.id == target), None)
        if clash is not None:
            problem = (
                f"{target!r} is already the id of {clash.kind.word} {target} on host {host.name} (named "
                f"{clash.netdev_name} in the kernel); kvmnet names a device's networkd files by its "
                "id, so a tap needs a name that is no device id. Pick another name"
            )
    return problem


def _destination(to: str, via: str | None) -> str:
    """cloud-init 22.4 refuses `to: default` in a v2 route: the prefix of the gateway's family."""
    if to != "default":
        return to
    return "::/0" if via is not None and ":" in via else "0.0.0.0/0"


def _offloads(spec: GuestInterface, side: str, keys: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
    if spec.offloads is None:
        return ()
    values = getattr(spec.offloads, side)
    # Every offload is on by default: only turning one off is written.
    return tuple((key, False) for key in keys if getattr(values, key) is False)


def _kilobytes(bits: int | None, path: KeyPath, problems: list[Diagnostic]) -> int | None:
    """A rate in libvirt's unit: kilobytes (1000 bytes) per second, exactly."""
    if bits is None:
        return None
    if bits % 8000:
        problems.append(
            Diagnostic(
                f"{bits} bit/s is not a whole number of kilobytes per second ({Decimal(bits) / 8000}), "
                "which is libvirt's unit (1 kB/s = 8 kbit/s); round it to a multiple of 8kbit",
                path,
            )
        )
    return bits // 8000


def _kib(size: int | None, path: KeyPath, problems: list[Diagnostic]) -> int | None:
    if size is None:
        return None
    if size % 1024:
        problems.append(
            Diagnostic(f"burst {size} bytes is not a whole number of KiB, which is libvirt's unit", path)
        )
    return size // 1024


def _bandwidth(spec: BandwidthSpec, attach: Attach, path: KeyPath, problems: list[Diagnostic]) -> Bandwidth:
    inbound, outbound = spec.inbound, spec.outbound
    if inbound is not None:
        ipath = (*path, "inbound")
        if inbound.floor is not None:
            where = "a bridge" if attach is Attach.BRIDGE else "a network that forwards to a host bridge"
            problems.append(
                Diagnostic(
                    "floor is honoured by libvirt only on interfaces of NAT, routed or isolated libvirt "
                    f"networks; this interface attaches to {where}, where libvirt refuses it (leave floor "
                    "out; average caps the rate)",
                    (*ipath, "floor"),
                )
            )
        if inbound.average is None and (inbound.peak is not None or inbound.burst is not None):
            problems.append(Diagnostic("inbound peak and burst need an average", ipath))
        if inbound.peak is not None and inbound.average is not None and inbound.peak < inbound.average:
            problems.append(Diagnostic("inbound peak is below the average", (*ipath, "peak")))
    if outbound is not None:
        opath = (*path, "outbound")
        if outbound.peak is not None:
            problems.append(
                Diagnostic(
                    "libvirt ignores peak on outbound traffic (it is policed, not shaped); leave it out",
                    (*opath, "peak"),
                )
            )
        if outbound.average is None and outbound.burst is not None:
            problems.append(Diagnostic("outbound burst needs an average", opath))
    return Bandwidth(
        inbound_average=_kilobytes(
            inbound.average if inbound else None, (*path, "inbound", "average"), problems
        ),
        inbound_peak=_kilobytes(inbound.peak if inbound else None, (*path, "inbound", "peak"), problems),
        inbound_burst=_kib(inbound.burst if inbound else None, (*path, "inbound", "burst"), problems),
        outbound_average=_kilobytes(
            outbound.average if outbound else None, (*path, "outbound", "average"), problems
        ),
        outbound_burst=_kib(outbound.burst if outbound else None, (*path, "outbound", "burst"), problems),
    )
