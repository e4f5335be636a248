"""The fleet's PXE boot service (`pxe:`), in `output/pxe/`.

- `pxe/dnsmasq.conf`: DHCP (a range of its own, or proxy-DHCP) for the fleet's
  provisioning MACs only, and TFTP of iPXE for plain PXE firmware;
- `pxe/http/`: the tree any static web server serves at `pxe.url`: `boot.ipxe`, one iPXE
  script per provisioning MAC (`boot/<mac>.ipxe`), and each installing host's answer
  files (`hosts/<host>/`, a copy of what the host's `pxe/` directory holds; Ubuntu's also
  as NoCloud's `user-data` beside an empty `meta-data`).

A delivery vehicle: it carries the answer files made by renderers/pxe.py. What each host
boots is the plan's (plan/boot.py); this module only writes it down.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

from generator import layout
from generator.plan.types import BootPlan, Plan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template

#: iPXE's `${mac:hexhyp}`: the MAC of the NIC that booted, as the scripts are named.
IPXE_MAC = "${mac:hexhyp}"


def _answer_files(boot: BootPlan, plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    installing = {e.host for e in boot.entries if e.method == "installer"}
    distro = {h.name: h.install.distro for h in plan.hosts}
    out = []
    for artifact in artifacts:
        host = layout.host_of(artifact.path)
        if host not in installing or not artifact.path.startswith(f"{layout.pxe_dir(host)}/"):
            continue
        name = artifact.path.rsplit("/", 1)[1]
        where = layout.pxe_http(f"{layout.boot_host_dir(host)}{name}")
        out.append(Artifact(where, artifact.content, artifact.mode))
        if distro[host].startswith("ubuntu") and name == layout.ANSWER_FILES[distro[host]]:
            seed = layout.pxe_http(layout.boot_host_dir(host))
            out.append(Artifact(f"{seed}user-data", artifact.content, artifact.mode))
            out.append(Artifact.text(f"{seed}meta-data", ""))
    return out


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    boot = plan.boot
    if boot is None:
        return []
    boot_url = f"{boot.url}{layout.BOOT_SCRIPT}"
    netmask = str(ipaddress.ip_network(boot.subnet).netmask)
    out = [
        Artifact.text(
            layout.PXE_DNSMASQ,
            render_template("pxe/dnsmasq.conf.j2", boot=boot, netmask=netmask, boot_url=boot_url),
        ),
        Artifact.text(
            layout.pxe_http(layout.BOOT_SCRIPT),
            render_template("pxe/boot.ipxe.j2", url=boot.url, script=layout.boot_script_named(IPXE_MAC)),
        ),
    ]
    for entry in boot.entries:
        out.append(
            Artifact.text(
                layout.pxe_http(layout.boot_script(entry.mac)),
                render_template("pxe/host.ipxe.j2", entry=entry),
            )
        )
    out.extend(_answer_files(boot, plan, artifacts))
    out.append(Artifact.text(layout.PXE_SERVICE, json.dumps(_service(boot), indent=2, sort_keys=True) + "\n"))
    return out


def _service(boot: BootPlan) -> dict[str, object]:
    """pxe/service.json: the URL, and per host what its boot needs from the site."""
    return {
        "generated-by": "kvmnet",
        "url": boot.url,
        "assets": {e.host: list(e.assets) for e in boot.entries},
    }
