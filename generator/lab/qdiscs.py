"""What traffic control a device has, read back from the kernel, against what the plan says.

tc's state is read as the generated suites read it (generator/checks/kvmnet_checks.py):
the same parsers of tc's text, where `tc -j` leaves values out (a police action's rate
in iproute2 6.1), and the same comparison of tc's printed rates.
"""

from __future__ import annotations

import json
from typing import Any

from generator.checks.kvmnet_checks import htb_class_in, policers_in, rate_text, size_text, tc_rate_matches
from generator.live.commands import run
from generator.plan.types import TcPlan


def qdiscs(ns: str, device: str) -> list[dict[str, Any]]:
    """`tc -s -j qdisc show`: each qdisc with its options and counters."""
    result = run("tc", "-s", "-j", "-n", ns, "qdisc", "show", "dev", device, check=False)
    data: list[dict[str, Any]] = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    return data


def root(ns: str, device: str) -> dict[str, Any] | None:
    return next((q for q in qdiscs(ns, device) if q.get("root")), None)


def _tc_text(ns: str, *argv: str) -> str:
    result = run("tc", "-n", ns, *argv, check=False)
    return result.stdout if result.returncode == 0 else ""


def differences(ns: str, tc: TcPlan) -> list[str]:
    """How what `tc.device` has differs from the plan (empty: as planned)."""
    out: list[str] = []
    if tc.root_id is not None:  # None: the device is only policed, its root is not kvmnet's
        top = root(ns, tc.device)
        if top is None:
            return [f"no root qdisc on {tc.device}"]
        if tc.mq_id is not None and top.get("kind") == "mq" and top.get("handle") == tc.mq_id:
            # A multiqueue device: the unit kept mq, with the qdisc under each TX queue.
            children = [q for q in qdiscs(ns, tc.device) if str(q.get("parent", "")).startswith(tc.mq_id)]
            if not children or any(q.get("kind") != tc.qdisc for q in children):
                applied = ", ".join(sorted({str(q.get("kind")) for q in children})) or "none"
                out.append(f"per-queue qdisc {applied} under mq applied, {tc.qdisc} configured")
        elif top.get("kind") != tc.root_kind or top.get("handle") != tc.root_id:
            applied = f"{top.get('kind')} {top.get('handle')}"
            return [f"root qdisc {applied} applied, {tc.root_kind} {tc.root_id} configured"]
        out += _shaper_differences(ns, tc, top)
    if tc.leaf_id is not None:
        leaf = next((q for q in qdiscs(ns, tc.device) if q.get("handle") == tc.leaf_id), None)
        if leaf is None or leaf.get("kind") != tc.qdisc:
            out.append(f"leaf qdisc {leaf.get('kind') if leaf else 'none'} applied, {tc.qdisc} configured")
        elif leaf.get("parent") != tc.qdisc_parent:
            out.append(
                f"leaf qdisc {tc.qdisc} under {leaf.get('parent')}, configured under {tc.qdisc_parent}"
            )
    if tc.police is not None:
        policers = policers_in(_tc_text(ns, "filter", "show", "dev", tc.device, "ingress"))
        rates = [p.rate for p in policers]
        if rates != [tc.police.rate]:
            applied = ", ".join(rate_text(r) for r in rates) or "none"
            out.append(f"ingress police rate {applied} applied, {rate_text(tc.police.rate)} configured")
        elif [p.mtu for p in policers] != [tc.police.mtu]:
            applied = ", ".join("none" if p.mtu is None else size_text(p.mtu) for p in policers)
            out.append(f"ingress police mtu {applied} applied, {size_text(tc.police.mtu)} configured")
    return out


def _shaper_differences(ns: str, tc: TcPlan, top: dict[str, Any]) -> list[str]:
    if tc.shape is None:
        return []
    if tc.shape.kind == "tbf":
        rate = int(top.get("options", {}).get("rate", 0)) * 8  # tc -j: bytes per second
        if rate != tc.shape.rate:
            return [f"tbf rate {rate_text(rate)} applied, {rate_text(tc.shape.rate)} configured"]
        return []
    classid = tc.shaper_class
    found = htb_class_in(_tc_text(ns, "class", "show", "dev", tc.device), classid or "")
    if not found:
        return [f"no htb class {classid}"]
    out = []
    for key, want in (("rate", tc.shape.rate), ("ceil", tc.shape.ceil or tc.shape.rate)):
        text = found.get(key, "none")
        if not tc_rate_matches(text, want):
            out.append(f"htb {key} {text} applied, {rate_text(want)} configured")
    return out
