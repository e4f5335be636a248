"""What this machine's kernel can do, found by trying it once in a scratch namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from generator.live.commands import run
from generator.live.namespaces import Lab
from generator.plan.types import KIND_MODULES, Kind

#: How to ask the kernel for one device of each networkd kind (an underlay veth `p0` exists).
_PROBES: Mapping[str, tuple[str, ...]] = {
    "bridge": ("type", "bridge"),
    "bond": ("type", "bond"),
    "vlan": ("link", "p0", "type", "vlan", "id", "2"),
    "vxlan": ("type", "vxlan", "id", "2", "dstport", "4789", "local", "192.0.2.1"),
    "gre": ("type", "gre", "local", "192.0.2.1", "remote", "192.0.2.2"),
    "gretap": ("type", "gretap", "local", "192.0.2.1", "remote", "192.0.2.2"),
}
#: One `tc qdisc add` per kind kvmnet (or libvirt's <bandwidth>) may ask for, on `p0`.
_QDISCS: Mapping[str, tuple[str, ...]] = {
    "tbf": ("tbf", "rate", "1mbit", "burst", "10kb", "latency", "50ms"),
    "htb": ("htb",),
    "fq_codel": ("fq_codel",),
    "fq": ("fq",),
    "cake": ("cake",),
    "sfq": ("sfq",),
    "netem": ("netem", "delay", "1ms"),
}
#: What iproute2 says when the kernel lacks a feature; any other error is a broken probe.
_UNSUPPORTED = ("Unknown device type", "Operation not supported")


@dataclass(frozen=True)
class Kernel:
    """What this kernel can do, found by trying it once in a scratch namespace."""

    cannot_create: Mapping[str, str]  # networkd kind -> why the kernel refuses it
    vlan_filtering: str | None  # why a bridge cannot filter VLANs; None if it can
    bridge_vlans: str | None  # why VLANs cannot be set on bridge ports; None if they can
    #: qdisc kind, or "police" (an ingress policing filter) -> why tc cannot set it up
    cannot_queue: Mapping[str, str] = field(default_factory=dict)


def _refused(result: subprocess.CompletedProcess[str], what: str) -> str | None:
    if result.returncode == 0:
        return None
    said = result.stderr.strip()
    if not any(marker in said for marker in _UNSUPPORTED):
        raise RuntimeError(f"probe {what!r} failed for an unexpected reason: {said}")
    return said


def probe(lab: Lab, kinds: Iterable[str]) -> Kernel:
    ns = lab.namespace("probe")
    kernel = probe_namespace(ns, kinds)
    lab.remove_namespace(ns)
    return kernel


def probe_namespace(ns: str, kinds: Iterable[str]) -> Kernel:
    """Probe in `ns`, an empty namespace the caller made (and removes afterwards)."""
    run("ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    run("ip", "-n", ns, "link", "set", "p1", "up")
    queues = _qdiscs(ns)
    cannot = {}
    for kind in kinds:
        command = ("ip", "-n", ns, "link", "add", f"t-{kind}", *_PROBES[kind])
        if said := _refused(run(*command, check=False), " ".join(command[3:])):
            module = KIND_MODULES[Kind(kind)][0]
            cannot[kind] = f"sandbox kernel cannot create {kind} devices (no {module}: {said!r})"
    bridge = "t-bridge"
    if "bridge" in cannot:  # nothing below can be asked without a bridge
        return Kernel(cannot, cannot["bridge"], cannot["bridge"], queues)
    if "bridge" not in kinds:
        run("ip", "-n", ns, "link", "add", bridge, "type", "bridge")
    said = _refused(
        run("ip", "-n", ns, "link", "set", bridge, "type", "bridge", "vlan_filtering", "1", check=False),
        "vlan_filtering 1",
    )
    filtering = f"sandbox kernel has no bridge VLAN filtering ({said!r})" if said else None
    run("ip", "-n", ns, "link", "set", "p0", "master", bridge)
    said = _refused(run("bridge", "-n", ns, "vlan", "add", "dev", "p0", "vid", "2", check=False), "vlan add")
    port_vlans = f"sandbox kernel cannot set VLANs on bridge ports ({said!r})" if said else None
    return Kernel(cannot, filtering, port_vlans, queues)


def _qdiscs(ns: str) -> Mapping[str, str]:
    """qdisc kind, or "police" -> why tc refuses it, for what this kernel cannot do."""
    missing = {}
    for number, (kind, spec) in enumerate(_QDISCS.items(), start=1):
        # A handle of its own per kind: the kernel refuses to turn one qdisc into another kind.
        command = ("tc", "-n", ns, "qdisc", "replace", "dev", "p0", "root", "handle", f"{number}:", *spec)
        result = run(*command, check=False)
        if result.returncode != 0:
            missing[kind] = f"sandbox kernel has no sch_{kind} ({result.stderr.strip()!r})"
    run("tc", "-n", ns, "qdisc", "del", "dev", "p0", "root", check=False)
    result = run("tc", "-n", ns, "qdisc", "add", "dev", "p0", "ingress", check=False)
    if result.returncode == 0:
        result = run(
            *("tc", "-n", ns, "filter", "add", "dev", "p0", "parent", "ffff:", "protocol", "all"),
            *("pref", "1", "matchall", "action", "police", "rate", "1mbit", "burst", "100kb"),
            *("conform-exceed", "drop"),
            check=False,
        )
    if result.returncode != 0:
        missing["police"] = f"sandbox kernel cannot police ingress ({result.stderr.strip()!r})"
    return missing
