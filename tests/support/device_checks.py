"""What the plan says each device must look like, as checks against what networkd made of it.

Split from tests/test_networkd_real.py: which attributes of a device can be verified on
this kernel (or why not), and the check for each one, all derived from the plan.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generator.lab.layout import kernel_name
from generator.layout import NETWORKD_PREFIX as PREFIX
from generator.plan.types import HostPlan, Interface, Kind, TcEngine
from tests.support.networkd import (
    MISSING,
    RUN_NETWORK,
    WARNING,
    Check,
    JournalEntry,
    Kernel,
    Observed,
    PortVlans,
    Result,
    Snapshot,
    Tolerance,
    any_ip,
    info,
    ip,
    on_link,
)

# --- what to expect, from the plan and the probed kernel --------------------------------


@dataclass(frozen=True)
class DeviceCase:
    iface: Interface
    name: str
    absent: str | None  # why the kernel here cannot have this device at all
    gives_up: str | None  # why networkd stops configuring it here (it logs "<name>: Failed")
    tolerances: tuple[Tolerance, ...]
    checks: tuple[Check, ...] = ()

    def evaluate(
        self, snapshot: Snapshot, entries: tuple[JournalEntry, ...], state: Callable[[int], Mapping[str, str]]
    ) -> list[Result]:
        link = snapshot.link(self.name)
        observed = Observed(link, snapshot, entries, state(link.index) if link else {})
        return [Result(check, check.actual(observed)) for check in self.checks]


def absence(host: HostPlan, iface: Interface, kernel: Kernel) -> str | None:
    if iface.kind.is_netdev and (gap := kernel.cannot_create.get(iface.kind.value)):
        return gap
    bound = iface.lower is not None and not (iface.tunnel and iface.tunnel.independent)
    if bound and iface.lower is not None:
        lower = host.get(iface.lower)
        if (why := absence(host, lower, kernel)) is not None:
            return f"it rides on {kernel_name(lower)}, which cannot exist here ({why})"
        if (why := giving_up(host, lower, kernel)) is not None:
            return f"it rides on {kernel_name(lower)}, which networkd gives up on before stacking ({why})"
    return None


def giving_up(host: HostPlan, iface: Interface, kernel: Kernel) -> str | None:
    if iface.port_vlans is not None and kernel.bridge_vlans:
        return f"networkd stops configuring {kernel_name(iface)} when its [BridgeVLAN] fails: {kernel.bridge_vlans}"
    if lacking := _qdiscs_lacking(host, iface, kernel):
        return f"networkd stops configuring {kernel_name(iface)} when its qdisc fails: {'; '.join(lacking)}"
    return None


def _qdiscs_lacking(host: HostPlan, iface: Interface, kernel: Kernel) -> list[str]:
    """Why this kernel refuses a qdisc that networkd's own tc sections set on `iface`."""
    for tc in host.tc:
        if tc.device_id == iface.id and tc.engine is TcEngine.NETWORKD:
            kinds = (tc.shape.kind if tc.shape else None, tc.qdisc)
            return [kernel.cannot_queue[k] for k in kinds if k is not None and k in kernel.cannot_queue]
    return []


def tolerances(host: HostPlan, iface: Interface, kernel: Kernel) -> tuple[Tolerance, ...]:
    name = kernel_name(iface)
    out = []
    if iface.kind.value in kernel.cannot_create:
        out.append(Tolerance(name, "netdev could not be created: Operation not supported"))
    bridge = iface.bridge
    if bridge and (bridge.vlan_filtering or bridge.default_pvid is not None) and kernel.vlan_filtering:
        # networkd sets all IFLA_BR_* in one message; the kernel applies them in order and
        # stops at VLAN filtering (so STP and forward delay, which come first, still apply).
        out.append(Tolerance(name, "Bridge parameters could not be set: Operation not supported"))
    if iface.port_vlans is not None and kernel.bridge_vlans:
        out.append(Tolerance(name, "Failed to set bridge VLAN configurations: Operation not supported"))
    if _qdiscs_lacking(host, iface, kernel):
        out.append(Tolerance(name, r"Could not set QDisc: Specified qdisc kind is unknown\. .*"))
    if giving_up(host, iface, kernel):
        out.append(Tolerance(name, "Failed"))
    return tuple(out)


def expand(spans: Sequence[tuple[int, int]]) -> frozenset[int]:
    return frozenset(v for lo, hi in spans for v in range(lo, hi + 1))


def device_case(host: HostPlan, iface: Interface, kernel: Kernel, files: Mapping[str, bytes]) -> DeviceCase:
    name = kernel_name(iface)
    mine = sorted(f"{RUN_NETWORK}/{f}" for f in files if f.rsplit(".", 1)[0] == f"{PREFIX}{iface.id}")
    tolerated = tolerances(host, iface, kernel)
    absent = absence(host, iface, kernel)
    gives_up = giving_up(host, iface, kernel)
    master = host.get(iface.master) if iface.master else None
    master_absent = absence(host, master, kernel) if master else None
    # A bond sets its ports' MTU, so a port's planned MTU shows only once the bond exists.
    mtu_blocked = (
        f"its MTU is set by its bond {kernel_name(master)}: {master_absent}"
        if master is not None and master.kind is Kind.BOND and master_absent
        else None
    )
    stalled = gives_up
    if stalled is None and master and master_absent:
        stalled = f"it waits for its master {kernel_name(master)}: {master_absent}"

    def untolerated(observed: Observed) -> object:
        return tuple(
            e.message
            for e in observed.entries
            if e.interface == name and e.priority <= WARNING and not any(t.covers(e) for t in tolerated)
        )

    checks = [
        Check(
            "complaints about its files",
            (),
            lambda o: tuple(
                e.message for e in o.entries if e.is_syntax_warning and e.fields.get("CONFIG_FILE") in mine
            ),
        ),
        Check("unexplained warnings", (), untolerated),
    ]
    if iface.kind.is_netdev:
        checks.append(
            Check(
                "loaded by networkd",
                f'{name}: loaded "{iface.kind.value}"',
                lambda o: next(
                    (e.message for e in o.entries if e.message.startswith(f"{name}: loaded ")), None
                ),
            )
        )
    if absent:
        return DeviceCase(iface, name, absent, gives_up, tolerated, tuple(checks))

    network = f"{RUN_NETWORK}/{PREFIX}{iface.id}.network"
    checks += [
        Check("exists", True, lambda o: o.link is not None),
        Check(
            ".network chosen by networkd",
            network if network in mine else None,
            lambda o: o.state.get("NETWORK_FILE"),
        ),
        Check("not failed in networkd", True, lambda o: o.state.get("ADMIN_STATE") != "failed", gives_up),
        Check("MTU", iface.mtu, on_link(lambda link: link.mtu), mtu_blocked),
        Check(
            "master",
            kernel_name(master) if master else None,
            on_link(lambda link: link.master),
            master_absent,
        ),
        Check("administratively up", True, on_link(lambda link: link.up), blocked=stalled),
        Check(
            "addresses",
            frozenset(str(ipaddress.ip_interface(a)) for a in iface.addresses),
            on_link(lambda link: link.addresses),
            blocked=stalled,
        ),
    ]
    if iface.kind.is_netdev:
        checks.append(Check("kind", iface.kind.value, on_link(lambda link: link.kind)))
    checks += kind_checks(host, iface, kernel, stalled)
    return DeviceCase(iface, name, None, gives_up, tolerated, tuple(checks))


def kind_checks(host: HostPlan, iface: Interface, kernel: Kernel, stalled: str | None) -> list[Check]:
    checks = []
    if iface.kind is Kind.VLAN and iface.lower is not None:
        checks.append(Check("VLAN id", iface.vlan_id, info("IFLA_VLAN_ID")))
        checks.append(
            Check("lower device", kernel_name(host.get(iface.lower)), on_link(lambda link: link.parent))
        )
    tunnel = iface.tunnel
    if iface.kind is Kind.VXLAN and tunnel is not None:
        underlay = kernel_name(host.get(iface.lower)) if iface.lower and not tunnel.independent else None
        remote = tunnel.remote or tunnel.group
        checks += [
            Check("VNI", tunnel.vni, info("IFLA_VXLAN_ID")),
            Check(
                "local VTEP",
                tunnel.local and ip(tunnel.local),
                any_ip("IFLA_VXLAN_LOCAL", "IFLA_VXLAN_LOCAL6"),
            ),
            Check("remote or group", remote and ip(remote), any_ip("IFLA_VXLAN_GROUP", "IFLA_VXLAN_GROUP6")),
            Check(
                "underlay device",
                underlay,
                lambda o: (
                    MISSING if o.link is None else o.snapshot.name_of(o.link.info.get("IFLA_VXLAN_LINK"))
                ),
            ),
            Check(
                "FDB",
                frozenset((f.mac.lower(), ip(f.destination)) for f in iface.fdb),
                on_link(lambda link: link.fdb),
                blocked=stalled,
            ),
        ]
        if tunnel.port is not None:
            checks.append(Check("UDP port", tunnel.port, info("IFLA_VXLAN_PORT")))
        if tunnel.mac_learning is not None:
            checks.append(Check("MAC learning", tunnel.mac_learning, info("IFLA_VXLAN_LEARNING", bool)))
        if tunnel.ttl is not None:
            checks.append(Check("TTL", tunnel.ttl, info("IFLA_VXLAN_TTL")))
    if iface.kind in (Kind.GRE, Kind.GRETAP) and tunnel is not None:
        checks += [
            Check("local endpoint", tunnel.local and ip(tunnel.local), info("IFLA_GRE_LOCAL", ip)),
            Check("remote endpoint", tunnel.remote and ip(tunnel.remote), info("IFLA_GRE_REMOTE", ip)),
        ]
        if tunnel.ttl is not None:
            checks.append(Check("TTL", tunnel.ttl, info("IFLA_GRE_TTL")))
    if iface.bridge is not None:
        checks += bridge_checks(iface, kernel)
    if iface.port_vlans is not None:
        checks.append(port_vlan_check(iface, kernel))
    return checks


def centiseconds_as_ms(value: Any) -> object:
    return int(value) * 10  # the kernel reports bridge timers in USER_HZ (1/100 s)


def bridge_checks(iface: Interface, kernel: Kernel) -> list[Check]:
    bridge = iface.bridge
    assert bridge is not None
    checks = []
    if bridge.stp is not None:
        checks.append(Check("STP", bridge.stp, info("IFLA_BR_STP_STATE", bool)))
    timers = (
        ("forward delay (ms)", bridge.forward_delay_ms, "IFLA_BR_FORWARD_DELAY"),
        ("hello time (ms)", bridge.hello_time_ms, "IFLA_BR_HELLO_TIME"),
        ("max age (ms)", bridge.max_age_ms, "IFLA_BR_MAX_AGE"),
        ("ageing time (ms)", bridge.ageing_time_ms, "IFLA_BR_AGEING_TIME"),
    )
    checks += [
        Check(label, ms, info(attr, centiseconds_as_ms)) for label, ms, attr in timers if ms is not None
    ]
    if bridge.priority is not None:
        checks.append(Check("priority", bridge.priority, info("IFLA_BR_PRIORITY")))
    needs_filtering = kernel.vlan_filtering if bridge.vlan_filtering else None
    checks.append(
        Check("VLAN filtering", bridge.vlan_filtering, info("IFLA_BR_VLAN_FILTERING", bool), needs_filtering)
    )
    if bridge.default_pvid is not None:
        pvid = 0 if bridge.default_pvid == "none" else bridge.default_pvid
        checks.append(Check("default PVID", pvid, info("IFLA_BR_VLAN_DEFAULT_PVID"), kernel.vlan_filtering))
    return checks


def port_vlan_check(iface: Interface, kernel: Kernel) -> Check:
    """The planned VLANs of a port, compared on the planned VLAN ids only.

    The kernel adds the bridge's default PVID to every new port by itself; that VLAN is not
    part of [BridgeVLAN], so it is left out of the comparison rather than modelled here.
    """
    planned_vlans = iface.port_vlans
    assert planned_vlans is not None
    vids = expand(planned_vlans.vlans)
    expected = PortVlans(vids, planned_vlans.pvid, expand(planned_vlans.untagged) & vids)
    name = kernel_name(iface)

    def actual(observed: Observed) -> object:
        if observed.snapshot.bridge_vlans is None:
            return None
        seen = observed.snapshot.bridge_vlans.get(name, PortVlans(frozenset(), None, frozenset()))
        pvid = seen.pvid if seen.pvid in vids or seen.pvid == planned_vlans.pvid else None
        return PortVlans(seen.vids & vids, pvid, seen.untagged & vids)

    return Check("port VLANs", expected, actual, kernel.bridge_vlans)


def device_cases(host: HostPlan, kernel: Kernel, files: Mapping[str, bytes]) -> dict[str, DeviceCase]:
    return {
        iface.id: device_case(host, iface, kernel, files) for iface in (*host.interfaces, *host.tap_ports)
    }


def describe(case: DeviceCase, results: Sequence[Result], entries: Sequence[JournalEntry]) -> str:
    lines = [f"{case.name} ({case.iface.kind.value}, {case.iface.origin}):"]
    lines += [
        f"  {r.check.label}: expected {r.check.expected!r}, got {r.actual!r}" for r in results if r.wrong
    ]
    mentions = [e.message for e in entries if e.interface == case.name and e.priority <= 6]
    lines += ["networkd said about it:", *(f"  {m}" for m in mentions[-20:])]
    return "\n".join(lines)


# --- running networkd per host -----------------------------------------------------------
