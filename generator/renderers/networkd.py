"""systemd-networkd files for every hypervisor: .netdev, .network and, where udev has
work to do first, .link. One set per device, named after the device's profile id.
"""

from __future__ import annotations

from generator import layout
from generator.errors import format_path
from generator.plan.types import HTB_CLASS, HostPlan, Interface, Kind, Plan, TcEngine, TcPlan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template

#: networkd's section for each qdisc kvmnet offers (systemd.network(5), v252).
QDISC_SECTIONS = {
    "fq_codel": "FairQueueingControlledDelay",
    "fq": "FairQueueing",
    "cake": "CAKE",
    "pfifo": "PFIFO",
    "bfifo": "BFIFO",
}

#: The key of a FIFO section that takes `TcPlan.fifo_limit` (packets, bytes).
FIFO_LIMIT_KEYS = {"pfifo": "PacketLimit", "bfifo": "LimitBytes"}


def _tc_context(tc: TcPlan | None) -> dict[str, object]:
    """The networkd engine's tc for one device (None when the tc unit applies it)."""
    if tc is None or tc.engine is not TcEngine.NETWORKD:
        return {"tc": None, "qdisc_section": None, "fifo_limit_key": None, "HTB_CLASS": HTB_CLASS}
    return {
        "tc": tc,
        "qdisc_section": QDISC_SECTIONS.get(tc.qdisc or ""),
        "fifo_limit_key": FIFO_LIMIT_KEYS.get(tc.qdisc or ""),
        "HTB_CLASS": HTB_CLASS,
    }


def files_for(host: HostPlan, iface: Interface) -> list[Artifact]:
    def path(kind: layout.NetworkdKind) -> str:
        return layout.rootfs_file(host.name, layout.networkd_file(iface.id, kind))

    source = format_path(iface.origin)
    out = []
    if iface.kind.is_netdev:
        # A bridge's MTU goes in its .network only. Set at creation (.netdev), the kernel
        # treats it as a default and resizes the bridge to its smallest port as soon as a
        # port joins; set afterwards by networkd it counts as chosen and sticks (seen with
        # networkd 252: 1446 planned, 1450 once a 1450-byte VXLAN port joined).
        netdev_mtu = None if iface.kind is Kind.BRIDGE else iface.mtu_written
        text = render_template("networkd/netdev.j2", iface=iface, netdev_mtu=netdev_mtu, source=source)
        out.append(Artifact.text(path("netdev"), text))
    tc = _tc_context(next((t for t in host.tc if t.device_id == iface.id), None))
    network = render_template("networkd/network.j2", iface=iface, source=source, **tc)
    out.append(Artifact.text(path("network"), network))
    if iface.link is not None:
        out.append(
            Artifact.text(path("link"), render_template("networkd/link.j2", iface=iface, source=source))
        )
    return out


def render(plan: Plan) -> list[Artifact]:
    return [
        artifact
        for host in plan.hosts
        for iface in (*host.interfaces, *host.tap_ports)
        for artifact in files_for(host, iface)
    ]
