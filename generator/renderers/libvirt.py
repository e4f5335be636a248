"""libvirt XML: a domain per guest, and per host a network for each of its bridges."""

from __future__ import annotations

import uuid

from generator import layout
from generator.errors import format_path
from generator.plan.types import GuestPlan, Kind, Plan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template


def network_uuid(host: str, bridge: str) -> str:
    """Stable across builds: libvirt refuses to define a network again under a new UUID
    ("network 'X' already exists with uuid ..."), and without one it invents a new one each time."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kvmnet:{host}/network/{bridge}"))


def domain(guest: GuestPlan) -> Artifact:
    text = render_template(
        "libvirt/domain.xml.j2",
        guest=guest,
        uuid=guest.uuid,
        source=format_path(("guests", guest.name)),
    )
    return Artifact.text(layout.domain_xml(guest.name), text)


def render(plan: Plan) -> list[Artifact]:
    out = [domain(guest) for guest in plan.guests]
    for host in plan.hosts:
        bridges = {i.netdev_name: i for i in host.interfaces if i.kind is Kind.BRIDGE}
        for name in host.virt.networks:
            text = render_template(
                "libvirt/network.xml.j2",
                name=name,
                uuid=network_uuid(host.name, name),
                source=format_path(bridges[name].origin),
            )
            out.append(Artifact.text(layout.libvirt_network(host.name, name), text))
    return out
