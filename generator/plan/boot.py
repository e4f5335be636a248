"""The fleet's PXE boot service (`pxe:`): each host's boot entry, worked out once.

A host boots from the NIC `install.nic` names (default: its first ethernet matched by
MAC); its iPXE script is keyed by that MAC. What the script boots:

- `install.method: installer`: the distro's installer kernel and initrd from the HTTP
  tree (`installers/<distro>/`, put there by the site: docs/pxe.md says where each comes
  from) with the arguments that make it read kvmnet's answer file unattended;
- `install.method: image`: kvmnet's deploy ramdisk (`kvmnet image --role deploy`), which
  writes the host's image (`images/<host>.qcow2`, checked against `<it>.sha256`) to
  `install.disk` and reboots into it.

`BOOTIF=01-<mac>` (pxelinux's IPAPPEND 2, iPXE's `${mac:hexhyp}`) tells each of them
which NIC booted: debian-installer's netcfg, dracut (anaconda, Ubuntu's casper) and the
deploy ramdisk all read it, so a host with several cabled NICs installs over the right one.
"""

from __future__ import annotations

import ipaddress

from generator import layout
from generator.errors import Diagnostic
from generator.model.boot import BootService
from generator.model.profile import Profile
from generator.plan.types import BootEntry, BootPlan, HostPlan, Kind

#: The consoles the installers and the deploy ramdisk log to: the screen, and the first
#: serial port (a server's serial-over-LAN; the last one named is /dev/console).
CONSOLES = ("console=tty0", "console=ttyS0,115200n8")
#: `kvmnet image --role host` builds Debian 12 images only (generator/image/dib.py).
IMAGE_DISTROS = ("debian12",)


def bootif(mac: str) -> str:
    return f"BOOTIF=01-{mac.lower().replace(':', '-')}"


def _installer_args(host: HostPlan, url: str, mac: str) -> tuple[str, ...]:
    distro = host.install.distro
    answer = f"{url}{layout.boot_host_dir(host.name)}"
    if distro == "debian12":
        # The installer configures its network before it reads a network preseed file,
        # so what it must know by then comes on the boot line: the host name, and the
        # NIC (by MAC: netcfg takes one). With two NICs and BOOTIF alone, debian-installer
        # 12 still asked "Primary network interface" at critical priority (seen in the
        # PXE tier), which stops an unattended install.
        return (
            *("auto=true", "priority=critical", f"url={answer}{layout.ANSWER_FILES[distro]}"),
            *(f"hostname={host.name}", "domain=", f"netcfg/choose_interface={mac}"),
        )
    if distro == "el9":
        # Without a mirror the kickstart has no install source: the site's install tree
        # sits beside the installer's kernel (docs/pxe.md).
        repo = host.install.mirror or f"{url}installers/{distro}/"
        return (f"inst.ks={answer}{layout.ANSWER_FILES[distro]}", f"inst.repo={repo}", "ip=dhcp")
    # Ubuntu: Subiquity reads autoinstall from cloud-init's NoCloud data source, the
    # live system from the ISO. iPXE splits arguments at spaces only, so the `;` stays.
    iso = f"{url}{layout.installer_file(distro, layout.UBUNTU_ISO)}"
    return ("ip=dhcp", f"url={iso}", "autoinstall", f"ds=nocloud-net;s={answer}")


def _entry(host: HostPlan, mac: str, url: str) -> BootEntry:
    if host.install.method == "image":
        image = layout.host_image(host.name)
        return BootEntry(
            host=host.name,
            mac=mac,
            method="image",
            kernel=f"{url}{layout.DEPLOY_KERNEL}",
            initrd=f"{url}{layout.DEPLOY_INITRD}",
            args=(
                # UEFI iPXE hands the kernel the initrd by this name (EFI stub loader).
                f"initrd={layout.DEPLOY_INITRD.rsplit('/', 1)[1]}",
                f"kvmnet.image={url}{layout.host_image(host.name)}",
                f"kvmnet.disk={host.install.disk}",
                bootif(mac),
                *CONSOLES,
            ),
            assets=(layout.DEPLOY_KERNEL, layout.DEPLOY_INITRD, image, layout.sha256_sidecar(image)),
        )
    distro = host.install.distro
    kernel, initrd = layout.INSTALLER_FILES[distro]
    return BootEntry(
        host=host.name,
        mac=mac,
        method="installer",
        kernel=f"{url}{layout.installer_file(distro, kernel)}",
        initrd=f"{url}{layout.installer_file(distro, initrd)}",
        args=(f"initrd={initrd}", *_installer_args(host, url, mac), bootif(mac), *CONSOLES),
        assets=(
            layout.installer_file(distro, kernel),
            layout.installer_file(distro, initrd),
            *((layout.installer_file(distro, layout.UBUNTU_ISO),) if distro.startswith("ubuntu") else ()),
        ),
    )


def provisioning_mac(
    host: HostPlan, nic: str | None, problems: list[Diagnostic], warnings: list[Diagnostic]
) -> str | None:
    """The MAC of the NIC `host` PXE-boots from, or None (with the reason recorded)."""
    path = ("hosts", host.name, "install", "nic")
    ethernets = [i for i in host.interfaces if i.kind == Kind.ETHERNET]
    if nic is not None:
        device = next((i for i in ethernets if i.id == nic), None)
        if device is None or device.match.mac is None:
            matched = [i.id for i in ethernets if i.match.mac is not None]
            what = "is not an ethernet of the host" if device is None else "is not matched by macaddress"
            problems.append(
                Diagnostic(
                    f"{nic!r} {what}: the boot service knows a host by its provisioning NIC's MAC "
                    f"(ethernets matched by MAC: {', '.join(matched) or 'none'})",
                    path,
                )
            )
            return None
        return device.match.mac.lower()
    mac = next((i.match.mac for i in ethernets if i.match.mac is not None), None)
    if mac is None:
        warnings.append(
            Diagnostic(
                f"host {host.name} has no ethernet matched by macaddress, so the boot service "
                "(pxe:) has no entry for it: match its provisioning NIC by MAC",
                ("hosts", host.name, "install"),
            )
        )
        return None
    return mac.lower()


def plan_boot(
    profile: Profile, hosts: tuple[HostPlan, ...], problems: list[Diagnostic], warnings: list[Diagnostic]
) -> BootPlan | None:
    service = profile.pxe
    for host in hosts:
        _check_method(host, problems)
    if service is None:
        return None
    _check_service(service, problems)
    entries = []
    owners: dict[str, str] = {}
    for host in hosts:
        mac = provisioning_mac(host, profile.hosts[host.name].install.nic, problems, warnings)
        if mac is None:
            continue
        if mac in owners:
            problems.append(
                Diagnostic(
                    f"{mac} is also host {owners[mac]}'s provisioning NIC: the boot service tells "
                    "hosts apart by that MAC",
                    ("hosts", host.name, "install", "nic"),
                )
            )
            continue
        owners[mac] = host.name
        entries.append(_entry(host, mac, service.url))
    dhcp = service.dhcp
    return BootPlan(
        url=service.url,
        subnet=dhcp.subnet,
        range=dhcp.range,
        tftp_root=service.tftp_root,
        entries=tuple(entries),
        gateway=dhcp.gateway,
        nameservers=dhcp.nameservers,
    )


def _check_method(host: HostPlan, problems: list[Diagnostic]) -> None:
    if host.install.method != "image":
        return
    path = ("hosts", host.name, "install", "method")
    if host.install.distro not in IMAGE_DISTROS:
        problems.append(
            Diagnostic(
                f"image deployment writes the image `kvmnet image --role host` builds, which is "
                f"Debian 12 ({', '.join(IMAGE_DISTROS)}); host {host.name} is {host.install.distro}: "
                "use method: installer",
                path,
            )
        )
    if host.install.disk is None:
        problems.append(
            Diagnostic(
                "image deployment overwrites the whole install disk: name it in install.disk "
                "(a stable path like /dev/disk/by-path/..., or a kernel name like sda)",
                path,
            )
        )


def _check_service(service: BootService, problems: list[Diagnostic]) -> None:
    dhcp = service.dhcp
    if dhcp.range is None:
        for key in ("gateway", "nameservers"):
            if getattr(dhcp, key):
                problems.append(
                    Diagnostic(
                        f"{key} is handed out with a lease, and proxy-DHCP (no range) hands out none: "
                        "the site's DHCP server does",
                        ("pxe", "dhcp", key),
                    )
                )
        return
    subnet = ipaddress.ip_network(dhcp.subnet)
    first, last = (ipaddress.ip_address(a) for a in dhcp.range)
    path = ("pxe", "dhcp", "range")
    if first not in subnet or last not in subnet or first.version != 4 or last.version != 4:
        problems.append(Diagnostic(f"the range {first}-{last} must lie inside the subnet {subnet}", path))
    elif last < first:
        problems.append(Diagnostic(f"the range ends ({last}) before it starts ({first})", path))
