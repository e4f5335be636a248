"""The virtualization stack of a host: what every vehicle installs and enables so that the
generated domain XML runs and the generated libvirt networks can be defined.

Package names checked against the distributions' archives (docs/hypervisor.md,
"The virtualization stack"): Debian 12 and Ubuntu split QEMU and libvirt into
`qemu-system-x86` (the emulator the domain XML names, with seabios and ipxe-qemu),
`qemu-utils` (qemu-img: guests' disks are qcow2 overlays), `libvirt-daemon-system`
(libvirtd and its units; it depends on the QEMU driver) and `libvirt-clients` (virsh);
EL9's `qemu-kvm` and `libvirt` pull in the same. UEFI guests (`<os firmware='efi'>`)
need the firmware and its descriptors: Debian's `ovmf`, EL9's `edk2-ovmf`.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator.plan.types import HostPlan, Kind, UserPlan, VirtPlan

STACK = {
    "debian12": ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients"),
    "ubuntu2204": ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients"),
    "ubuntu2404": ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients"),
    "el9": ("qemu-kvm", "libvirt"),
}
UEFI_FIRMWARE = {"debian12": "ovmf", "ubuntu2204": "ovmf", "ubuntu2404": "ovmf", "el9": "edk2-ovmf"}
#: Debian and Ubuntu run the monolithic libvirtd; EL9 the modular daemons, socket
#: activated: virtqemud for qemu:///system, which asks virtnetworkd for networks.
UNITS = {
    "debian12": ("libvirtd.service",),
    "ubuntu2204": ("libvirtd.service",),
    "ubuntu2404": ("libvirtd.service",),
    "el9": ("virtqemud.socket", "virtnetworkd.socket"),
}


def plan_virt(host: HostPlan, site: Sequence[str], users: Sequence[UserPlan], uefi: bool) -> VirtPlan:
    """The packages (the stack; the UEFI firmware when a guest of the host boots UEFI;
    sudo when a user gets a sudo rule; then the profile's `install.packages`), the
    units to enable, and the libvirt networks (one per host bridge)."""
    distro = host.install.distro
    packages = list(STACK[distro])
    if uefi:
        packages.append(UEFI_FIRMWARE[distro])
    if any(u.sudo for u in users):
        packages.append("sudo")
    packages += site
    return VirtPlan(
        packages=tuple(dict.fromkeys(packages)),
        units=UNITS[distro],
        networks=tuple(i.netdev_name for i in host.interfaces if i.kind is Kind.BRIDGE),
    )
