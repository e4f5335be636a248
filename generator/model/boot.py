"""kvmnet's fleet-wide PXE boot service (`pxe:`): where it is and how it hands out leases.

What it serves is derived (plan/boot.py): one iPXE script per host, keyed by the MAC of
the host's provisioning NIC (`hosts.<h>.install.nic`), booting either the distro's
installer with kvmnet's answer file or kvmnet's deploy ramdisk with the host's image.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from generator.model.base import StrictModel
from generator.model.guest import AbsPath
from generator.model.types import IPAddress, fail

# The URL ends up on kernel command lines and in iPXE scripts, whose words are split at
# spaces: no query strings, quotes or shell characters. http only: iPXE in NIC ROMs
# (QEMU's among them) is commonly built without TLS, and debian-installer's `url=` too.
_BOOT_URL = re.compile(r"http://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~/%+-]*)?")


def _boot_url(value: Any) -> str:
    if not isinstance(value, str) or not _BOOT_URL.fullmatch(value):
        raise fail(
            f"{value!r} is not accepted as the boot service's URL: http://<address>[:port][/path/], "
            "with letters, digits and . _ ~ / % + - in the path"
        )
    return value if value.endswith("/") else f"{value}/"


BootUrl = Annotated[str, BeforeValidator(_boot_url), WithJsonSchema({"type": "string", "format": "uri"})]


def _subnet(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"a subnet is written like 192.0.2.0/24, got {value!r}")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise fail(f"{value!r} is not an IPv4 subnet like 192.0.2.0/24 (host bits zero)") from None
    if network.version != 4:
        raise fail(f"{value!r}: PXE with DHCPv4 only (an IPv4 subnet like 192.0.2.0/24)")
    return str(network)


Subnet = Annotated[str, BeforeValidator(_subnet), WithJsonSchema({"type": "string"})]


class BootDhcp(StrictModel):
    """DHCP for booting machines: a server of its own on `subnet` handing out `range`,
    or, without `range`, proxy-DHCP beside the site's DHCP server (boot information only)."""

    subnet: Subnet
    #: First and last address handed to booting machines (inside `subnet`).
    range: tuple[IPAddress, IPAddress] | None = None
    #: With `range`: the router and name servers handed out with the lease. An installer
    #: needs a name server to reach its mirror (debian-installer stops to ask for one).
    gateway: IPAddress | None = None
    nameservers: tuple[IPAddress, ...] = ()


class BootService(StrictModel):
    """`pxe:`: the boot service that installs or images the fleet's hosts (output/pxe/)."""

    #: Where machines fetch the HTTP tree (output/pxe/http/): http://<address>[:port]/[path/].
    url: BootUrl
    dhcp: BootDhcp
    #: Where the boot server keeps iPXE's binaries for plain PXE firmware (undionly.kpxe
    #: for BIOS, ipxe.efi for UEFI): Debian's `ipxe` package puts them here.
    tftp_root: AbsPath = "/usr/lib/ipxe"
