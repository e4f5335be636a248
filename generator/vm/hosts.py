"""A hypervisor of the profile as a VM: the domain and NoCloud seed the VM tier makes for it.

kvmnet writes no domain for a hypervisor (it is a machine, not a guest), so the tier
makes one: the host image on a virtio disk, and

- one NIC per ethernet of the host, with the MAC its `match: {macaddress}` names, so the
  host's own `.link`/`.network` files find and rename it (`set-name: eno1`), at the
  ethernet's planned MTU, all on one wire bridge in libvirtd's namespace that carries the
  host's gateways' addresses (the bootstrap's probe);
- a management NIC on a bridge of its own (198.18.0.0/24, RFC 2544's benchmarking
  range, seen nowhere else), so SSH keeps working while the bootstrap rebuilds the host's
  network. Host images turn cloud-init's network handling off (kvmnet's files own the
  NICs; cloud-init 22.4 then ignores a seed's network-config too), so the seed's
  `bootcmd` writes a networkd file for it (first in sort order, matched by MAC) and
  restarts networkd; the network-config stays for images made before that;
- a seed (label cidata) whose user-data gives root the test's SSH key: the host suite
  reads what root reads (tc, bridge VLANs, /proc/cmdline).

An ethernet matched by name gets its name as on a server's board: a NIC matched as
`eno<N>` is given ACPI index N (`<acpi index='N'/>`), from which udev's onboard naming
names it eno<N> at every boot, after the kernel named it eth<M>. That is the case
finding 5 of issue 14 is about: a `.link` matched by `OriginalName=eno<N>` never matches
at boot. Any other name cannot be given to a virtio NIC (udev names it by its PCI path,
`enp1s0`): the tier refuses such a host and says how to match instead.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import yaml

from generator import layout
from generator.plan.types import HostPlan, Kind
from generator.renderers import seed
from generator.vm.errors import VmTierError

WIRE = "kvwire"  # the bridge the host's ethernets are cabled to
MGMT = "kvmgmt"  # the management bridge
MGMT_NET = ipaddress.ip_network("198.18.0.0/24")
MGMT_MTU = 1500
#: The management NIC's networkd file in the host VM: sorts before every kvmnet file.
MGMT_NETWORK = "/etc/systemd/network/05-kvmnet-vm-mgmt.network"


@dataclass(frozen=True)
class HostVm:
    name: str
    xml: str
    seed: bytes
    address: str  # management address to SSH to
    disk: str  # paths inside libvirtd's mount namespace
    cdrom: str
    wire_mtu: int
    wire_addresses: tuple[str, ...]  # the host's gateways, with the prefix of the host's subnet


_ONBOARD = re.compile(r"eno([1-9][0-9]{0,3})")


@dataclass(frozen=True)
class Ethernet:
    mac: str
    mtu: int
    acpi_index: int | None  # for a NIC matched by its onboard name eno<N>


def _ethernets(host: HostPlan, index: int) -> list[Ethernet]:
    """Each ethernet's NIC; refused if one is matched by a name a VM's NIC cannot have."""
    out = []
    for number, device in enumerate(d for d in host.interfaces if d.kind == Kind.ETHERNET):
        if device.match.mac is not None:
            out.append(Ethernet(device.match.mac, device.mtu, None))
            continue
        name = device.concrete_name or device.id
        onboard = _ONBOARD.fullmatch(name)
        if onboard is None:
            raise VmTierError.of(
                f"host {host.name}: ethernet {device.id} is matched by the name {name}, which a VM's "
                "virtio NIC cannot have (udev names it by its PCI path); match it by its onboard name "
                f"eno<N>, which the tier gives as ACPI index N, or by match: {{macaddress: ...}} "
                f"with set-name: {name}"
            )
        # Locally administered, never a MAC the profile matches: host index and NIC number.
        mac = device.macaddress or f"52:54:00:b0:{index:02x}:{number:02x}"
        out.append(Ethernet(mac, device.mtu, int(onboard.group(1))))
    return out


def _gateways(host: HostPlan) -> tuple[str, ...]:
    """Each gateway address with the prefix of the host's own address in its subnet."""
    found: list[str] = []
    for device in host.interfaces:
        vias = [*device.gateways, *(r.gateway for r in device.routes if r.gateway)]
        for via in vias:
            gateway = ipaddress.ip_address(via)
            for own in device.addresses:
                net = ipaddress.ip_interface(own).network
                if gateway in net and f"{gateway}/{net.prefixlen}" not in found:
                    found.append(f"{gateway}/{net.prefixlen}")
    return tuple(found)


@dataclass(frozen=True)
class NameServer:
    """A nameserver of the host that the tier answers for on the wire."""

    address: str  # with the prefix of the host's subnet it is in, for the wire bridge
    zones: tuple[str, ...]  # the host's search domains: the DNS check asks for their SOA


def name_servers(host: HostPlan) -> tuple[NameServer, ...]:
    """The host's IPv4 nameservers in a subnet of its own, with its search domains: the
    tier runs a server there, authoritative for those domains (`test_dns_resolves` asks
    for the SOA of the first one through systemd-resolved). None without a domain."""
    found: dict[str, set[str]] = {}
    for device in host.interfaces:
        for server in device.dns:
            address = ipaddress.ip_address(server)
            for own in device.addresses:
                net = ipaddress.ip_interface(own).network
                if address.version == 4 and address in net and device.domains:
                    found.setdefault(f"{address}/{net.prefixlen}", set()).update(device.domains)
    return tuple(NameServer(a, tuple(sorted(z))) for a, z in sorted(found.items()))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def host_vm(host: HostPlan, index: int, public_key: str, *, vcpus: int = 2, memory_mib: int = 1024) -> HostVm:
    """The VM for `host` (the `index`-th host the tier boots: its management address)."""
    ethernets = _ethernets(host, index)
    address = str(MGMT_NET[2 + index])
    mgmt_mac = f"52:54:00:fe:00:{index + 1:02x}"
    # The tier's own files, beside where the plan puts guests' disks.
    disk = f"{layout.LIBVIRT_IMAGES}/kvmnet-host-{host.name}.qcow2"
    cdrom = f"{layout.LIBVIRT_IMAGES}/kvmnet-host-{host.name}-seed.iso"

    domain = ET.Element("domain", type="qemu")  # software emulation: see docs/vm.md
    _sub(domain, "name", host.name)
    _sub(domain, "memory", str(memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(vcpus))
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    _sub(os_, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    devices = _sub(domain, "devices")
    for path, device, bus, dev, kind in (
        (disk, "disk", "virtio", "vda", "qcow2"),
        (cdrom, "cdrom", "sata", "sda", "raw"),
    ):
        element = _sub(devices, "disk", type="file", device=device)
        _sub(element, "driver", name="qemu", type=kind)
        _sub(element, "source", file=path)
        _sub(element, "target", dev=dev, bus=bus)
        if device == "cdrom":
            _sub(element, "readonly")
    nics = (Ethernet(mgmt_mac, MGMT_MTU, None), *ethernets)
    for nic_of, bridge in zip(nics, (MGMT, *(WIRE for _ in ethernets)), strict=True):
        nic = _sub(devices, "interface", type="bridge")
        _sub(nic, "mac", address=nic_of.mac)
        _sub(nic, "source", bridge=bridge)
        _sub(nic, "model", type="virtio")
        _sub(nic, "mtu", size=str(nic_of.mtu))
        if nic_of.acpi_index is not None:
            _sub(nic, "acpi", index=str(nic_of.acpi_index))
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    ET.indent(domain)
    xml = ET.tostring(domain, encoding="unicode") + "\n"

    mgmt_network = (
        "# Written by the kvmnet VM tier's seed: the management NIC (SSH).\n"
        f"[Match]\nMACAddress={mgmt_mac}\n\n"
        f"[Network]\nAddress={address}/{MGMT_NET.prefixlen}\nLinkLocalAddressing=no\n"
    )
    # Not `networkctl reload`: it asks networkd over D-Bus, which a host image need not have
    # ("Failed to connect system bus", seen on hv1's console); systemctl reaches systemd
    # over its own socket. --no-block: cloud-init.service must not wait on networkd's restart.
    write_mgmt = f'printf %s "$1" >{MGMT_NETWORK} && systemctl restart --no-block systemd-networkd'
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {
            # cloud-init.service runs bootcmd while networkd runs already: hence the restart.
            "bootcmd": [["sh", "-c", write_mgmt, "sh", mgmt_network]],
            # root's key as given: with disable_root cloud-init would prefix "please login as".
            "disable_root": False,
            "ssh_pwauth": False,
            "write_files": [
                {
                    "path": "/root/.ssh/authorized_keys",
                    "content": public_key.strip() + "\n",
                    "permissions": "0600",
                }
            ],
        },
        sort_keys=True,
    )
    meta_data = yaml.safe_dump({"instance-id": f"kvmnet-vm-host-{host.name}", "local-hostname": host.name})
    network = yaml.safe_dump(
        {
            "version": 2,
            "ethernets": {
                "kvmgmt0": {
                    "match": {"macaddress": mgmt_mac},
                    "set-name": "kvmgmt0",
                    "addresses": [f"{address}/{MGMT_NET.prefixlen}"],
                    "dhcp4": False,
                }
            },
        },
        sort_keys=True,
    )
    iso = seed.image(
        [
            ("user-data", user_data.encode()),
            ("meta-data", meta_data.encode()),
            ("network-config", network.encode()),
        ]
    )
    wire_mtu = max((e.mtu for e in ethernets), default=1500)
    return HostVm(host.name, xml, iso, address, disk, cdrom, wire_mtu, _gateways(host))


#: udev's stable link of a virtio disk with a serial (60-persistent-storage.rules).
VIRTIO_BY_ID = "/dev/disk/by-id/virtio-"


@dataclass(frozen=True)
class BareVm:
    """A server with nothing installed, set up to PXE-boot: the PXE tier's machine."""

    name: str
    xml: str
    disk: str  # path inside libvirtd's mount namespace: created empty by the tier
    wire_mtu: int
    wire_addresses: tuple[str, ...]


def bare_vm(host: HostPlan, index: int, mac: str, *, vcpus: int = 2, memory_mib: int = 2048) -> BareVm:
    """`host` as a machine fresh from the rack: an empty disk, its ethernets cabled to the
    wire with their MACs, booting its disk first and the NIC with `mac` second (a server's
    usual boot order for PXE: an empty disk falls through to the network, a written one
    boots). No seed and no management NIC: what the machine becomes is the boot
    service's doing, and the tier reaches it at the host's own address on the wire."""
    ethernets = _ethernets(host, index)
    if mac not in {e.mac for e in ethernets}:
        raise VmTierError.of(f"host {host.name}: no ethernet with the provisioning MAC {mac}")
    disk = f"{layout.LIBVIRT_IMAGES}/kvmnet-bare-{host.name}.qcow2"
    domain = ET.Element("domain", type="qemu")  # software emulation: see docs/vm.md
    _sub(domain, "name", host.name)
    _sub(domain, "memory", str(memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(vcpus))
    os_ = _sub(domain, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="q35")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    devices = _sub(domain, "devices")
    element = _sub(devices, "disk", type="file", device="disk")
    _sub(element, "driver", name="qemu", type="qcow2")
    _sub(element, "source", file=disk)
    _sub(element, "target", dev="vda", bus="virtio")
    if host.install.disk and host.install.disk.startswith(VIRTIO_BY_ID):
        # The disk as the profile names it: udev links a virtio disk with a serial as
        # /dev/disk/by-id/virtio-<serial> (a server's disk by its serial number).
        _sub(element, "serial", host.install.disk.removeprefix(VIRTIO_BY_ID))
    _sub(element, "boot", order="1")
    for ethernet in ethernets:
        nic = _sub(devices, "interface", type="bridge")
        _sub(nic, "mac", address=ethernet.mac)
        _sub(nic, "source", bridge=WIRE)
        _sub(nic, "model", type="virtio")
        _sub(nic, "mtu", size=str(ethernet.mtu))
        if ethernet.acpi_index is not None:
            _sub(nic, "acpi", index=str(ethernet.acpi_index))
        if ethernet.mac == mac:
            _sub(nic, "boot", order="2")  # its ROM is QEMU's iPXE (Debian's ipxe-qemu)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    ET.indent(domain)
    xml = ET.tostring(domain, encoding="unicode") + "\n"
    wire_mtu = max((e.mtu for e in ethernets), default=1500)
    return BareVm(host.name, xml, disk, wire_mtu, _gateways(host))
