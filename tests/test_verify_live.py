"""`kvmnet verify` against machines prepared from the bundled profiles, with real programs.

Every host of every profile becomes a network namespace in which the real systemd-networkd
252 runs on the host's generated files (veth devices standing in for its NICs, taps made as
libvirt makes them), the generated tc batches are applied with `tc -batch`, and the
per-namespace sysctls are set. Every guest becomes a namespace whose NICs are veth devices
with the planned MAC, MTU, addresses and IPv6 sysctls (what cloud-init would apply). Then:

- test_host_passes / test_guest_passes: the generated suite (`--scope netns`, through the
  `netns:NAME` target the lab uses) passes, and every skip is a feature this sandbox's
  kernel lacks, named in the reason;
- test_cli_local_in_namespace: `ip netns exec NS kvmnet verify --target local ...` exits 0
  and writes JUnit XML and JSON reports that parse;
- test_broken_host_fails / test_broken_guest_fails: a changed MTU, a changed tbf rate, a
  deleted device, a re-enabled IPv6 make it exit 1, naming the device and both values, in
  the terminal table and in both reports;
- test_ssh_target and test_ansible_fleet: the default profile's four machines each run
  Debian's sshd; from a "switch" namespace holding their underlay, one machine is checked
  through testinfra's ssh backend, and the whole fleet through testinfra's ansible backend
  over the generated inventory.yaml (its addresses used as they are), four at once with
  pytest-xdist.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from generator import layout
from generator.lab.layout import kernel_name
from generator.live.commands import wait_for
from generator.live.kernel import Kernel, probe
from generator.live.namespaces import Lab
from generator.live.networkd import NETWORKD, Networkd
from generator.live.snapshot import read
from generator.pipeline import Planned, build, plan_profile
from generator.plan.types import GuestPlan, HostPlan, Kind
from generator.renderers.expected import sysctl_scope
from generator.verify.runner import Report, verify
from tests.support.device_checks import absence

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
KVMNET = Path(sys.executable).parent / "kvmnet"
SETTLE_S = 15.0

#: Why a check may be skipped in this sandbox: the kernel lacks the feature, and says so.
SANDBOX_GAPS = (
    "this kernel shows no 8021q",
    "this kernel shows no ip_gre",
    "this kernel shows no bonding",
    "this kernel shows no sch_fq",  # also sch_fq_codel
    "this kernel shows no cls_matchall",
    "this kernel has no bridge VLAN filtering",
    "a veth device stands in for the virtio NIC here",
)


@functools.cache
def planned(profile: Path) -> Planned:
    return plan_profile(profile)


def host_plan(profile: Path, name: str) -> HostPlan:
    return next(h for h in planned(profile).plan.hosts if h.name == name)


def guest_plan(profile: Path, name: str) -> GuestPlan:
    return next(g for g in planned(profile).plan.guests if g.name == name)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def sysctl(ns: str, key: str, value: str) -> None:
    run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}", check=False)


# --- machines in namespaces ------------------------------------------------------------


@dataclass
class Machine:
    name: str
    ns: str
    daemon: Networkd | None = None
    peers: dict[str, str] = field(default_factory=dict)  # device -> its peer in the switch


class Bench:
    """One namespace per host and guest of a profile, and a switch namespace for their peers."""

    def __init__(self, lab: Lab, kernel: Kernel, profile: Path, output: Path) -> None:
        self.lab, self.kernel, self.profile, self.output = lab, kernel, profile, output
        self.switch = lab.namespace(f"{profile.stem}-sw")
        self.machines: dict[str, Machine] = {}
        self._peer = 0

    def _veth(self, ns: str, name: str, mac: str | None, mtu: int | None = None) -> str:
        self._peer += 1
        peer = f"p{self._peer}"
        self.lab.veth(ns, name, mac=mac, mtu=mtu, peer_ns=self.switch, peer_name=peer)
        return peer

    def start_host(self, host: HostPlan) -> Machine:
        machine = Machine(host.name, self.lab.namespace(f"{self.profile.stem}-{host.name}"))
        for nic in (i for i in host.interfaces if i.kind is Kind.ETHERNET):
            machine.peers[kernel_name(nic)] = self._veth(machine.ns, kernel_name(nic), nic.match.mac)
        for tap in host.tap_ports:  # as libvirt makes a guest's tap: named as asked, not in the bridge
            run("ip", "-n", machine.ns, "tuntap", "add", "dev", tap.id, "mode", "tap")
            run("ip", "-n", machine.ns, "link", "set", "dev", tap.id, "mtu", str(tap.mtu))
        prefix = layout.rootfs_file(host.name, layout.NETWORKD_DIR)
        files = {
            p.relative_to(self.output / prefix).as_posix(): p.read_bytes()
            for p in (self.output / prefix).glob("*")
        }
        if files:
            machine.daemon = self.lab.networkd(
                machine.ns, files, seed=f"verify/{self.profile.stem}/{host.name}"
            )
        self.machines[host.name] = machine
        return machine

    def settle_host(self, host: HostPlan) -> None:
        """Wait until networkd made every device this kernel can have, with its MTU and master.

        Not asserted: if it never happens, the suite's own report says what is wrong.
        """
        machine = self.machines[host.name]
        daemon = machine.daemon
        devices = [i for i in (*host.interfaces, *host.tap_ports) if absence(host, i, self.kernel) is None]

        def settled() -> bool:
            if daemon is None or not daemon.alive:
                return True
            if not any(e.message == "Enumeration completed" for e in daemon.entries()):
                return False
            links = read(machine.ns).links
            for iface in devices:
                link = links.get(kernel_name(iface))
                master = host.get(iface.master) if iface.master else None
                if master is not None and absence(host, master, self.kernel) is not None:
                    continue  # it waits for a bond or bridge this kernel cannot make
                if link is None or link.mtu != iface.mtu:
                    return False
                if master is not None and link.master != kernel_name(master):
                    return False
            return True

        wait_for(settled, SETTLE_S)
        # What networkd does not do: the tc service engine's batches, and sysctls.
        for tc in host.tc:
            batch = self.output / layout.rootfs_file(host.name, layout.tc_batch(tc.device))
            if tc.engine == "service" and batch.exists():
                # -force: go on past a qdisc this kernel lacks (its check says so)
                run("tc", "-n", machine.ns, "-force", "-batch", str(batch), check=False)
        for s in host.kernel.sysctls:
            if sysctl_scope(s.key) == "netns":
                sysctl(machine.ns, s.key, s.value)

    def start_guest(self, guest: GuestPlan) -> Machine:
        """A namespace as cloud-init would leave the VM's network (NICs by MAC, set-name)."""
        machine = Machine(guest.name, self.lab.namespace(f"{self.profile.stem}-{guest.name}"))
        for nic in guest.nics:
            machine.peers[nic.name] = self._veth(machine.ns, nic.name, nic.mac, mtu=nic.mtu)
        if guest.ipv6 == "disabled":  # before the NICs come up: no link-local address at all
            for key in ("all", "default", *(n.name for n in guest.nics)):
                sysctl(machine.ns, f"net.ipv6.conf.{key}.disable_ipv6", "1")
        for nic in guest.nics:
            for address in nic.addresses:
                run("ip", "-n", machine.ns, "address", "add", address, "dev", nic.name)
            run("ip", "-n", machine.ns, "link", "set", nic.name, "up")
        self.machines[guest.name] = machine
        return machine


# --- fixtures ----------------------------------------------------------------------------


def needs_root_and_networkd() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and mounts")
    for tool in ("unshare", "ip", "bridge", "tc"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not available")
    if not NETWORKD.exists():
        pytest.skip(f"{NETWORKD} is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    needs_root_and_networkd()
    bench = Lab(tmp_path_factory.mktemp("vl"))
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture(scope="module")
def kernel(lab: Lab) -> Kernel:
    return probe(lab, [kind.value for kind in Kind if kind.is_netdev])


@pytest.fixture(scope="module")
def benches(lab: Lab, kernel: Kernel, tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Bench]:
    """Every profile's machines, prepared at once (the networkd instances start in parallel)."""
    out: dict[Path, Bench] = {}
    for profile in PROFILES:
        output = tmp_path_factory.mktemp(f"out-{profile.stem}") / "output"
        build(profile, output)
        bench = Bench(lab, kernel, profile, output)
        plan = planned(profile).plan
        for host in plan.hosts:
            bench.start_host(host)
        for guest in plan.guests:
            bench.start_guest(guest)
        out[profile] = bench
    for profile, bench in out.items():
        for host in planned(profile).plan.hosts:
            bench.settle_host(host)
    return out


@pytest.fixture(scope="module")
def reports(benches: dict[Path, Bench]) -> dict[tuple[str, str], Report]:
    """`verify` of every machine in its namespace (netns target, netns scope), two at a time."""
    jobs = [(p.stem, name, b) for p, b in benches.items() for name in b.machines]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(
            lambda job: verify(job[2].output, [job[1]], f"netns:{job[2].machines[job[1]].ns}", scope="netns"),
            jobs,
        )
        return {(stem, name): report for (stem, name, _), report in zip(jobs, done, strict=True)}


HOSTS = [pytest.param(p, h.name, id=f"{p.stem}/{h.name}") for p in PROFILES for h in planned(p).plan.hosts]
GUESTS = [pytest.param(p, g.name, id=f"{p.stem}/{g.name}") for p in PROFILES for g in planned(p).plan.guests]
DEFAULT = REPO / "profiles" / "default.yaml"


def test_profiles_are_found() -> None:
    """Guard: the parametrized tests below must not go empty."""
    assert PROFILES and HOSTS and GUESTS
    assert DEFAULT in PROFILES


def unexplained_skips(report: Report) -> list[str]:
    return [
        f"{r.check}: {r.message}"
        for r in report.results
        if r.outcome == "skipped" and not any(gap in r.message for gap in SANDBOX_GAPS)
    ]


def failures(report: Report) -> list[str]:
    return [f"{r.check}: {r.message}" for r in report.results if r.outcome == "failed"]


@pytest.mark.parametrize(("profile", "host"), HOSTS)
def test_host_passes(profile: Path, host: str, reports: dict[tuple[str, str], Report]) -> None:
    """The host's generated suite passes on what networkd, tc and sysctl made of its files."""
    report = reports[(profile.stem, host)]
    assert failures(report) == []
    assert unexplained_skips(report) == []
    if not any(r.outcome == "passed" for r in report.results):
        # minimal.yaml: the host keeps its own network, so a namespace shows nothing to check
        # (nothing to skip for: that the suite found nothing is itself what the plan says)
        assert not host_plan(profile, host).interfaces and not host_plan(profile, host).tc
        return
    assert report.ok


@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_guest_passes(profile: Path, guest: str, reports: dict[tuple[str, str], Report]) -> None:
    """The guest's generated suite passes on a namespace configured as cloud-init would."""
    report = reports[(profile.stem, guest)]
    assert failures(report) == []
    assert unexplained_skips(report) == []
    assert report.ok
    checked = {r.check.split("[")[0] for r in report.results if r.outcome == "passed"}
    assert {"test_nic_exists", "test_nic_mtu", "test_nic_ipv6"} <= checked


# --- the command line ------------------------------------------------------------------


def kvmnet_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, str(KVMNET), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_cli_local_in_namespace(benches: dict[Path, Bench], tmp_path: Path) -> None:
    """`ip netns exec NS kvmnet verify --target local hv1 --scope netns` passes, with both reports."""
    bench = benches[DEFAULT]
    for machine in ("hv1", "web1"):
        junit, report = tmp_path / f"{machine}.xml", tmp_path / f"{machine}.json"
        result = kvmnet_in(
            bench.machines[machine].ns,
            *("verify", "--target", "local", machine, "--scope", "netns", "-o", str(bench.output)),
            *("--junit", str(junit), "--json", str(report)),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert machine in result.stdout
        cases = ET.parse(junit).getroot().findall(".//testcase")
        data = json.loads(report.read_text())
        assert data["ok"] is True and data["totals"]["failed"] == 0
        assert len(cases) == len(data["results"]) and data["totals"]["passed"] > 0
        assert not any(case.find("failure") is not None for case in cases)
    assert list((bench.output / layout.TESTS).glob("__pycache__")) == [], "verify left bytecode in the output"


def broken_host(lab: Lab, kernel: Kernel, tmp_path: Path) -> tuple[Bench, Machine]:
    output = tmp_path / "output"
    build(DEFAULT, output)
    bench = Bench(lab, kernel, DEFAULT, output)
    host = host_plan(DEFAULT, "hv1")
    machine = bench.start_host(host)
    bench.settle_host(host)
    assert machine.daemon is not None
    machine.daemon.stop()  # so that nothing repairs what the test breaks
    return bench, machine


def test_broken_host_fails(lab: Lab, kernel: Kernel, tmp_path: Path) -> None:
    """MTU changed, tbf rate changed, a device deleted, the default route moved: exit 1,
    each named with both values."""
    bench, machine = broken_host(lab, kernel, tmp_path)
    run("ip", "-n", machine.ns, "link", "set", "eno1", "mtu", "1500")
    run(
        *("tc", "-n", machine.ns, "qdisc", "replace", "dev", "eno2", "root", "handle", "10:"),
        *("tbf", "rate", "100mbit", "burst", "256kb", "latency", "50ms"),
    )
    run("ip", "-n", machine.ns, "link", "delete", "br-tenant")
    run("ip", "-n", machine.ns, "route", "replace", "default", "via", "192.0.2.254", "dev", "eno1")
    junit, report = tmp_path / "hv1.xml", tmp_path / "hv1.json"
    result = kvmnet_in(
        machine.ns,
        *("verify", "--target", "local", "hv1", "--scope", "netns", "-o", str(bench.output)),
        *("--junit", str(junit), "--json", str(report)),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    expected = {
        "test_mtu[eno1]": "eno1: MTU expected 9000, found 1500",
        "test_shaping_rate[eno2]": "eno2: root qdisc rate expected 200Mbit, found 100Mbit",
        "test_link_exists[br-tenant]": "br-tenant: expected a bridge device, found none",
        "test_routes[eno1]": (
            "eno1: routes missing: 0.0.0.0/0 via 192.0.2.1 (found: 0.0.0.0/0 via 192.0.2.254 dev eno1 metric 0)"
        ),
        # the deleted bridge took its port with it
        "test_master[vx10010]": "vx10010: master expected br-tenant, found none",
    }
    for message in expected.values():
        assert message in result.stdout, result.stdout
    data = json.loads(report.read_text())
    failed = {r["check"]: r["message"] for r in data["results"] if r["outcome"] == "failed"}
    assert data["ok"] is False
    assert failed == expected  # nothing else broke; the deleted bridge's other checks skip
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    junit_failures = {
        name: failure for name, case in cases.items() if (failure := case.find("failure")) is not None
    }
    assert len(junit_failures) == len(expected)
    assert all(any(m in (f.get("message") or "") for m in expected.values()) for f in junit_failures.values())
    skipped = {r["check"]: r["message"] for r in data["results"] if r["outcome"] == "skipped"}
    assert skipped["test_mtu[br-tenant]"] == "br-tenant: does not exist (reported by test_link_exists)"


def test_broken_guest_fails(lab: Lab, kernel: Kernel, tmp_path: Path) -> None:
    """A guest with the wrong MTU, IPv6 back on and an address gone fails, naming eth0."""
    output = tmp_path / "output"
    build(DEFAULT, output)
    bench = Bench(lab, kernel, DEFAULT, output)
    machine = bench.start_guest(guest_plan(DEFAULT, "web1"))
    run("ip", "-n", machine.ns, "link", "set", "eth0", "mtu", "1500")
    run("ip", "-n", machine.ns, "address", "flush", "dev", "eth0")
    sysctl(machine.ns, "net.ipv6.conf.all.disable_ipv6", "0")
    sysctl(machine.ns, "net.ipv6.conf.eth0.disable_ipv6", "0")
    report = tmp_path / "web1.json"
    result = kvmnet_in(
        machine.ns,
        *(
            "verify",
            "--target",
            "local",
            "web1",
            "--scope",
            "netns",
            "-o",
            str(output),
            "--json",
            str(report),
        ),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failed = {
        r["check"]: r["message"]
        for r in json.loads(report.read_text())["results"]
        if r["outcome"] == "failed"
    }
    assert failed == {
        "test_nic_mtu[eth0]": "eth0: MTU expected 8950, found 1500",
        "test_nic_addresses[eth0]": "eth0: addresses expected 10.10.0.11/24, found none",
        "test_nic_ipv6[eth0]": "eth0: disable_ipv6 expected 1, found 0",
        "test_sysctl[net.ipv6.conf.all.disable_ipv6]": "net.ipv6.conf.all.disable_ipv6: value expected 1, found 0",
        # the kernel copies a write to `all` into `default` (and every device)
        "test_sysctl[net.ipv6.conf.default.disable_ipv6]": "net.ipv6.conf.default.disable_ipv6: value expected 1, found 0",
    }


# --- SSH and Ansible: the default profile's fleet, reached from its switch ---------------

SSHD = Path("/usr/sbin/sshd")
#: The default profile's machines at their management addresses in inventory.yaml.
ADDRESSES = ("192.0.2.11", "192.0.2.12", "10.10.0.11", "10.10.0.12")


@dataclass
class Fleet:
    bench: Bench
    key: Path
    ssh_config: Path
    inventory: Path  # a directory: kvmnet's inventory.yaml and the lab's connection settings


@pytest.fixture(scope="module")
def fleet(benches: dict[Path, Bench], lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """sshd in each of the default profile's machines; the switch reaches them at their planned addresses."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs Debian's openssh-server and openssh-client")
    bench = benches[DEFAULT]
    work = tmp_path_factory.mktemp("ssh")
    key, host_key = work / "id_ed25519", work / "host_ed25519"
    for path in (key, host_key):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))
    (work / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    config = work / "sshd_config"
    config.write_text(
        f"ListenAddress 0.0.0.0\nHostKey {host_key}\nAuthorizedKeysFile {work}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPidFile none\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    # The underlay (eno1) and the guests' NICs meet on one bridge in the switch namespace,
    # which gets an address in each subnet: the inventory's addresses work as they are.
    sw = bench.switch
    run("ip", "-n", sw, "link", "add", "sw0", "type", "bridge")
    for machine, device in (("hv1", "eno1"), ("hv2", "eno1"), ("web1", "eth0"), ("web2", "eth0")):
        run("ip", "-n", sw, "link", "set", bench.machines[machine].peers[device], "master", "sw0")
    for address in ("192.0.2.100/24", "10.10.0.100/24"):
        run("ip", "-n", sw, "address", "add", address, "dev", "sw0")
    run("ip", "-n", sw, "link", "set", "sw0", "up")
    daemons = [
        subprocess.Popen(
            ["ip", "netns", "exec", bench.machines[m].ns, str(SSHD), "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(work / f"sshd-{m}.log").open("w"),
        )
        for m in ("hv1", "hv2", "web1", "web2")
    ]
    ssh_config = work / "ssh_config"
    # ControlPath: one SSH connection per machine, reused by every command (testinfra asks
    # for ControlMaster=auto but sets no path of its own); closed at the end with -O exit.
    control = f"{work}/cm-%C"
    ssh_config.write_text(
        f"Host *\n  User root\n  IdentityFile {key}\n  StrictHostKeyChecking no\n"
        f"  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ControlPath {control}\n"
    )
    inventory = work / "inventory"
    inventory.mkdir()
    shutil.copy(bench.output / layout.INVENTORY, inventory / "kvmnet.yaml")
    common = f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ControlPath={control}"
    lab_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": common,
    }
    # Loaded after kvmnet.yaml (alphabetical), so the lab's user replaces the guests' `ops`.
    (inventory / "zz-lab.yaml").write_text(
        yaml.safe_dump({"all": {"hosts": dict.fromkeys(("hv1", "hv2", "web1", "web2"), lab_vars)}})
    )
    try:
        ready = wait_for(
            lambda: all(
                run(
                    "ip", "netns", "exec", sw, "ssh", "-F", str(ssh_config), a, "true", check=False
                ).returncode
                == 0
                for a in ADDRESSES
            ),
            10,
        )
        assert ready, "sshd did not answer in every machine: " + " ".join(
            (work / f"sshd-{m}.log").read_text() for m in ("hv1", "hv2", "web1", "web2")
        )
        yield Fleet(bench, key, ssh_config, inventory)
    finally:
        for address in ADDRESSES:  # the connection masters testinfra left to persist
            run("ip", "netns", "exec", sw, "ssh", "-F", str(ssh_config), "-O", "exit", address, check=False)
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(timeout=5)


def test_ssh_target(fleet: Fleet) -> None:
    """testinfra's ssh backend: the host's suite over SSH to its planned underlay address."""
    target = f"ssh://root@192.0.2.11:22?ssh_config={fleet.ssh_config}"
    result = kvmnet_in(
        fleet.bench.switch,
        "verify",
        "--target",
        target,
        "hv1",
        "--scope",
        "netns",
        "-o",
        str(fleet.bench.output),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hv1" in result.stdout


def test_ansible_fleet(fleet: Fleet, reports: dict[tuple[str, str], Report], tmp_path: Path) -> None:
    """The whole fleet through the generated inventory, four machines at once (pytest-xdist)."""
    report = tmp_path / "fleet.json"
    result = kvmnet_in(
        fleet.bench.switch,
        *("verify", "--target", f"ansible:{fleet.inventory}", "--scope", "netns", "-n", "4"),
        *("-o", str(fleet.bench.output), "--json", str(report)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    machines = {r["machine"] for r in data["results"]}
    assert machines == {"hv1", "hv2", "web1", "web2"}
    assert data["ok"] is True
    for machine in machines:
        # Each module ran on its own machine only, exactly as when run alone in its namespace.
        mine = sorted((r["check"], r["outcome"]) for r in data["results"] if r["machine"] == machine)
        alone = sorted((r.check, r.outcome) for r in reports[("default", machine)].results)
        assert mine == alone
