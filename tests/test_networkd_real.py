"""The real consumers: Debian's systemd-networkd 252 and udev read and apply the generated files.

For every host of every bundled profile (profiles/*.yaml), networkd runs in a network namespace
on exactly that host's files, veth devices standing in for its NICs, and what the kernel ends
up with is read back and compared with the plan:

- test_networkd_log: no complaint about any file, no unexplained warning, nothing unplanned;
- test_device: one case per device: kind, MTU, master, addresses, VLAN id, VXLAN and tunnel
  endpoints, FDB, bridge settings, port VLANs, and which .network networkd chose for it;
- test_link_file: udev's net_setup_link picks our .link file for each NIC and names it as planned;
- test_overlay: two members of each overlay, joined by one veth underlay and each running its
  own networkd, pass frames of exactly the derived MTU between guests on the overlay bridges.

This sandbox's kernel lacks several device kinds and bridge VLAN filtering; each capability is
probed once per session (tests.support.networkd.probe). A device the kernel cannot create is
still checked to have been loaded by networkd without complaint, then skipped with the probe's
reason; an attribute that needs a missing feature is skipped while the rest of its device is
checked. A networkd warning is tolerated only as the known consequence of a feature the probe
found missing, on a device whose plan needs that feature.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from generator import layout
from generator.lab.layout import kernel_name
from generator.layout import NETWORKD_PREFIX as PREFIX
from generator.pipeline import Planned, artifacts_for, plan_profile
from generator.plan.ifnames import made_up
from generator.plan.types import HostPlan, Kind, OverlayPlan
from tests.support import udev
from tests.support.device_checks import DeviceCase, describe, device_cases
from tests.support.kernel_gaps import kernel_gap
from tests.support.networkd import (
    NETWORKD,
    WARNING,
    Kernel,
    Lab,
    Networkd,
    Result,
    Snapshot,
    ping,
    probe,
    read,
    run,
    wait_for,
)

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
SETTLE_S = 10.0  # networkd needs about a second; a device still wrong after this is reported
GUEST_NET = ipaddress.ip_network("198.18.0.0/24")  # RFC 2544 benchmarking range
ICMP_OVER_IPV4 = 28  # IPv4 header + ICMP echo header: payload = MTU - 28


@functools.cache
def planned(profile: Path) -> Planned:
    return plan_profile(profile)


@functools.cache
def host_files(profile: Path, host: str) -> Mapping[str, bytes]:
    """The host's networkd and udev files by file name, as generated."""
    prefix = f"{layout.rootfs_file(host, layout.NETWORKD_DIR)}/"
    return {
        a.path.removeprefix(prefix): a.content
        for a in artifacts_for(planned(profile))
        if a.path.startswith(prefix)
    }


def host_plan(profile: Path, host: str) -> HostPlan:
    return next(h for h in planned(profile).plan.hosts if h.name == host)


@dataclass
class HostRun:
    host: HostPlan
    ns: str
    daemon: Networkd
    cases: Mapping[str, DeviceCase]
    snapshot: Snapshot | None = None

    def refresh(self) -> None:
        self.snapshot = read(self.ns)

    def results(self, case: DeviceCase) -> list[Result]:
        assert self.snapshot is not None
        return case.evaluate(self.snapshot, self.daemon.entries(), self.daemon.link_state)

    def settled(self) -> bool:
        entries = self.daemon.entries()
        failed = {e.interface for e in entries if e.interface and e.message == f"{e.interface}: Failed"}
        if not self.daemon.alive:
            return True  # nothing more will happen; the tests report why
        return (
            any(e.message == "Enumeration completed" for e in entries)
            and all(c.name in failed for c in self.cases.values() if c.gives_up and not c.absent)
            and not any(r.wrong for c in self.cases.values() for r in self.results(c))
        )


def settle(runs: Sequence[HostRun]) -> None:
    def ready() -> bool:
        for r in runs:
            r.refresh()
        return all(r.settled() for r in runs)

    wait_for(ready, SETTLE_S)


class HostRuns:
    """networkd on every host of a profile, started together on first use, kept for the session."""

    def __init__(self, lab: Lab, kernel: Kernel) -> None:
        self.lab = lab
        self.kernel = kernel
        self._runs: dict[tuple[Path, str], HostRun] = {}

    def get(self, profile: Path, host: str) -> HostRun:
        if (profile, host) not in self._runs:
            started = [self._start(profile, h) for h in planned(profile).plan.hosts]
            settle(started)
            self._runs.update({(profile, r.host.name): r for r in started})
        return self._runs[(profile, host)]

    def _start(self, profile: Path, host: HostPlan) -> HostRun:
        ns = self.lab.namespace(f"{profile.stem}-{host.name}")
        wire = self.lab.namespace(f"{profile.stem}-{host.name}-wire")
        ethernets = [i for i in host.interfaces if i.kind is Kind.ETHERNET]
        for number, nic in enumerate(ethernets):
            self.lab.veth(ns, kernel_name(nic), mac=nic.match.mac, peer_ns=wire, peer_name=f"w{number}")
        for tap in host.tap_ports:
            # As libvirt makes a guest's tap before QEMU opens it: named as asked, the bridge's
            # MTU. Not in the bridge: joining it is left to our .network, so that a right
            # master shows networkd took the file.
            run("ip", "-n", ns, "tuntap", "add", "dev", tap.id, "mode", "tap")
            run("ip", "-n", ns, "link", "set", "dev", tap.id, "mtu", str(tap.mtu))
        daemon = self.lab.networkd(ns, host_files(profile, host.name), seed=f"{profile.stem}/{host.name}")
        return HostRun(host, ns, daemon, device_cases(host, self.kernel, host_files(profile, host.name)))


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and mounts")
    for tool in ("unshare", "ip", "bridge"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not available")
    if not NETWORKD.exists():
        pytest.skip(f"{NETWORKD} is not installed")
    bench = Lab(tmp_path_factory.mktemp("nd"))
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture
def scratch(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Namespaces and networkd processes of one test, removed when it ends, pass or fail."""
    bench = Lab(tmp_path_factory.mktemp("nd"))  # short: journal socket paths are limited to 108 bytes
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture(scope="session")
def kernel(lab: Lab) -> Kernel:
    return probe(lab, [kind.value for kind in Kind if kind.is_netdev])


@pytest.fixture(scope="session")
def host_runs(lab: Lab, kernel: Kernel) -> HostRuns:
    return HostRuns(lab, kernel)


@pytest.fixture(scope="session")
def udevadm() -> udev.Udevadm:
    """Debian's udevadm, unpacked once. No udevadm, no pass: CI needs it."""
    try:
        return udev.fetch()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"could not fetch Debian's udev with apt: {exc}")


# --- test cases --------------------------------------------------------------------------

HOSTS = [pytest.param(p, h.name, id=f"{p.stem}/{h.name}") for p in PROFILES for h in planned(p).plan.hosts]
DEVICES = [
    pytest.param(p, h.name, i.id, id=f"{p.stem}/{h.name}/{i.id}")
    for p in PROFILES
    for h in planned(p).plan.hosts
    for i in (*h.interfaces, *h.tap_ports)
]
LINKS = [
    pytest.param(p, h.name, i.id, id=f"{p.stem}/{h.name}/{i.id}")
    for p in PROFILES
    for h in planned(p).plan.hosts
    for i in h.interfaces
    if i.link is not None
]
OVERLAYS = [
    pytest.param(p, o.name, id=f"{p.stem}/{o.name}")
    for p in PROFILES
    for o in planned(p).plan.overlays
    if len(o.members) >= 2
]


def test_profiles_are_found() -> None:
    """Guard: the tiers below are parametrized from the bundled profiles and must not go empty."""
    assert PROFILES, "no profiles/*.yaml: every test below would be an empty parametrization"
    assert DEVICES and LINKS and OVERLAYS
    assert any(h.tap_ports for p in PROFILES for h in planned(p).plan.hosts), "no guest tap as a port"


@pytest.mark.parametrize(("profile", "host"), HOSTS)
def test_networkd_log(profile: Path, host: str, host_runs: HostRuns) -> None:
    """networkd started, complained about no file, and warned only where the kernel lacks a feature."""
    result = host_runs.get(profile, host)
    daemon = result.daemon
    assert daemon.alive, f"networkd exited {daemon.process.returncode}:\n{daemon.console_output()}"
    assert daemon.console_output() == "", "networkd logged to the console, not the journal (lines lost?)"
    entries = daemon.entries()
    assert any(e.message == "Enumeration completed" for e in entries), "networkd never finished starting"
    assert [e.message for e in entries if e.is_syntax_warning] == []
    tolerated = [t for case in result.cases.values() for t in case.tolerances]
    warnings = [
        e.message for e in entries if e.priority <= WARNING and not any(t.covers(e) for t in tolerated)
    ]
    assert warnings == []
    assert result.snapshot is not None
    unplanned = set(result.snapshot.links) - {case.name for case in result.cases.values()} - {"lo"}
    assert unplanned == set(), "devices the plan does not have"


@pytest.mark.parametrize(("profile", "host", "device"), DEVICES)
def test_device(profile: Path, host: str, device: str, host_runs: HostRuns) -> None:
    """The device networkd made from the generated files is the one the plan describes."""
    result = host_runs.get(profile, host)
    case = result.cases[device]
    results = result.results(case)
    assert not any(r.wrong for r in results), describe(case, results, result.daemon.entries())
    if case.absent:
        kernel_gap(f"{case.absent}: {case.name} was parsed by networkd without warnings but not created")
    blocked: dict[str, list[str]] = {}
    for r in results:
        if r.check.blocked:
            blocked.setdefault(r.check.blocked, []).append(r.check.label)
    if blocked:
        verified = ", ".join(r.check.label for r in results if not r.check.blocked)
        reasons = "; ".join(f"{', '.join(labels)} not verifiable: {why}" for why, labels in blocked.items())
        kernel_gap(f"{case.name}: {reasons} (verified: {verified})")


@pytest.mark.parametrize(("profile", "host", "device"), LINKS)
def test_link_file(
    profile: Path, host: str, device: str, scratch: Lab, udevadm: udev.Udevadm, tmp_path: Path
) -> None:
    """udev picks our .link file for the NIC, without complaint, and names it as planned."""
    iface = host_plan(profile, host).get(device)
    link = iface.link
    assert link is not None
    files = {name: content for name, content in host_files(profile, host).items() if name.endswith(".link")}
    # A NIC matched by name starts under a name its glob selects; one matched by MAC under a
    # scratch name, so a right name can only come from our file.
    start_name = made_up(link.match.name) if link.match.name else "kn-nic0"
    assert start_name is not None, f"no interface name matches {link.match.name!r}"
    start_mtu = 1280 if link.mtu != 1280 else 1300  # so that an MTU udev did not set shows
    ns = scratch.namespace(f"udev-{profile.stem}-{host}-{device}")
    scratch.veth(
        ns, start_name, mac=link.match.mac, mtu=start_mtu, peer_ns=ns, peer_name="kn-peer0", peer_up=False
    )
    if link.name_property is None:
        setup = udevadm.net_setup_link(ns, start_name, files, tmp_path / "link")
    else:  # matched by what net_id exports: the whole "add" event, with that property
        hardware = {link.name_property: start_name}
        setup = udevadm.add_event(ns, start_name, files, hardware, tmp_path / "link")
    log = "\n".join(setup.log)
    assert setup.returncode == 0, log
    assert setup.syntax_warnings() == [], log
    assert {f"{udev.LINK_DIR}/{name}" for name in files} <= setup.parsed(), log
    assert setup.properties.get("ID_NET_LINK_FILE") == f"{udev.LINK_DIR}/{PREFIX}{iface.id}.link", log
    # Without Name=, NamePolicy= starts with `keep`: a NIC that already has a name keeps it.
    assert setup.properties.get("ID_NET_NAME") == (link.name or start_name), log
    if link.mtu is not None:
        snapshot = read(ns)
        assert (snapshot.links[start_name].mtu if start_name in snapshot.links else None) == link.mtu, log


def overlay_blockers(cases: Sequence[DeviceCase]) -> list[str]:
    reasons = [c.absent or "" for c in cases] + [c.gives_up or "" for c in cases]
    reasons += [ch.blocked or "" for c in cases for ch in c.checks if ch.label in {"MTU", "FDB", "master"}]
    return sorted({r for r in reasons if r})


@pytest.mark.parametrize(("profile", "overlay"), OVERLAYS)
def test_overlay(profile: Path, overlay: str, scratch: Lab, kernel: Kernel) -> None:
    """Guests on two members' overlay bridges reach each other with frames of the derived MTU.

    A guest is a veth whose one end is a port of the overlay bridge and whose other end, with
    the planned bridge MTU, sits in a namespace of its own. `ping -M do -s MTU-28` must pass
    (a full-size frame crosses both bridges, both VXLAN devices and the underlay networkd
    configured); `-s MTU-27` must fail, so the passing probe was the largest frame. Where the
    profile lets kvmnet derive the overlay MTU, the kernel must refuse a VXLAN MTU one byte
    larger: the derivation is tight, not merely small enough.
    """
    if shutil.which("ping") is None:
        pytest.skip("`ping` (iputils-ping) is not installed")
    plan = planned(profile).plan
    ov: OverlayPlan = next(o for o in plan.overlays if o.name == overlay)
    members = ov.members[:2]
    hosts = [host_plan(profile, m.host) for m in members]
    cases = [device_cases(h, kernel, host_files(profile, h.name)) for h in hosts]
    path = [c[d] for c, m in zip(cases, members, strict=True) for d in (m.underlay, ov.device, ov.bridge)]
    if blockers := overlay_blockers(path):
        kernel_gap(
            f"overlay {overlay} cannot carry frames on this kernel: {'; '.join(blockers)}. Testing it "
            "untagged would need changes to the generated files beyond the PermanentMACAddress= "
            "adaptation and would not exercise the 802.1Q tag its MTU makes room for; the untagged "
            "VXLAN path is covered by the other overlays"
        )

    names = [scratch.namespace(f"{profile.stem}-{overlay}-{m.host}") for m in members]
    underlays = [h.get(m.underlay) for h, m in zip(hosts, members, strict=True)]
    scratch.veth(
        *(names[0], kernel_name(underlays[0])),
        mac=underlays[0].match.mac,
        peer_ns=names[1],
        peer_name=kernel_name(underlays[1]),
        peer_mac=underlays[1].match.mac,
        peer_up=False,
    )
    sides = [{c.iface.id: c for c in path[:3]}, {c.iface.id: c for c in path[3:]}]
    runs = [
        HostRun(
            h, ns, scratch.networkd(ns, host_files(profile, h.name), seed=f"{profile.stem}/{h.name}"), side
        )
        for h, ns, side in zip(hosts, names, sides, strict=True)
    ]
    settle(runs)
    for run_ in runs:
        for case in run_.cases.values():
            results = run_.results(case)
            assert not any(r.wrong for r in results), describe(case, results, run_.daemon.entries())

    mtu = hosts[0].get(ov.bridge).mtu
    guests = [
        scratch.guest(
            ns, kernel_name(h.get(ov.bridge)), h.get(ov.bridge).mtu, f"{GUEST_NET[n]}/{GUEST_NET.prefixlen}"
        )
        for n, (h, ns) in enumerate(zip(hosts, names, strict=True), start=1)
    ]
    peer = str(GUEST_NET[2])

    fits = ping(guests[0], peer, mtu - ICMP_OVER_IPV4)
    assert fits.returncode == 0, (
        f"{mtu}-byte packets do not cross overlay {overlay}:\n{fits.stdout}{fits.stderr}"
    )
    over = ping(guests[0], peer, mtu - ICMP_OVER_IPV4 + 1, count=1, deadline=2)
    assert over.returncode != 0, f"{mtu + 1}-byte packets leave a guest of MTU {mtu}:\n{over.stdout}"
    assert "message too long" in over.stderr, over.stdout + over.stderr

    # Tight, not merely small enough: the kernel caps a VXLAN device bound to an underlay at
    # the underlay's MTU minus the encapsulation it adds, and refuses one byte more. (Only
    # where the profile asks kvmnet to derive the MTU; an explicit one may be smaller.)
    vxlan = hosts[0].get(ov.device)
    derived = planned(profile).profile.overlays[overlay].mtu == "auto"
    if derived and vxlan.tunnel and not vxlan.tunnel.independent:
        bigger = run(
            "ip", "-n", names[0], "link", "set", kernel_name(vxlan), "mtu", str(ov.mtu + 1), check=False
        )
        assert bigger.returncode != 0, f"the kernel lets {kernel_name(vxlan)} carry more than {ov.mtu} bytes"
