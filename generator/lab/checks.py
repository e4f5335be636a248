"""`kvmnet lab test`: every check against a lab that is up, in one report.

In order: networkd and its devices on each hypervisor, what the lab could not set up in
the guests, traffic control as applied, reachability and isolation, MTU, shaping
measured with traffic, libvirt's own bandwidth (not in a lab), then the generated
testinfra suites against every namespace.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from generator.lab import devices, policing, reach, shaping, suites
from generator.lab.layout import Layout, make_layout
from generator.lab.names import LabError, Names
from generator.lab.qdiscs import differences
from generator.lab.results import Report, Result, failed, passed, skipped
from generator.lab.segments import pairs
from generator.lab.state import State, load
from generator.live.snapshot import Snapshot, read
from generator.pipeline import plan_profile
from generator.plan.types import Plan, TcPlan


def _tc(plan: Plan, state: State, cannot_queue: dict[str, str]) -> list[Result]:
    runs = {(t.host, t.device): t for t in state.tc}
    results = []
    for host in plan.hosts:
        ns = state.names.host(host.name)
        for tc in host.tc:
            subject = f"{host.name}/{tc.device}"
            how = "kvmnet-tc@ unit" if tc.engine == "service" else "networkd"
            lacking = [cannot_queue[k] for k in _queue_needs(tc) if k in cannot_queue]
            if lacking:
                results.append(skipped("tc", subject, f"{'; '.join(lacking)} (applied by {how})"))
                continue
            ran = runs.get((host.name, tc.device))
            if tc.engine == "service" and ran is not None and not ran.ok:
                results.append(failed("tc", subject, f"the {tc.unit} instance failed: {ran.detail}"))
                continue
            if problems := differences(ns, tc):
                results.append(failed("tc", subject, f"{'; '.join(problems)} (applied by {how})"))
            else:
                results.append(passed("tc", subject, f"applied as planned by {how}"))
    return results


def _queue_needs(tc: TcPlan) -> list[str]:
    needs = [k for k in (tc.shape.kind if tc.shape else None, tc.qdisc) if k]
    return [*needs, "police"] if tc.police is not None else needs


def _libvirt(plan: Plan) -> list[Result]:
    return [
        skipped(
            "libvirt",
            f"{guest.name}/{nic.name}",
            "<bandwidth> is applied by libvirt on the tap when the domain starts (htb, sfq and ingress "
            "policing); the lab has no libvirt: the VM tier covers it",
        )
        for guest in plan.guests
        for nic in guest.nics
        if nic.bandwidth is not None
    ]


def _notes(state: State) -> list[Result]:
    return [Result("setup", subject, outcome, message) for outcome, subject, message in state.notes]


def run_all(names: Names, report_path: Path | None, progress: Callable[[str], None]) -> tuple[Report, Path]:
    state = load(names)
    if state.phase != "up":
        raise LabError.single(
            f"lab {names.lab_id!r} did not finish coming up: "
            f"`kvmnet lab down --id {names.lab_id}`, then up again"
        )
    planned = plan_profile(Path(state.profile))
    if planned.document.digest != state.digest:
        raise LabError.single(
            f"{state.profile} changed since `lab up`: the lab runs the old one; "
            f"`kvmnet lab down --id {names.lab_id}` and up again"
        )
    plan = planned.plan
    layout: Layout = make_layout(names, plan, state.output)
    timings: dict[str, float] = {}
    results: list[Result] = []

    def phase(name: str, work: Callable[[], list[Result]]) -> None:
        progress(name)
        started = time.perf_counter()
        results.extend(work())
        timings[name] = round(time.perf_counter() - started, 3)

    spaces = [h.ns for h in layout.hosts] + [g.ns for g in layout.guests]
    snapshots: dict[str, Snapshot] = {ns: read(ns) for ns in spaces}
    phase("devices", lambda: devices.check(plan, state, snapshots))
    phase("setup", lambda: _notes(state))
    phase("tc", lambda: _tc(plan, state, state.cannot_queue))
    if shutil.which("ping") is None:
        results.append(skipped("reach", "all", "`ping` (iputils-ping) is not installed"))
    else:
        phase("reach", lambda: reach.check(pairs(plan, layout, state.missing), snapshots))
    blocked = devices.blocked(plan, state.missing, snapshots, state)
    if shutil.which("iperf3") is None:
        results.append(skipped("shaping", "all", "`iperf3` is not installed"))
        results.append(skipped("policing", "all", "`iperf3` is not installed"))
    else:
        phase("shaping", lambda: shaping.check(plan, layout, state.missing, blocked))
        phase("policing", lambda: policing.check(plan, layout, state.missing, state.cannot_queue, blocked))
    phase("libvirt", lambda: _libvirt(plan))
    phase("suite", lambda: suites.check(state, layout))
    report = Report(names.lab_id, state.profile, tuple(results), timings)
    path = report_path or state.directory / "report.json"
    report.write(path)
    return report, path
