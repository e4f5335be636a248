"""What networkd made of each hypervisor's files: the daemon and its log, and every planned
device (created, configured), told apart from what this kernel cannot do.

The attributes of each device (MTU, master, VLANs, addresses...) are the generated
testinfra suites' business (area `suite`); this only says whether networkd got there,
and why not when it did not, so that later skips and failures can be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from generator.lab.layout import kernel_name, planned_addresses
from generator.lab.results import Result, failed, passed, skipped
from generator.lab.segments import FILTERING
from generator.lab.state import State
from generator.live.networkd import SYNTAX_COMPLAINT, link_state
from generator.live.processes import alive
from generator.live.snapshot import Snapshot
from generator.plan.types import HostPlan, Interface, Kind, Plan


def _log(state: State, host: str) -> list[str]:
    process = state.networkd(host)
    if process is None:
        return []
    try:
        return Path(process.log).read_text(errors="replace").splitlines()
    except OSError:
        return []


def _needs_filtering(iface: Interface) -> bool:
    """networkd gives up on a device whose [BridgeVLAN] or VLANFiltering= the kernel refuses."""
    return iface.port_vlans is not None or (iface.bridge is not None and iface.bridge.vlan_filtering)


def blocked(
    plan: Plan, missing: Mapping[str, str], snapshots: Mapping[str, Snapshot], state: State
) -> dict[tuple[str, str], str]:
    """(host, device) -> why it cannot pass traffic here; the devices that can are not in it."""
    out = {}
    for host in plan.hosts:
        snapshot = snapshots[state.names.host(host.name)]
        for iface in (*host.interfaces, *host.tap_ports):
            name = kernel_name(iface)
            link = snapshot.link(name)
            if iface.kind.value in missing:
                out[(host.name, name)] = missing[iface.kind.value]
            elif link is None:
                out[(host.name, name)] = "it does not exist"
            elif not link.up or link.operstate not in ("UP", "UNKNOWN"):
                why = f"it is down ({link.operstate.lower()})"
                if _needs_filtering(iface) and FILTERING in missing:
                    why += (
                        f": networkd stops configuring it when its VLAN settings fail: {missing[FILTERING]}"
                    )
                out[(host.name, name)] = why
    return out


def check(plan: Plan, state: State, snapshots: Mapping[str, Snapshot]) -> list[Result]:
    missing = state.missing
    results = []
    for host in plan.hosts:
        process = state.networkd(host.name)
        lines = _log(state, host.name)
        if process is None or not alive(process.pid):
            tail = " | ".join(lines[-5:])
            results.append(failed("networkd", host.name, f"networkd is not running; its log ends: {tail}"))
            continue
        complaints = [line for line in lines if SYNTAX_COMPLAINT.search(line)]
        if complaints:
            results.append(
                failed("networkd", host.name, "complains about its files: " + " | ".join(complaints))
            )
        else:
            results.append(
                passed("networkd", host.name, f"running (PID {process.pid}), no complaint about its files")
            )
        snapshot = snapshots[state.names.host(host.name)]
        for iface in (*host.interfaces, *host.tap_ports):
            results.append(_device(host, iface, snapshot, process.pid, missing, lines))
    return results


def _device(
    host: HostPlan, iface: Interface, snapshot: Snapshot, pid: int, missing: Mapping[str, str], log: list[str]
) -> Result:
    name = kernel_name(iface)
    subject = f"{host.name}/{name}"
    if iface.kind.value in missing:
        return skipped("devices", subject, f"{missing[iface.kind.value]}; networkd read its files")
    link = snapshot.link(name)
    if link is None:
        return failed("devices", subject, f"{iface.kind.value} {name} was not created")
    state = link_state(pid, link.index).get("ADMIN_STATE", "unknown")
    if state == "configured":
        return passed("devices", subject, f"{iface.kind.value}, configured by networkd")
    if state == "configuring" and link.up and planned_addresses(iface) <= link.addresses:
        # What is left is IPv6 router discovery, waiting for routers the lab does not have.
        return passed("devices", subject, f"{iface.kind.value}, configured by networkd (no IPv6 router here)")
    said = [line for line in log if re.search(rf"\b{re.escape(name)}: ", line)][-3:]
    master = snapshot.link(iface.master) if iface.master else None
    if state == "unmanaged" and iface.master_kind is Kind.BOND and master and link.master == master.name:
        # A bond gives its ports its MAC; a veth has no permanent address, so networkd's
        # PermanentMACAddress= match then falls back to the new MAC and lets it go. A
        # real NIC keeps its burnt-in address and stays matched.
        return skipped(
            "devices",
            subject,
            f"a port of {master.name}, as planned; then networkd left it unmanaged: a veth stands in for "
            "the NIC here and has no permanent MAC address, so once its bond gives it its MAC, the "
            ".network's PermanentMACAddress= no longer matches it (a NIC's burnt-in address does)",
        )
    if _needs_filtering(iface) and FILTERING in missing:
        return skipped(
            "devices",
            subject,
            f"networkd left it {state}: its VLAN settings need what this kernel lacks: {missing[FILTERING]}",
        )
    return failed("devices", subject, f"networkd left it {state}: {' | '.join(said)}")
