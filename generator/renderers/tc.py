"""Traffic control: `tc -batch` files and the kvmnet-tc@ unit that applies them.

Only for devices whose tc engine is `service` (the default); the `networkd` engine's
qdiscs are part of the device's .network (renderers/networkd.py).
"""

from __future__ import annotations

from generator import layout
from generator.errors import format_path
from generator.plan.types import HTB_CLASS, INGRESS_PARENT, HostPlan, Plan, TcEngine, TcPlan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template


def host_files(host: HostPlan) -> list[Artifact]:
    service = [t for t in host.tc if t.engine is TcEngine.SERVICE]
    if not service:
        return []
    unit = render_template("tc/unit.j2", batch=layout.tc_batch("%I"))
    out = [Artifact.text(layout.rootfs_file(host.name, layout.TC_UNIT), unit)]
    for tc in service:
        source = format_path(("hosts", host.name, "tc", tc.device_id))
        text = render_template(
            "tc/batch.j2",
            tc=tc,
            source=source,
            leaf_comment=leaf_comment(tc),
            qdisc=tc.qdisc if tc.fifo_limit is None else f"{tc.qdisc} limit {tc.fifo_limit}",
            HTB_CLASS=HTB_CLASS,
            INGRESS_PARENT=INGRESS_PARENT,
        )
        out.append(Artifact.text(layout.rootfs_file(host.name, layout.tc_batch(tc.device)), text))
    return out


def leaf_comment(tc: TcPlan) -> str:
    """What the qdisc under the shaper is there for (a `#` line of the batch)."""
    if tc.default_leaf:
        return (
            f"# The shaper's queue: {tc.qdisc}, kvmnet's default (the kernel's own is a plain FIFO; "
            "`qdisc: pfifo` asks for it)."
        )
    return f"# The shaper's queue: {tc.qdisc}, as the profile asks."


def render(plan: Plan) -> list[Artifact]:
    return [artifact for host in plan.hosts for artifact in host_files(host)]
