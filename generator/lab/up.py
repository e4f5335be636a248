"""`kvmnet lab up`: build the profile, then realize what was built in network namespaces.

Order, as on real machines: the lab switch and each hypervisor's NICs exist first;
networkd starts on every hypervisor with its generated files and configures them;
then the guests come up, each tap joining its bridge as libvirt would make it (or by
networkd, where a generated tap-port .network says so); then each `kvmnet-tc@`
instance runs (its unit is ordered after networkd and bound to its device).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from generator.lab import sysctls, tcunit
from generator.lab.down import down, leftovers
from generator.lab.layout import GuestLayout, HostLayout, Layout, kernel_name, make_layout, planned_addresses
from generator.lab.names import LabError, Names
from generator.lab.results import FAILED, SKIPPED
from generator.lab.segments import missing_features
from generator.lab.state import Process, State, TcRun
from generator.layout import NETWORKD_DIR, SYSCTL_DIR, TC_UNIT, rootfs_dir, rootfs_file, tc_instance
from generator.live.commands import run, wait_for
from generator.live.kernel import probe_namespace
from generator.live.networkd import link_state, start_detached
from generator.live.processes import alive
from generator.live.snapshot import read
from generator.pipeline import Planned, build
from generator.plan.types import HostPlan, Kind, Plan

SETTLE_S = 30.0  # networkd needs about a second per host; several hosts share two cores
#: networkd's link states that no longer change by themselves (networkctl(1))
SETTLED = frozenset({"configured", "failed", "unmanaged", "linger"})


class Steps(Protocol):
    """Where `up` reports progress (the command shows it with rich)."""

    def begin(self, what: str, total: int) -> None: ...

    def advance(self) -> None: ...


class _Up:
    def __init__(self, names: Names, plan: Plan, state: State, steps: Steps) -> None:
        self.names = names
        self.plan = plan
        self.state = state
        self.steps = steps
        self.layout: Layout | None = None

    @contextmanager
    def phase(self, name: str, what: str, total: int) -> Iterator[None]:
        self.steps.begin(what, total)
        started = time.perf_counter()
        yield
        self.state.timings[name] = round(time.perf_counter() - started, 3)
        self.state.save()

    def namespace(self, name: str) -> str:
        self.state.namespaces.append(name)  # recorded before it exists: see state.py
        self.state.save()
        run("ip", "netns", "add", name)
        run("ip", "-n", name, "link", "set", "dev", "lo", "up")
        return name

    def note(self, outcome: str, subject: str, message: str) -> None:
        self.state.notes.append([outcome, subject, message])
        self.state.save()

    # --- steps ---------------------------------------------------------------------------

    def probe(self) -> None:
        ns = self.namespace(self.names.probe)
        kinds = sorted({k.value for k in Kind if k.is_netdev})
        kernel = probe_namespace(ns, kinds)
        run("ip", "netns", "delete", ns)
        self.state.namespaces.remove(ns)
        self.state.missing = missing_features(
            kernel.cannot_create, kernel.vlan_filtering or kernel.bridge_vlans
        )
        self.state.cannot_queue = dict(kernel.cannot_queue)

    def switch(self, layout: Layout) -> None:
        ns = self.namespace(self.names.switch)
        for wire in layout.wires:
            # A switch forwards at once: no STP listening, no forward delay.
            run("ip", "-n", ns, "link", "add", "name", wire.name, "mtu", str(wire.mtu), "type", "bridge")
            run("ip", "-n", ns, "link", "set", "dev", wire.name, "type", "bridge", "stp_state", "0")
            run("ip", "-n", ns, "link", "set", "dev", wire.name, "up")

    def host(self, layout: Layout, host: HostLayout) -> None:
        ns = self.namespace(host.ns)
        drop_ins = self.state.output / rootfs_file(host.name, SYSCTL_DIR)
        for path in sorted(drop_ins.glob("*.conf")):
            for skipped in sysctls.apply(ns, sysctls.parse(path.read_text())):
                self.note(SKIPPED, host.name, skipped)
        wires = {w.name: w.mtu for w in layout.wires}
        for nic in host.nics:
            mac = ("address", nic.mac) if nic.mac else ()
            run(
                *("ip", "-n", ns, "link", "add", "name", nic.name, *mac, "type", "veth"),
                *("peer", "name", nic.port, "netns", self.names.switch),
            )
            run("ip", "-n", self.names.switch, "link", "set", "dev", nic.port, "mtu", str(wires[nic.wire]))
            run("ip", "-n", self.names.switch, "link", "set", "dev", nic.port, "master", nic.wire, "up")

    def networkd(self, host: HostLayout) -> None:
        output = self.state.output / rootfs_file(host.name, NETWORKD_DIR)
        files = {p.name: p.read_bytes() for p in sorted(output.iterdir())} if output.is_dir() else {}
        name = self.names.process("networkd", host.name)
        workdir = self.state.directory / "hosts" / host.name  # the lab's own files, not the output's
        pid = start_detached(host.ns, files, f"{self.names.lab_id}/{host.name}", workdir, name)
        self.state.processes.append(Process(pid, name, host.ns, str(workdir / "networkd.log")))
        self.state.save()

    def guest(self, guest: GuestLayout) -> None:
        ns = self.namespace(guest.ns)
        host_ns = self.names.host(guest.host)
        # Before the NICs exist, as systemd-sysctl runs before the network comes up, so
        # that `default` reaches them as well as `all`.
        for skipped in sysctls.apply(ns, guest.sysctls):
            self.note(SKIPPED, guest.name, skipped)
        for port in guest.ports:
            queues = ("numtxqueues", str(port.queues), "numrxqueues", str(port.queues)) if port.queues else ()
            mtu = ("mtu", str(port.tap_mtu)) if port.tap_mtu else ()
            run(
                *("ip", "-n", host_ns, "link", "add", "name", port.tap, *mtu, *queues, "type", "veth"),
                *("peer", "name", port.name, "address", port.mac, *queues, "netns", ns),
            )
            if not port.joined_by_networkd:
                run("ip", "-n", host_ns, "link", "set", "dev", port.tap, "master", port.bridge)
                if port.vlan is not None and "vlan-filtering" not in self.state.missing:
                    # libvirt >= 11 tags the port itself (<vlan><tag id=.../>).
                    vid = ("vid", str(port.vlan), "pvid", "untagged")
                    run("bridge", "-n", host_ns, "vlan", "add", "dev", port.tap, *vid)
            run("ip", "-n", host_ns, "link", "set", "dev", port.tap, "up")
            if port.mtu:
                run("ip", "-n", ns, "link", "set", "dev", port.name, "mtu", str(port.mtu))
            run("ip", "-n", ns, "link", "set", "dev", port.name, "up")
            for address in port.addresses:
                run("ip", "-n", ns, "address", "add", address, "dev", port.name)
            if port.dhcp4:
                self.note(SKIPPED, f"{guest.name}/{port.name}", "DHCP: the lab has no DHCP server")
            for to, via in port.routes:
                target = "default" if ipaddress.ip_network(to).prefixlen == 0 else to
                gateway = ("via", via) if via else ()
                # As cloud-init's renderers do, a route that cannot be added is reported, not fatal.
                added = run("ip", "-n", ns, "route", "add", target, *gateway, "dev", port.name, check=False)
                if added.returncode != 0:
                    said = added.stderr.strip()
                    self.note(FAILED, f"{guest.name}/{port.name}", f"route {to} via {via} refused: {said}")

    def tc(self, host: HostPlan) -> None:
        rootfs = self.state.output / rootfs_dir(host.name)
        unit = self.state.output / rootfs_file(host.name, TC_UNIT)
        ns = self.names.host(host.name)
        present = set(read(ns).links)
        for tc in host.tc:
            if tc.engine != "service":
                continue  # networkd applies its own qdisc sections
            instance = tc_instance(tc.unit)
            if tc.device not in present:
                # BindsTo= the device: without it, systemd never starts the instance.
                result = TcRun(host.name, tc.device, False, f"{tc.device} does not exist: not started")
            else:
                result = tcunit.start(ns, host.name, unit.read_text(), tc.device, instance, rootfs)
            self.state.tc.append(result)
            self.steps.advance()


def unsettled(plan: HostPlan, ns: str, pid: int, missing: dict[str, str]) -> list[str]:
    """What networkd in `ns` has not finished yet: missing devices, links still being set up.

    A link networkd still calls "configuring" counts as done once it is up with its planned
    addresses: what is left then is IPv6 router discovery, which waits ~12 s for routers
    that the lab does not have (and guests do not wait for on a real host either).
    """
    if not alive(pid):
        return [f"networkd (PID {pid}) is not running"]
    snapshot = read(ns)
    planned = {kernel_name(i): i for i in (*plan.interfaces, *plan.tap_ports)}
    waiting = [
        f"{name} not created yet"
        for name, i in planned.items()
        if i.kind.is_netdev and i.kind.value not in missing and name not in snapshot.links
    ]
    for link in snapshot.links.values():
        if link.name == "lo":
            continue
        state = link_state(pid, link.index).get("ADMIN_STATE", "pending")
        iface = planned.get(link.name)
        static_done = (
            state == "configuring"
            and link.up
            and iface is not None
            and planned_addresses(iface) <= link.addresses
        )
        if state not in SETTLED and not static_done:
            waiting.append(f"{link.name} {state}")
    return waiting


def settle(plan: Plan, state: State, timeout: float = SETTLE_S) -> dict[str, list[str]]:
    """Wait until every host's networkd is done; what is still pending, per host, if it is not."""
    pending: dict[str, list[str]] = {}

    def done() -> bool:
        pending.clear()
        for host in plan.hosts:
            process = state.networkd(host.name)
            assert process is not None
            if waiting := unsettled(host, process.ns, process.pid, state.missing):
                pending[host.name] = waiting
        return not pending

    wait_for(done, timeout, interval=0.2)
    return dict(pending)


def up(profile: Path, names: Names, steps: Steps, warn: Callable[[str], None], planned: Planned) -> State:
    """Realize `profile` (planned by the command, which showed its warnings) as lab
    `names.lab_id`; everything made is removed again on failure."""
    if names.state_dir.exists() or any(leftovers(names)):
        raise LabError.single(
            f"lab {names.lab_id!r} already exists (or left things behind): "
            f"`kvmnet lab down --id {names.lab_id}` removes it"
        )
    names.state_dir.mkdir(parents=True)
    state = State(names.lab_id, str(profile.resolve()), planned.document.digest)
    state.save()
    plan = planned.plan
    work = _Up(names, plan, state, steps)
    try:
        with work.phase("build", "building the profile", 1):
            build(profile, state.output, planned=planned)
            layout = make_layout(names, plan, state.output)
        with work.phase("probe", "probing the kernel", 1):
            work.probe()
        with work.phase("hosts", "hypervisor namespaces and NICs", len(layout.hosts)):
            work.switch(layout)
            for host in layout.hosts:
                work.host(layout, host)
                steps.advance()
        with work.phase("networkd", "networkd on every hypervisor", len(layout.hosts)):
            for host in layout.hosts:
                work.networkd(host)
                steps.advance()
            for name, waiting in settle(plan, state).items():
                warn(f"{name}: networkd not settled after {SETTLE_S:.0f} s: {', '.join(waiting)}")
        with work.phase("guests", "guests", len(layout.guests)):
            for guest in layout.guests:
                work.guest(guest)
                steps.advance()
            for name, waiting in settle(plan, state).items():
                warn(f"{name}: networkd not settled after the guests came: {', '.join(waiting)}")
        with work.phase(
            "tc", "traffic control units", sum(t.engine == "service" for h in plan.hosts for t in h.tc)
        ):
            for host_plan in plan.hosts:
                work.tc(host_plan)
        state.phase = "up"
        state.save()
    except RuntimeError as exc:  # a command failed: say which, leave nothing behind
        down(names)
        raise LabError.single(f"lab up failed: {exc}") from None
    except BaseException:
        down(names)
        raise
    return state
