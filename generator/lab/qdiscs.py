"""What traffic control a device has, read back from the kernel, against what the plan says.

Rates come back from the kernel in bytes per second and must equal the plan's exactly
(as tests/test_tc.py checks for the batches on their own).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pyroute2 import NetNS

from generator.live.commands import run
from generator.plan.types import HTB_CLASS, TcPlan


def qdiscs(ns: str, device: str) -> list[dict[str, Any]]:
    """`tc -s -j qdisc show`: each qdisc with its options and counters."""
    result = run("tc", "-s", "-j", "-n", ns, "qdisc", "show", "dev", device, check=False)
    data: list[dict[str, Any]] = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    return data


def root(ns: str, device: str) -> dict[str, Any] | None:
    return next((q for q in qdiscs(ns, device) if q.get("root")), None)


def htb_class(ns: str, device: str, classid: int) -> Mapping[str, Any] | None:
    """The htb class's parameters (rate, ceil: bytes/s); tc prints no JSON for them."""
    with NetNS(ns) as netns:
        found = netns.link_lookup(ifname=device)
        if not found:
            return None
        for cls in netns.get_classes(found[0]):
            if cls["handle"] == classid:
                options = cls.get_attr("TCA_OPTIONS")
                parms: Mapping[str, Any] | None = options.get_attr("TCA_HTB_PARMS") if options else None
                return parms
    return None


def _mbit(bytes_per_s: int) -> str:
    return f"{bytes_per_s * 8 / 1e6:g} Mbit/s"


def differences(ns: str, tc: TcPlan) -> list[str]:
    """How what `tc.device` has differs from the plan (empty: as planned)."""
    out: list[str] = []
    handle = tc.root_handle
    if handle is not None:  # None: the device is only policed, its root is not kvmnet's
        top = root(ns, tc.device)
        if top is None:
            return [f"no root qdisc on {tc.device}"]
        if top.get("kind") != tc.root_kind or top.get("handle") != f"{handle:x}:":
            return [
                f"root qdisc {top.get('kind')} {top.get('handle')} applied, "
                f"{tc.root_kind} {handle:x}: configured"
            ]
        out += _shaper_differences(ns, tc, top, handle)
    if tc.leaf_handle is not None:
        leaf = next((q for q in qdiscs(ns, tc.device) if q.get("handle") == f"{tc.leaf_handle:x}:"), None)
        if leaf is None or leaf.get("kind") != tc.qdisc:
            out.append(f"leaf qdisc {leaf.get('kind') if leaf else 'none'} applied, {tc.qdisc} configured")
    if tc.police is not None:
        result = run("tc", "-j", "-n", ns, "filter", "show", "dev", tc.device, "ingress", check=False)
        filters = json.loads(result.stdout or "[]") if result.returncode == 0 else []
        police = [
            a for f in filters for a in f.get("options", {}).get("actions", []) if a.get("kind") == "police"
        ]
        applied = int(police[0]["rate"]) if police else 0
        if applied != tc.police.rate // 8:
            out.append(
                f"ingress police rate {_mbit(applied)} applied, {_mbit(tc.police.rate // 8)} configured"
            )
    return out


def _shaper_differences(ns: str, tc: TcPlan, top: Mapping[str, Any], handle: int) -> list[str]:
    out = []
    if tc.shape is not None and tc.shape.kind == "tbf":
        rate = int(top.get("options", {}).get("rate", 0))
        if rate != tc.shape.rate // 8:
            out.append(f"tbf rate {_mbit(rate)} applied, {_mbit(tc.shape.rate // 8)} configured")
    elif tc.shape is not None:
        parms = htb_class(ns, tc.device, (handle << 16) | HTB_CLASS)
        if parms is None:
            out.append(f"no htb class {handle:x}:{HTB_CLASS:x}")
        else:
            for key, want in (("rate", tc.shape.rate), ("ceil", tc.shape.ceil or tc.shape.rate)):
                if int(parms[key]) != want // 8:
                    out.append(f"htb {key} {_mbit(int(parms[key]))} applied, {_mbit(want // 8)} configured")
    return out
