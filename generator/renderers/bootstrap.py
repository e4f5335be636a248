"""Each host's bootstrap.sh: installs its rootfs/ by checksum and applies what changed.

A delivery renderer: it embeds the sha256 and mode of every rootfs file rendered
before it, so the script refuses a rootfs/ that is not the one it was built with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from generator.plan.types import HostPlan, Plan
from generator.renderers.artifact import MODE_SCRIPT, Artifact
from generator.renderers.bundle import by_host
from generator.renderers.networkd import NETWORK_DIR, PREFIX
from generator.renderers.tc import TC_DIR
from generator.templating import render as render_template


@dataclass(frozen=True, slots=True)
class Entry:
    sha256: str
    mode: str  # "0644"
    path: str  # relative to the root, e.g. "etc/sysctl.d/90-kvmnet.conf"


def _rel(path: str) -> str:
    return path.removeprefix("rootfs/")


def script(host: HostPlan, artifacts: Sequence[Artifact]) -> Artifact:
    prefix = f"hosts/{host.name}/rootfs/"
    files = [
        Entry(hashlib.sha256(a.content).hexdigest(), f"{a.mode:04o}", a.path.removeprefix(prefix))
        for a in sorted(artifacts, key=lambda a: a.path)
        if a.path.startswith(prefix)
    ]
    netdevs = [
        (f"{_rel(NETWORK_DIR)}/{PREFIX}{i.id}.netdev", i.netdev_name)
        for i in host.interfaces
        if i.kind.is_netdev
    ]
    links = sorted(i.name for i in host.interfaces if i.name is not None)
    tc_units = [(f"{_rel(TC_DIR)}/{t.device}.tc", t.unit) for t in host.tc if t.engine == "service"]
    text = render_template(
        "bootstrap/bootstrap.sh.j2", host=host, files=files, netdevs=netdevs, links=links, tc_units=tc_units
    )
    return Artifact.text(f"hosts/{host.name}/bootstrap.sh", text, MODE_SCRIPT)


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    grouped = by_host(artifacts)
    return [script(host, grouped.get(host.name, [])) for host in plan.hosts]
