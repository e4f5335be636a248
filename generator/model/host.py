"""kvmnet's own host sections, beside netplan's `network:`: traffic control, kernel
tuning, how the bootstrap applies changes, and how the host is installed over PXE.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from generator.model.base import Entries, Items, StrictModel, no_entries
from generator.model.types import DeviceId, Flag, IPAddress, Parsed, fail
from generator.model.units import Duration, Rate, Size, parse_time

Distro = Literal["debian12", "ubuntu2204", "ubuntu2404", "el9"]


class TbfShaping(StrictModel):
    """Egress shaping by a token bucket at `rate`."""

    REFUSED_KEYS: ClassVar[dict[str, str]] = {"ceil": "ceil applies to htb only; tbf has one rate"}

    kind: Literal["tbf"]
    rate: Rate
    #: Bytes sent back to back at line rate (needed: at least one frame; the plan checks it).
    burst: Size | None = None
    #: How long a packet may wait in the bucket (default 50ms).
    latency: Duration | None = None


class HtbShaping(StrictModel):
    """Egress shaping by one HTB class at `rate`."""

    REFUSED_KEYS: ClassVar[dict[str, str]] = {"latency": "latency applies to tbf only"}

    kind: Literal["htb"]
    rate: Rate
    #: What the class may borrow up to (default: the rate).
    ceil: Rate | None = None
    #: Bytes sent back to back at line rate; htb picks one if unset.
    burst: Size | None = None


#: Which keys a shaper takes depends on its kind, so the JSON Schema says so too.
Shaping = Annotated[TbfShaping | HtbShaping, Field(discriminator="kind")]
SHAPE_KINDS = ("tbf", "htb")


class Policing(StrictModel):
    """Ingress policing: traffic above `rate` (after `burst`) is dropped on arrival."""

    rate: Rate
    burst: Size


class TrafficControl(StrictModel):
    #: `service` (default): a kvmnet-tc@ unit runs `tc -batch`; `networkd`: the qdisc
    #: sections of the device's .network, for what systemd-networkd 252 can express.
    engine: Literal["service", "networkd"] = "service"
    #: The root qdisc (on a multiqueue device, the service engine puts it under each TX
    #: queue of mq), or with `shape:` the qdisc under the shaper (default: fq_codel).
    #: pfifo and bfifo are plain FIFOs: only on request (a baseline to compare against).
    qdisc: Literal["fq_codel", "fq", "cake", "pfifo", "bfifo"] | None = None
    shape: Shaping | None = None
    police: Policing | None = None


_SYSCTL_KEY = re.compile(r"[a-z0-9_][a-z0-9_.-]*(\.[A-Za-z0-9_.-]+)*")
_SYSCTL_VALUE = re.compile(r"[A-Za-z0-9_.:,/ -]{1,128}")


def _sysctl_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise fail(f"a sysctl value is a number or a word, got {value!r}")
    text = str(value).strip()
    if not _SYSCTL_VALUE.fullmatch(text):
        raise fail(
            f"sysctl value {text!r} is not accepted: use letters, digits, spaces and . : , / _ - "
            "(at most 128 characters)"
        )
    return " ".join(text.split())


SysctlValue = Annotated[str, BeforeValidator(_sysctl_value), WithJsonSchema({"type": ["string", "integer"]})]

_KERNEL_ARG = re.compile(r"[A-Za-z0-9_.,:=/+@-]+")


def _kernel_arg(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"a kernel argument is a word like intel_iommu=on, got {value!r}")
    bad = sorted({c for c in value if not _KERNEL_ARG.fullmatch(c)})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise fail(
            f"kernel argument {value!r} contains {shown}: kvmnet accepts letters, digits and "
            ". , : = / + @ _ - (no spaces, quotes or shell characters)"
        )
    return value


KernelArg = Annotated[str, BeforeValidator(_kernel_arg), WithJsonSchema({"type": "string"})]

_MODULE = re.compile(r"[a-z0-9][a-z0-9_-]{0,55}")


def _module(value: Any) -> str:
    if not isinstance(value, str) or not _MODULE.fullmatch(value):
        raise fail(f"{value!r} is not a kernel module name (lower-case letters, digits, _ and -)")
    return value


ModuleName = Annotated[str, BeforeValidator(_module), WithJsonSchema({"type": "string"})]


class Kernel(StrictModel):
    #: `enabled`; `disabled`: sysctl disable_ipv6 (the stack stays, addresses go);
    #: `removed`: `ipv6.disable=1` on the kernel command line (no stack at all).
    ipv6: Literal["enabled", "disabled", "removed"] = "enabled"
    sysctl: Entries[str, SysctlValue] = Field(default_factory=no_entries)
    modules: Items[ModuleName] = ()
    cmdline: Items[KernelArg] = ()
    #: Pass bridged guest traffic through the host's iptables (br_netfilter). Off by
    #: default: a hypervisor switches guest frames, it does not firewall them.
    bridge_netfilter: Flag = False


def _rollback_after(value: Any) -> int:
    microseconds = parse_time(value)
    if microseconds % 1_000_000 or microseconds < 5_000_000:
        raise fail(
            "rollback-after must be whole seconds, at least 5s (the probe needs time to answer), "
            f"got {value!r}"
        )
    return microseconds


#: Whole seconds from 5s, in any time unit: `60s`, `5000ms`, `0010s`, `60.0s`.
RollbackAfter = Annotated[
    int,
    Parsed(
        _rollback_after,
        {
            "type": "string",
            "pattern": r"^\s*0*([5-9]|[1-9][0-9]+)(000000(\.0+)?\s*us|000(\.0+)?\s*ms|(\.0+)?\s*s)\s*$",
            "description": "whole seconds, at least 5s (60s)",
        },
    ),
]


class Bootstrap(StrictModel):
    #: Address that must answer after a network change, or the change is rolled back.
    #: Default: the gateway of the host's default route; `none` turns the check off.
    probe: IPAddress | Literal["none"] | None = None
    #: How long the probe may take before the rollback.
    #: Written as a profile would (the schema's default is what an editor inserts).
    rollback_after: RollbackAfter = Field(default="60s", validate_default=True)


# Mirror URLs end up in installer files and shell commands: no query strings, quotes or
# shell characters, which no package mirror needs.
_URL = re.compile(r"https?://[A-Za-z0-9._~:/%+-]+")


def _url(value: Any) -> str:
    if not isinstance(value, str) or not _URL.fullmatch(value):
        raise fail(
            f"{value!r} is not accepted as a mirror URL: http:// or https:// followed by letters, "
            "digits and . _ ~ : / % + - only"
        )
    return value


#: Whole disks by kernel name: SCSI/SATA/USB (sda), virtio (vda), Xen (xvda), IDE (hda),
#: NVMe namespaces (nvme0n1), MMC (mmcblk0), s390 DASD (dasda).
_DISK_KERNEL = re.compile(r"(?:[shv]d|xvd|dasd)[a-z]{1,4}|nvme[0-9]{1,3}n[0-9]{1,4}|mmcblk[0-9]{1,3}")
#: Their partitions: a digit after the letters, or pN after a name ending in a digit.
_PART_KERNEL = re.compile(r"(?:[shv]d|xvd|dasd)[a-z]{1,4}[0-9]+|(?:nvme[0-9]+n[0-9]+|mmcblk[0-9]+)p[0-9]+")
#: udev's stable links to a whole disk (60-persistent-storage.rules): by-id names the
#: disk's serial or WWN, by-path its controller port. Characters: what those names hold
#: (udev escapes others as \xNN, which kvmnet does not accept), no shell syntax.
_DISK_LINK = re.compile(r"/dev/disk/(by-id|by-path)/([A-Za-z0-9_.:+-]{1,200})")
_VALID_DISKS = (
    "a whole disk by kernel name (sda, vda, xvda, nvme0n1, mmcblk0) or by a stable link "
    "/dev/disk/by-id/<id> or /dev/disk/by-path/<path>"
)


def _disk(value: Any) -> str:
    """A whole disk to install on, never a partition (the installer partitions it)."""
    if not isinstance(value, str):
        raise fail(f"{value!r} is not a disk: use {_VALID_DISKS}")
    link = _DISK_LINK.fullmatch(value)
    if link:
        if re.search(r"-part[0-9]+$", link.group(2)):
            raise fail(f"{value!r} is a partition; the installer partitions a whole disk: use {_VALID_DISKS}")
        return value
    if value.startswith("/dev/disk/"):
        raise fail(
            f"{value!r} is not accepted: by-uuid, by-label, by-partuuid and by-partlabel name "
            f"filesystems and partitions, which the installation wipes; use {_VALID_DISKS}"
        )
    if _PART_KERNEL.fullmatch(value):
        raise fail(f"{value!r} is a partition; the installer partitions a whole disk: use {_VALID_DISKS}")
    if not _DISK_KERNEL.fullmatch(value):
        raise fail(f"{value!r} is not a disk: use {_VALID_DISKS}")
    return value


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}", value):
        raise fail(f"{value!r} is not a time zone name like UTC or Europe/Berlin")
    return value


Url = Annotated[str, BeforeValidator(_url), WithJsonSchema({"type": "string", "format": "uri"})]
DiskName = Annotated[str, BeforeValidator(_disk), WithJsonSchema({"type": "string"})]
TimeZone = Annotated[str, BeforeValidator(_timezone), WithJsonSchema({"type": "string"})]

# Debian policy's package names (lower-case letters, digits, + - .), plus what EL's allow
# beyond them (upper case, _): never an option (`-y`) or a shell word for the installers.
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._-]{0,127}")


def _package(value: Any) -> str:
    if not isinstance(value, str) or not _PACKAGE.fullmatch(value):
        raise fail(
            f"{value!r} is not a package name: a letter or digit, then letters, digits and + . _ - "
            "(at most 128 characters; no versions or options)"
        )
    return value


PackageName = Annotated[str, BeforeValidator(_package), WithJsonSchema({"type": "string"})]


class Install(StrictModel):
    """How a PXE installation of the host gets its packages."""

    #: Installation source (kickstart `url`, preseed mirror, autoinstall apt mirror).
    mirror: Url | None = None
    #: EL9 only: an EPEL repository (systemd-networkd is packaged there).
    epel: Url | None = None
    #: The whole disk to install on: a kernel name (sda, nvme0n1) or a stable link
    #: (/dev/disk/by-id/..., /dev/disk/by-path/...). Default: the installer's first disk.
    disk: DiskName | None = None
    timezone: TimeZone = "UTC"
    #: How the boot service (`pxe:`) installs the host: `installer` (the distro's, with
    #: kvmnet's answer file) or `image` (kvmnet's deploy ramdisk writes the host's image,
    #: `kvmnet image --role host`, to `disk`).
    method: Literal["installer", "image"] = "installer"
    #: The ethernet that PXE-boots (matched by `macaddress`); default: the host's first
    #: ethernet matched by MAC.
    nic: DeviceId | None = None
    #: Packages the site adds, installed by every vehicle (the installers, the host
    #: image, and the bootstrap on an existing host) beside the virtualization stack.
    packages: Items[PackageName] = ()
