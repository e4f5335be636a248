"""Resolve the MTU of every device of the fleet, following the chain down to the NICs.

Evaluated lazily and memoised, because an overlay's MTU depends on every member's
underlay, and a bridge's on its ports, which may be overlay devices.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.errors import Diagnostic, KeyPath
from generator.model.network import VxlanTunnel
from generator.plan.devices import Dev, HostDevices
from generator.plan.mtu import ETHERNET_DEFAULT_MTU, KERNEL_DEFAULT_MTU, VLAN_TAG, does_not_fit, overhead
from generator.plan.overlays import OverlayDraft
from generator.plan.types import Kind, MtuStep

_L2_TUNNELS = (Kind.VXLAN, Kind.GRETAP)


@dataclass(frozen=True)
class MtuResult:
    mtu: int  # what the device will have
    written: int | None  # what kvmnet writes as MTUBytes=
    chain: tuple[MtuStep, ...]


class MtuSolver:
    def __init__(
        self, tables: dict[str, HostDevices], drafts: list[OverlayDraft], problems: list[Diagnostic]
    ) -> None:
        self.tables = tables
        self.drafts = {d.name: d for d in drafts}
        self.problems = problems
        self._memo: dict[tuple[str, str], MtuResult] = {}
        self._segments: dict[str, int] = {}
        self._visiting: set[tuple[str, str]] = set()

    # -- public ---------------------------------------------------------------

    def of(self, host: str, ident: str) -> MtuResult:
        key = (host, ident)
        done = self._memo.get(key)
        if done is not None:
            return done
        dev = self.tables[host].devs[ident]
        if key in self._visiting:
            self.problems.append(Diagnostic(f"the MTU chain of {ident} loops back to itself", dev.origin))
            return MtuResult(KERNEL_DEFAULT_MTU, None, ())
        self._visiting.add(key)
        try:
            result = self._compute(self.tables[host], dev)
        finally:
            self._visiting.discard(key)
        self._memo[key] = result
        return result

    def segment(self, name: str) -> int:
        """The MTU shared by every member of overlay `name`."""
        done = self._segments.get(name)
        if done is not None:
            return done
        draft = self.drafts[name]
        mark = ("overlay", name)
        if mark in self._visiting:
            self.problems.append(
                Diagnostic("the overlay's underlay runs through the overlay itself", draft.path)
            )
            return KERNEL_DEFAULT_MTU
        self._visiting.add(mark)
        try:
            seg = self._segment(draft)
        finally:
            self._visiting.discard(mark)
        self._segments[name] = seg
        return seg

    # -- rules ----------------------------------------------------------------

    def _segment(self, draft: OverlayDraft) -> int:
        cost, why = overhead(Kind.VXLAN, draft.ipv6)
        fits = [(host, under, self.of(host, under).mtu) for host, under, _ in draft.members]
        requested = draft.spec.mtu
        if requested == "auto":
            return min((m - cost for _, _, m in fits), default=KERNEL_DEFAULT_MTU)
        assert isinstance(requested, int)
        for host, under, m in fits:
            if requested > m - cost:
                self.problems.append(
                    Diagnostic(
                        f"on {host}: {does_not_fit(requested, under, m, cost, why)}", (*draft.path, "mtu")
                    )
                )
        return requested

    def _compute(self, table: HostDevices, dev: Dev) -> MtuResult:
        master = table.devs.get(dev.master) if dev.master else None
        if master is not None and master.kind is Kind.BOND:
            return self._bond_port(table, dev, master)
        if dev.kind in (Kind.ETHERNET, Kind.BOND):
            return self._fixed(dev)
        if dev.kind is Kind.BRIDGE:
            return self._bridge(table, dev)
        if dev.kind is Kind.VLAN:
            return self._vlan(table, dev)
        return self._tunnel(table, dev)

    def _path(self, dev: Dev) -> KeyPath:
        return (*dev.origin, "mtu") if dev.spec is not None or dev.overlay is None else dev.origin

    def _fixed(self, dev: Dev) -> MtuResult:
        req = dev.mtu_request
        if isinstance(req, int):
            return MtuResult(req, req, (MtuStep(dev.id, req, "configured"),))
        what = "assumed Ethernet default" if dev.kind is Kind.ETHERNET else "kernel default"
        return MtuResult(ETHERNET_DEFAULT_MTU, None, (MtuStep(dev.id, ETHERNET_DEFAULT_MTU, what),))

    def _bond_port(self, table: HostDevices, dev: Dev, bond: Dev) -> MtuResult:
        # The bonding driver sets every port to the bond's MTU when it enslaves it
        # (bond_enslave), whatever the port was configured with.
        bonded = self.of(table.host, bond.id)
        req = dev.mtu_request
        if isinstance(req, int) and req != bonded.mtu:
            self.problems.append(
                Diagnostic(
                    f"{dev.id} is a port of bond {bond.id}, which sets its ports to its own MTU "
                    f"({bonded.mtu}); remove mtu here or make it {bonded.mtu}",
                    self._path(dev),
                )
            )
        step = MtuStep(dev.id, bonded.mtu, f"bond {bond.id} sets its ports' MTU")
        return MtuResult(bonded.mtu, req if isinstance(req, int) else None, (step,))

    def _bridge(self, table: HostDevices, dev: Dev) -> MtuResult:
        smallest: tuple[int, str, MtuResult] | None = None
        for port in dev.ports:
            result = self.of(table.host, port)
            fits = result.mtu
            member = table.devs[port]
            if member.kind in _L2_TUNNELS and member.port_vlans is not None and member.port_vlans.tagged():
                fits -= VLAN_TAG  # tagged guest frames grow by 4 bytes inside the tunnel
            if smallest is None or fits < smallest[0]:
                smallest = (fits, port, result)
        req = dev.mtu_request
        below = smallest[2].chain if smallest else ()
        if req == "auto":
            if smallest is None:
                self.problems.append(
                    Diagnostic("mtu: auto needs at least one port to derive the MTU from", self._path(dev))
                )
                return MtuResult(KERNEL_DEFAULT_MTU, None, ())
            step = MtuStep(dev.id, smallest[0], f"auto: smallest port {smallest[1]}")
            return MtuResult(smallest[0], smallest[0], (*below, step))
        if isinstance(req, int):
            if smallest is not None and req > smallest[0]:
                self.problems.append(
                    Diagnostic(
                        f"MTU {req} is larger than port {smallest[1]} carries ({smallest[0]}); a bridge "
                        f"cannot forward frames larger than its smallest port (use mtu: auto or at most "
                        f"{smallest[0]})",
                        self._path(dev),
                    )
                )
            return MtuResult(req, req, (*below, MtuStep(dev.id, req, "configured")))
        if smallest is None:
            step = MtuStep(dev.id, KERNEL_DEFAULT_MTU, "kernel default")
            return MtuResult(KERNEL_DEFAULT_MTU, None, (step,))
        kernel = min(self.of(table.host, port).mtu for port in dev.ports)
        if kernel > smallest[0]:
            # The kernel sizes a bridge by its ports' MTUs; it does not know that tagged
            # frames grow by 4 bytes inside a tunnel port.
            self.problems.append(
                Diagnostic(
                    f"{dev.id} would get MTU {kernel} from its ports, but tagged frames inside "
                    f"{smallest[1]} need 4 more bytes: at most {smallest[0]} fits; set mtu: auto",
                    dev.origin,
                )
            )
        return MtuResult(kernel, None, (*below, MtuStep(dev.id, kernel, "kernel: smallest port")))

    def _tagged_tunnel(self, table: HostDevices, lower: Dev) -> str | None:
        """The L2 tunnel inside which frames tagged on `lower` travel, if any."""
        if lower.kind in _L2_TUNNELS:
            return lower.id
        if lower.kind is Kind.BRIDGE:
            for port in lower.ports:
                if table.devs[port].kind in _L2_TUNNELS:
                    return port
        return None

    def _vlan(self, table: HostDevices, dev: Dev) -> MtuResult:
        if dev.lower is None:  # a dangling link was reported already
            return self._fixed(dev)
        lower = self.of(table.host, dev.lower)
        tunnel = self._tagged_tunnel(table, table.devs[dev.lower])
        cost = VLAN_TAG if tunnel else 0
        limit = lower.mtu - cost
        req = dev.mtu_request
        why = f"the 802.1Q tag travels inside tunnel {tunnel} (4 bytes)"
        if req == "auto":
            reason = f"auto: {dev.lower} {lower.mtu}" + (f" - 4 (tag inside {tunnel})" if tunnel else "")
            return MtuResult(limit, limit, (*lower.chain, MtuStep(dev.id, limit, reason)))
        if isinstance(req, int):
            if req > limit:
                message = (
                    does_not_fit(req, dev.lower, lower.mtu, cost, why)
                    if tunnel
                    else f"MTU {req} is larger than its link {dev.lower} ({lower.mtu}); a VLAN "
                    "cannot exceed its parent (raise the parent's MTU or use mtu: auto)"
                )
                self.problems.append(Diagnostic(message, self._path(dev)))
            return MtuResult(req, req, (*lower.chain, MtuStep(dev.id, req, "configured")))
        if tunnel:
            self.problems.append(
                Diagnostic(
                    f"{dev.id} would inherit MTU {lower.mtu} from {dev.lower}, but {why}, so at most "
                    f"{lower.mtu} - 4 = {limit} fits; set mtu: auto",
                    dev.origin,
                )
            )
        return MtuResult(
            lower.mtu, None, (*lower.chain, MtuStep(dev.id, lower.mtu, f"kernel: inherits {dev.lower}"))
        )

    def _tunnel(self, table: HostDevices, dev: Dev) -> MtuResult:
        req: int | str | None = self.segment(dev.overlay) if dev.overlay else dev.mtu_request
        if dev.lower is None:  # reported already: no local and no link
            mtu = req if isinstance(req, int) else KERNEL_DEFAULT_MTU
            return MtuResult(mtu, req if isinstance(req, int) else None, ())
        lower = self.of(table.host, dev.lower)
        cost, why = overhead(dev.kind, dev.ipv6_underlay)
        limit = lower.mtu - cost
        if dev.overlay:
            assert isinstance(req, int)  # checked against every member by segment()
            step = MtuStep(
                dev.id, req, f"overlay {dev.overlay}: {dev.lower} {lower.mtu} - {cost} allows {limit}"
            )
            return MtuResult(req, req, (*lower.chain, step))
        if req == "auto":
            step = MtuStep(dev.id, limit, f"auto: {dev.lower} {lower.mtu} - {cost}")
            return MtuResult(limit, limit, (*lower.chain, step))
        if isinstance(req, int):
            if req > limit:
                self.problems.append(
                    Diagnostic(does_not_fit(req, dev.lower, lower.mtu, cost, why), self._path(dev))
                )
            return MtuResult(req, req, (*lower.chain, MtuStep(dev.id, req, "configured")))
        unbound = isinstance(dev.spec, VxlanTunnel) and dev.spec.link is None
        if unbound:
            # The kernel gives a VXLAN without a lower device 1500, not underlay - 50.
            if limit < KERNEL_DEFAULT_MTU:
                self.problems.append(
                    Diagnostic(
                        f"{dev.id} is not bound to its underlay (no link:), so the kernel gives it MTU "
                        f"{KERNEL_DEFAULT_MTU}, but {dev.lower} carries {lower.mtu} and {why}: at most "
                        f"{limit} fits; set mtu: auto or link: {dev.lower}",
                        dev.origin,
                    )
                )
            mtu = KERNEL_DEFAULT_MTU
            return MtuResult(mtu, None, (*lower.chain, MtuStep(dev.id, mtu, "kernel default (unbound)")))
        if dev.kind is Kind.VXLAN:
            step = MtuStep(dev.id, limit, f"kernel: {dev.lower} {lower.mtu} - {cost}")
            return MtuResult(limit, None, (*lower.chain, step))
        # GRE: the kernel sizes the tunnel from the route to `remote` when it is created
        # (ip_tunnel_bind_dev), or from 1500 if there is no route yet; plan for the smaller.
        mtu = min(limit, KERNEL_DEFAULT_MTU - cost)
        step = MtuStep(dev.id, mtu, f"kernel: min({dev.lower} {lower.mtu}, {KERNEL_DEFAULT_MTU}) - {cost}")
        return MtuResult(mtu, None, (*lower.chain, step))
