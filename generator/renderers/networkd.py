"""systemd-networkd files for every hypervisor: .netdev, .network and, where udev has
work to do first, .link. One set per device, named after the device's profile id.
"""

from __future__ import annotations

from generator.errors import format_path
from generator.plan.types import HostPlan, Interface, Kind, Plan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template

NETWORK_DIR = "rootfs/etc/systemd/network"
#: Sorts before netplan's `10-netplan-*` and udev's `99-default.link`, so ours apply.
PREFIX = "10-kvmnet-"


def files_for(host: HostPlan, iface: Interface) -> list[Artifact]:
    base = f"hosts/{host.name}/{NETWORK_DIR}/{PREFIX}{iface.id}"
    source = format_path(iface.origin)
    out = []
    if iface.kind.is_netdev:
        # A bridge's MTU goes in its .network only. Set at creation (.netdev), the kernel
        # treats it as a default and resizes the bridge to its smallest port as soon as a
        # port joins; set afterwards by networkd it counts as chosen and sticks (seen with
        # networkd 252: 1446 planned, 1450 once a 1450-byte VXLAN port joined).
        netdev_mtu = None if iface.kind is Kind.BRIDGE else iface.mtu_written
        text = render_template("networkd/netdev.j2", iface=iface, netdev_mtu=netdev_mtu, source=source)
        out.append(Artifact.text(f"{base}.netdev", text))
    out.append(
        Artifact.text(f"{base}.network", render_template("networkd/network.j2", iface=iface, source=source))
    )
    if iface.link is not None:
        out.append(
            Artifact.text(f"{base}.link", render_template("networkd/link.j2", iface=iface, source=source))
        )
    return out


def render(plan: Plan) -> list[Artifact]:
    return [
        artifact for host in plan.hosts for iface in host.interfaces for artifact in files_for(host, iface)
    ]
