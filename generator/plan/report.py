"""What `kvmnet plan` shows: tables for people, JSON for tools.

The JSON is the plan keyed the way the profile is: hosts, guests and overlays by name,
a host's devices by their id and its traffic control by device, so `jq .hosts.hv2` and
`jq .hosts.hv1.interfaces.eno1.mtu` work. A key is not repeated inside its value. Lists
stay lists where the profile has lists (a guest's NICs, users, an overlay's members).
Warnings carry where they are, as stderr prints them. Secrets are hidden (`redact`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table

from generator.errors import Diagnostic, format_path
from generator.plan.redact import redacted
from generator.plan.types import Bandwidth, GuestNic, Interface, Kind, Plan


def _keyed(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    keyed: dict[str, dict[str, Any]] = {}
    for item in items:
        name = item.pop(key)
        if name in keyed:  # the plan's own rules make names unique; this would be a bug
            raise ValueError(f"two plan entries named {name!r} under one key")
        keyed[name] = item
    return keyed


def _where(diagnostic: Diagnostic) -> str | None:
    loc = diagnostic.location
    if loc is None:
        return None
    return loc.file if loc.line == 0 else f"{loc.file}:{loc.line}:{loc.column}"


def data(plan: Plan, warnings: Sequence[Diagnostic]) -> dict[str, Any]:
    """The plan as JSON data; `warnings` are the plan's, located in the profile."""
    # Redacted before keying: once names are keys, a guest named `passwd` would look
    # like a password field.
    shown = redacted(dataclasses.asdict(plan))
    hosts = {}
    for host in shown["hosts"]:
        name = host.pop("name")
        for field, key in (("interfaces", "id"), ("tap_ports", "id"), ("tc", "device_id")):
            host[field] = _keyed(host[field], key)
        hosts[name] = host
    return {
        "hosts": hosts,
        "overlays": _keyed(shown["overlays"], "name"),
        "guests": _keyed(shown["guests"], "name"),
        "warnings": [
            {"location": _where(w), "path": format_path(w.path), "message": w.message} for w in warnings
        ],
    }


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        # fold, not the default ellipsis: a narrow terminal must not cut a name short
        table.add_column(column, justify="right" if column in ("MTU", "VNI") else "left", overflow="fold")
    return table


def _kind(iface: Interface) -> str:
    if iface.kind is Kind.VLAN and iface.vlan_id is not None:
        return f"vlan {iface.vlan_id}"
    if iface.kind is Kind.VXLAN and iface.tunnel is not None and iface.tunnel.vni is not None:
        return f"vxlan {iface.tunnel.vni}"
    if iface.master is not None:
        return f"{iface.kind.value}, port of {iface.master}"
    return iface.kind.value


def _chain(iface: Interface) -> str:
    """The MTU's path from the underlay up, e.g. `eno1 9000 > vx10010 8950 > br-tenant 8950`."""
    return " > ".join(f"{step.device} {step.mtu}" for step in iface.mtu_chain)


def _host_table(plan: Plan) -> list[RenderableType]:
    tables: list[RenderableType] = []
    for host in plan.hosts:
        table = _table(f"host {host.name}", "device", "kind", "MTU", "underlay chain", "MTU from")
        for iface in host.interfaces:
            reason = iface.mtu_chain[-1].reason if iface.mtu_chain else ""
            table.add_row(iface.id, _kind(iface), str(iface.mtu), _chain(iface), reason)
        tables.append(table)
    return tables


def _overlay_table(plan: Plan) -> Table:
    table = _table("overlays", "overlay", "VNI", "device", "bridge", "MTU", "VTEPs (host address underlay)")
    for overlay in plan.overlays:
        vteps = "\n".join(f"{m.host} {m.local} {m.underlay}" for m in overlay.members)
        table.add_row(overlay.name, str(overlay.vni), overlay.device, overlay.bridge, str(overlay.mtu), vteps)
    return table


def _rate(kilobytes: int) -> str:
    """libvirt's kilobytes (1000 bytes) per second as bits per second, as a profile writes them."""
    bits = kilobytes * 8000
    for unit, scale in (("Gbit", 10**9), ("Mbit", 10**6), ("kbit", 10**3)):
        if bits >= scale:
            return f"{bits / scale:g}{unit}"
    return f"{bits}bit"


def _size(kibibytes: int) -> str:
    return f"{kibibytes // 1024}MiB" if kibibytes % 1024 == 0 else f"{kibibytes}KiB"


def _bandwidth(average: int | None, peak: int | None, burst: int | None) -> str:
    if average is None:
        return ""
    text = _rate(average)
    text += f" peak {_rate(peak)}" if peak is not None else ""
    return text + (f" burst {_size(burst)}" if burst is not None else "")


def _queues(nic: GuestNic) -> str:
    if nic.queues is None:
        return ""
    used = f" (uses {nic.channels})" if nic.channels is not None and nic.channels != nic.queues else ""
    return f"{nic.queues}{used}"


def _guest_table(plan: Plan) -> Table:
    table = _table("guests", "guest", "NIC", "on", "MTU", "queues", "rx ring", "inbound", "outbound")
    for guest in plan.guests:
        for nic in guest.nics:
            bw = nic.bandwidth or Bandwidth()
            table.add_row(
                f"{guest.name} ({guest.host})" if nic.index == 0 else "",
                f"{nic.name} {nic.model}",
                nic.source + (f" vlan {nic.vlan}" if nic.vlan is not None else ""),
                str(nic.mtu),
                _queues(nic),
                str(nic.rx_ring) if nic.rx_ring is not None else "",
                _bandwidth(bw.inbound_average, bw.inbound_peak, bw.inbound_burst),
                _bandwidth(bw.outbound_average, None, bw.outbound_burst),
            )
    return table


def tables(plan: Plan) -> list[RenderableType]:
    """The plan for a terminal: per host its devices, the overlays, per guest its NICs."""
    shown = _host_table(plan)
    if plan.overlays:
        shown.append(_overlay_table(plan))
    if plan.guests:
        shown.append(_guest_table(plan))
    return shown
