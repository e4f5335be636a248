"""Fleet overlays: one VXLAN segment declared once, expanded on every member host.

On each member: a VXLAN netdev bound to the underlay (so the kernel knows its lower
device), a port in the overlay's bridge (created unless the host declares it), and a
static `[BridgeFDB]` entry per other member: the all-zero MAC sent to each peer's VTEP
is the kernel's head-end replication, so broadcast, unknown unicast and multicast
reach every peer without an underlay multicast group. Learning stays on, so known
unicast then goes to one VTEP only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from generator.errors import Diagnostic, KeyPath
from generator.model.profile import Overlay
from generator.plan.devices import Dev, HostDevices, attach
from generator.plan.types import Fdb, Kind, TunnelSettings

ALL_ZERO_MAC = "00:00:00:00:00:00"


@dataclass
class OverlayDraft:
    """An overlay whose members resolved; its MTU is settled by the MTU chain."""

    name: str
    spec: Overlay
    device: str
    members: list[tuple[str, str, str]]  # (host, underlay id, VTEP address)
    ipv6: bool

    @property
    def path(self) -> KeyPath:
        return ("overlays", self.name)


def expand(
    overlays: dict[str, Overlay], tables: dict[str, HostDevices], problems: list[Diagnostic]
) -> list[OverlayDraft]:
    drafts: list[OverlayDraft] = []
    for name, spec in sorted(overlays.items()):
        draft = _members(name, spec, tables, problems)
        if draft is None:
            continue
        drafts.append(draft)
        # Sorted once per overlay: each member's FDB is this list without itself, so the
        # work stays proportional to the H * (H - 1) entries written.
        vteps = sorted(((ipaddress.ip_address(v), h) for h, _, v in draft.members), key=lambda e: e[0])
        ordered = [(h, str(ip)) for ip, h in vteps]
        for host, underlay, local in draft.members:
            peers = [vtep for other, vtep in ordered if other != host]
            _install(draft, tables[host], underlay, local, peers, problems)
    return drafts


def _members(
    name: str, spec: Overlay, tables: dict[str, HostDevices], problems: list[Diagnostic]
) -> OverlayDraft | None:
    path: KeyPath = ("overlays", name)
    members: list[tuple[str, str, str]] = []
    ok = True
    for host, member in sorted(spec.hosts.items()):
        mpath = (*path, "hosts", host)
        table = tables.get(host)
        if table is None:
            problems.append(
                Diagnostic(
                    f"host {host!r} is not defined (hosts: {', '.join(sorted(tables)) or 'none'})",
                    mpath,
                    on_key=True,
                )
            )
            ok = False
            continue
        underlay = member.underlay or spec.underlay
        if underlay is None:
            problems.append(
                Diagnostic(f"no underlay for {host}: set underlay: on the overlay or on this member", mpath)
            )
            ok = False
            continue
        upath = (*mpath, "underlay") if member.underlay else (*path, "underlay")
        dev = table.devs.get(underlay)
        if dev is None:
            problems.append(
                Diagnostic(f"host {host} has no device {underlay!r} (its devices: {table.known()})", upath)
            )
            ok = False
            continue
        local = member.local or _vtep(dev)
        if local is None:
            problems.append(
                Diagnostic(
                    f"{host}'s underlay {underlay} has no static address to use as the VTEP; "
                    f"give it one, or set local: for this member",
                    mpath,
                )
            )
            ok = False
            continue
        if local not in table.addresses:
            problems.append(
                Diagnostic(f"local {local} is not a static address of host {host}", (*mpath, "local"))
            )
            ok = False
            continue
        members.append((host, underlay, local))
    families = {ipaddress.ip_address(local).version for _, _, local in members}
    if len(families) > 1:
        problems.append(
            Diagnostic("members mix IPv4 and IPv6 VTEP addresses; a VXLAN segment uses one family", path)
        )
        ok = False
    if not ok:
        return None
    return OverlayDraft(name, spec, spec.device or f"vx{spec.vni}", members, families == {6})


def _vtep(dev: Dev) -> str | None:
    """The underlay's first static address, IPv4 preferred."""
    if dev.spec is None:
        return None
    addresses = [ipaddress.ip_interface(a).ip for a in dev.spec.addresses]
    for wanted in (4, 6):
        for address in addresses:
            if address.version == wanted and not address.is_link_local:
                return str(address)
    return None


def _install(
    draft: OverlayDraft,
    table: HostDevices,
    underlay: str,
    local: str,
    peers: list[str],
    problems: list[Diagnostic],
) -> None:
    spec = draft.spec
    dpath = (*draft.path, "device") if spec.device else draft.path
    if draft.device in table.devs:
        problems.append(
            Diagnostic(
                f"device {draft.device!r} already exists on host {table.host}; "
                "give the overlay another device: name",
                dpath,
            )
        )
        return
    vxlan = Dev(
        id=draft.device,
        kind=Kind.VXLAN,
        origin=draft.path,
        spec=None,
        name=draft.device,
        mtu_request=spec.mtu,
        lower=underlay,
        overlay=draft.name,
        ipv6_underlay=draft.ipv6,
        local=local,
        vni=spec.vni,
        fdb=[Fdb(ALL_ZERO_MAC, peer) for peer in peers],
    )
    table.devs[vxlan.id] = vxlan
    table.devs[underlay].stacked.append(("VXLAN", vxlan.id))
    bridge = table.devs.get(spec.bridge)
    if bridge is None:
        bridge = Dev(
            id=spec.bridge,
            kind=Kind.BRIDGE,
            origin=(*draft.path, "bridge"),
            spec=None,
            name=spec.bridge,
            mtu_request="auto",
            overlay=draft.name,
        )
        table.devs[bridge.id] = bridge
    elif bridge.kind is not Kind.BRIDGE:
        problems.append(
            Diagnostic(
                f"{spec.bridge} on host {table.host} is a {bridge.kind.value}, not a bridge",
                (*draft.path, "bridge"),
            )
        )
        return
    attach(table, bridge, vxlan.id, (*draft.path, "bridge"), problems)


def tunnel_settings(draft: OverlayDraft, local: str) -> TunnelSettings:
    spec = draft.spec
    return TunnelSettings(
        local=local,
        ttl=spec.ttl,
        vni=spec.vni,
        port=spec.port,
        mac_learning=spec.mac_learning,
    )
