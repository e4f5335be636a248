"""What this machine's kernel can do, found by trying it once in a scratch namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from generator.live.commands import run
from generator.live.namespaces import Lab

#: How to ask the kernel for one device of each networkd kind (an underlay veth `p0` exists).
_PROBES: Mapping[str, tuple[str, ...]] = {
    "bridge": ("type", "bridge"),
    "bond": ("type", "bond"),
    "vlan": ("link", "p0", "type", "vlan", "id", "2"),
    "vxlan": ("type", "vxlan", "id", "2", "dstport", "4789", "local", "192.0.2.1"),
    "gre": ("type", "gre", "local", "192.0.2.1", "remote", "192.0.2.2"),
    "gretap": ("type", "gretap", "local", "192.0.2.1", "remote", "192.0.2.2"),
}
_MODULES = {"bond": "bonding", "vlan": "8021q", "gre": "ip_gre", "gretap": "ip_gre"}
#: What iproute2 says when the kernel lacks a feature; any other error is a broken probe.
_UNSUPPORTED = ("Unknown device type", "Operation not supported")


@dataclass(frozen=True)
class Kernel:
    """What this kernel can do, found by trying it once in a scratch namespace."""

    cannot_create: Mapping[str, str]  # networkd kind -> why the kernel refuses it
    vlan_filtering: str | None  # why a bridge cannot filter VLANs; None if it can
    bridge_vlans: str | None  # why VLANs cannot be set on bridge ports; None if they can


def _refused(result: subprocess.CompletedProcess[str], what: str) -> str | None:
    if result.returncode == 0:
        return None
    said = result.stderr.strip()
    if not any(marker in said for marker in _UNSUPPORTED):
        raise RuntimeError(f"probe {what!r} failed for an unexpected reason: {said}")
    return said


def probe(lab: Lab, kinds: Iterable[str]) -> Kernel:
    ns = lab.namespace("probe")
    lab.veth(ns, "p0", peer_ns=ns, peer_name="p1")
    cannot = {}
    for kind in kinds:
        command = ("ip", "-n", ns, "link", "add", f"t-{kind}", *_PROBES[kind])
        if said := _refused(run(*command, check=False), " ".join(command[3:])):
            module = _MODULES.get(kind, kind)
            cannot[kind] = f"sandbox kernel cannot create {kind} devices (no {module}: {said!r})"
    bridge = "t-bridge"
    if "bridge" in cannot:  # nothing below can be asked without a bridge
        return Kernel(cannot, cannot["bridge"], cannot["bridge"])
    said = _refused(
        run("ip", "-n", ns, "link", "set", bridge, "type", "bridge", "vlan_filtering", "1", check=False),
        "vlan_filtering 1",
    )
    filtering = f"sandbox kernel has no bridge VLAN filtering ({said!r})" if said else None
    run("ip", "-n", ns, "link", "set", "p0", "master", bridge)
    said = _refused(run("bridge", "-n", ns, "vlan", "add", "dev", "p0", "vid", "2", check=False), "vlan add")
    port_vlans = f"sandbox kernel cannot set VLANs on bridge ports ({said!r})" if said else None
    lab.remove_namespace(ns)
    return Kernel(cannot, filtering, port_vlans)
