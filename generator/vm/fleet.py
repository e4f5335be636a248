"""Boot guests and hosts of a profile as kvmnet wrote them, and run their generated
suites over SSH.

    with private_libvirtd(work) as daemon, Fleet(daemon, output, plan, key, work) as fleet:
        with fleet.guest("vm1", image) as booted:
            result = fleet.verify(booted)
        with fleet.host("hv1", host_image) as booted:
            bootstrap = fleet.bootstrap(booted)
            result = fleet.verify(booted)

What is the profile's and what is the tier's:

- the domain is defined from `guests/<guest>/domain.xml` exactly as written (libvirt's
  VALIDATE flag: nothing dropped) and started; its disk, at the path the XML names, is a
  throw-away overlay of the golden image; its cdrom, at the path the XML names, is
  `guests/<guest>/seed.iso` (`kvmnet build --seed-iso`), or another seed for a negative
  control;
- the bridges its NICs attach to are made in libvirtd's namespace as the guest's host
  has them in the plan (name, MTU, addresses); a libvirt network (`network:` NICs) is
  defined from `hosts/<host>/libvirt/networks/<bridge>.xml`. If the host has no address
  in the guest's subnet, the tier adds the subnet's last address to reach the guest;
- a host boots as generator/vm/hosts.py describes, and runs `hosts/<host>/bootstrap.sh`
  copied from the output;
- the suite is `kvmnet verify -t ssh://USER@ADDRESS GUEST`, run in that namespace: the
  real CLI, testinfra's ssh backend, one reused SSH connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

from generator import layout
from generator.live.libvirtd import SOCKET_PATH_MAX, Libvirtd
from generator.live.vms import (
    BOOT_TIMEOUT,
    Boot,
    NoAnswerError,
    Ssh,
    bridge,
    disks_of,
    overlay,
    reboot,
    running,
    ssh_config,
    wait_booted,
    with_console_log,
)
from generator.plan.types import GuestPlan, HostPlan, Plan
from generator.verify.runner import CheckResult, Report
from generator.vm.errors import VmTierError
from generator.vm.hosts import MGMT, MGMT_MTU, MGMT_NET, WIRE, NameServer, bare_vm, host_vm, name_servers

VERIFY_TIMEOUT = 600.0


#: Boots of a machine that never answers SSH before the tier gives up (see Fleet._booted).
BOOT_ATTEMPTS = 2


class BootRetried(UserWarning):
    """A machine never answered SSH and was booted once more (the message has its console)."""


@dataclass(frozen=True)
class Booted:
    name: str  # the machine's name in the profile (guest or host)
    ssh: Ssh
    boot: Boot
    domain: libvirt.virDomain

    def reboot(self) -> Boot:
        """Reboot the machine (e.g. for kernel arguments) and wait until it is up again."""
        return reboot(self.ssh, self.domain)


@dataclass(frozen=True)
class SuiteRun:
    machine: str
    exit_code: int  # kvmnet verify's: 0 passed, 1 a check failed, 2 could not run
    seconds: float
    report: Report | None
    said: str  # what kvmnet verify printed (tables, or why it could not run)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.report is not None and self.report.ok

    def failures(self) -> list[CheckResult]:
        return [r for r in self.report.results if r.outcome == "failed"] if self.report else []


def login(guest: GuestPlan) -> tuple[str, str]:
    """The user (first with an SSH key) and address (first static one) to reach `guest` by."""
    user = next((u.name for u in guest.users if u.ssh_keys), None)
    address = next((a.split("/")[0] for nic in guest.nics for a in nic.addresses), None)
    if user is None:
        raise VmTierError.of(
            f"guest {guest.name}: no user with an SSH key (users: ...ssh-authorized-keys), "
            "so the VM tier cannot log in"
        )
    if address is None:
        raise VmTierError.of(
            f"guest {guest.name}: no static address on any interface; the VM tier has no DHCP "
            "server and reaches guests by their address"
        )
    return user, address


@dataclass
class Fleet:
    """Guests (and hosts) of one plan booted in one private libvirtd; all removed on close."""

    daemon: Libvirtd
    output: Path
    plan: Plan
    identity: Path | None
    work: Path
    _conn: libvirt.virConnect | None = None
    _bridges: set[str] = field(default_factory=set)
    _networks: set[str] = field(default_factory=set)
    _hosts: int = 0
    _servers: list[subprocess.Popen[bytes]] = field(default_factory=list)  # DNS on the wire
    _control_dir: Path | None = None  # ssh's master sockets (work/cm, or a short one in /tmp)
    boot_timeout: float = BOOT_TIMEOUT  # per boot, from `start` to SSH and cloud-init done

    def __enter__(self) -> Fleet:
        self._conn = libvirt.open(self.daemon.uri)
        self.work.mkdir(parents=True, exist_ok=True)
        # ssh's master sockets: <dir>/<40-hex %C>, plus a 17-character temporary suffix
        # while ssh creates one, must fit a UNIX socket path (107 bytes). Under a deep work
        # directory (pytest's tmp_path) they go to a short one in /tmp instead; without
        # that, ssh cannot share its connection and every probe fails ("too long for Unix
        # domain socket"), seen as a VM that never answers SSH.
        control = self.work / "cm"
        if len(str(control)) + 1 + 40 + 17 > SOCKET_PATH_MAX:
            control = Path(tempfile.mkdtemp(prefix="kvmnet-cm-"))
        self._control_dir = control
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=5)
            if server.poll() is None:
                server.kill()
                server.wait(timeout=5)
        self._servers.clear()
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None
        if self._control_dir is not None and not self._control_dir.is_relative_to(self.work):
            shutil.rmtree(self._control_dir, ignore_errors=True)  # ours in /tmp
        self._control_dir = None

    @property
    def control_dir(self) -> Path:
        if self._control_dir is None:
            raise RuntimeError("Fleet used outside its with-block")
        return self._control_dir

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            raise RuntimeError("Fleet used outside its with-block")
        return self._conn

    def host_plan(self, name: str) -> HostPlan:
        return next(h for h in self.plan.hosts if h.name == name)

    def guest_plan(self, name: str) -> GuestPlan:
        for guest in self.plan.guests:
            if guest.name == name:
                return guest
        known = ", ".join(g.name for g in self.plan.guests) or "none"
        raise VmTierError.of(f"no guest {name!r} in the profile (guests: {known})")

    # --- the guest's host, as far as its NICs need it ------------------------------

    def _attach(self, guest: GuestPlan) -> None:
        host = self.host_plan(guest.host)
        for nic in guest.nics:
            if nic.source in self._bridges:
                continue
            device = next((i for i in host.interfaces if i.id == nic.source), None)
            if device is None:
                raise VmTierError.of(f"guest {guest.name}: {nic.source} is not a device of host {host.name}")
            addresses = list(device.addresses)
            for own in nic.addresses:
                subnet = ipaddress.ip_interface(own).network
                if not any(ipaddress.ip_interface(a).network == subnet for a in addresses):
                    # The host has no address there: the tier needs one to reach the guest.
                    addresses.append(
                        f"{subnet[-2] if subnet.num_addresses > 2 else subnet[-1]}/{subnet.prefixlen}"
                    )
            bridge(self.daemon, nic.source, device.mtu, addresses)
            self._bridges.add(nic.source)
            if nic.attach == "network" and nic.source not in self._networks:
                xml = (self.output / layout.libvirt_network(host.name, nic.source)).read_text()
                network = self.conn.networkDefineXML(xml)
                network.create()
                self._networks.add(nic.source)

    # --- booting -------------------------------------------------------------------

    @contextlib.contextmanager
    def guest(self, name: str, image: Path, *, seed: Path | None = None) -> Iterator[Booted]:
        """`name` booted from its domain XML with its seed (or `seed`), until SSH and
        cloud-init are done; destroyed, undefined and its disk removed afterwards."""
        plan = self.guest_plan(name)
        user, address = login(plan)
        domain = self.output / layout.domain_xml(name)
        xml = domain.read_text()
        seed = seed or self.output / layout.guest_seed(name).image
        if not seed.is_file():
            raise VmTierError.of(f"no seed image {seed}: build with `kvmnet build --seed-iso`")
        files = disks_of(xml)
        if len(files.disks) != 1 or len(files.cdroms) != 1:
            raise VmTierError.of(f"{domain}: expected one disk and one cdrom (the seed), found {files}")
        disk = self.daemon.host_path(files.disks[0])
        cdrom = self.daemon.host_path(files.cdroms[0])
        shutil.copyfile(seed, cdrom)
        self._attach(plan)
        ssh = Ssh(
            self.daemon,
            user,
            address,
            ssh_config(self.work / f"ssh-{name}.conf", self.identity, self.control_dir),
        )
        with self._booted(name, ssh, xml, disk, cdrom, image) as booted:
            yield booted

    @contextlib.contextmanager
    def _booted(
        self, name: str, ssh: Ssh, xml: str, disk: Path, cdrom: Path, image: Path
    ) -> Iterator[Booted]:
        """Start the domain on a fresh overlay of `image`, wait for SSH and cloud-init;
        afterwards remove its disk and seed.

        A machine that ran but never answered SSH is booted once more from a new overlay,
        with a warning that carries its console: under software emulation on a loaded
        2-core machine, CI once saw a host give "No route to host" for the whole boot
        timeout, which three boots of the same image here never showed. A second silent
        boot fails the run with its console; a machine that stopped fails at once."""
        try:
            for attempt in range(1, BOOT_ATTEMPTS + 1):
                overlay(image, disk)
                with running(self.conn, with_console_log(self.daemon, xml)) as (domain, started):
                    try:
                        boot = wait_booted(ssh, started, domain, self.boot_timeout)
                    except NoAnswerError as exc:
                        if attempt == BOOT_ATTEMPTS:
                            raise
                        warnings.warn(f"{exc}\nbooting {name} once more", BootRetried, stacklevel=1)
                        continue
                    try:
                        yield Booted(name, ssh, boot, domain)
                    finally:
                        ssh.close()
                    return
        finally:
            disk.unlink(missing_ok=True)
            cdrom.unlink(missing_ok=True)

    @contextlib.contextmanager
    def host(self, name: str, image: Path, *, memory_mib: int = 1024) -> Iterator[Booted]:
        """Hypervisor `name` booted from `image` (see generator/vm/hosts.py), root over SSH."""
        plan = next((h for h in self.plan.hosts if h.name == name), None)
        if plan is None:
            known = ", ".join(h.name for h in self.plan.hosts)
            raise VmTierError.of(f"no host {name!r} in the profile (hosts: {known})")
        if self.identity is None:
            raise VmTierError.of("booting a host needs --identity: its seed gives root that key")
        public = Path(f"{self.identity}.pub")
        if not public.is_file():
            raise VmTierError.of(f"no public key {public} beside the identity {self.identity}")
        vm = host_vm(plan, self._hosts, public.read_text(), memory_mib=memory_mib)
        self._hosts += 1
        if MGMT not in self._bridges:
            bridge(self.daemon, MGMT, MGMT_MTU, [f"{MGMT_NET[1]}/{MGMT_NET.prefixlen}"])
            self._bridges.add(MGMT)
        self.wire(vm.wire_mtu, vm.wire_addresses)
        for server in name_servers(plan):
            self._serve_dns(server)
        disk = self.daemon.host_path(vm.disk)
        cdrom = self.daemon.host_path(vm.cdrom)
        cdrom.write_bytes(vm.seed)
        ssh = Ssh(
            self.daemon,
            "root",
            vm.address,
            ssh_config(self.work / f"ssh-{name}.conf", self.identity, self.control_dir),
        )
        with self._booted(name, ssh, vm.xml, disk, cdrom, image) as booted:
            yield booted

    def wire(self, mtu: int, addresses: tuple[str, ...]) -> None:
        """The bridge hosts' ethernets are cabled to, with `addresses` on it (gateways,
        nameservers, the boot service): made by the first host, added to by the others."""
        if WIRE not in self._bridges:
            bridge(self.daemon, WIRE, mtu, addresses)
            self._bridges.add(WIRE)
            return
        present = self.daemon.run("ip", "-o", "address", "show", "dev", WIRE).stdout
        for address in addresses:
            if f" {address} " not in present:
                self.daemon.run("ip", "address", "add", address, "dev", WIRE)

    @contextlib.contextmanager
    def bare_host(
        self, name: str, mac: str, *, disk_gib: int = 8, memory_mib: int = 2048
    ) -> Iterator[tuple[libvirt.virDomain, float]]:
        """Host `name` as an empty machine that PXE-boots from its NIC with `mac`
        (generator/vm/hosts.py's `bare_vm`), started; destroyed and its disk removed after.
        Yields the domain and when it started (monotonic)."""
        plan = self.host_plan(name)
        vm = bare_vm(plan, self._hosts, mac, memory_mib=memory_mib)
        self._hosts += 1
        self.wire(vm.wire_mtu, vm.wire_addresses)
        disk = self.daemon.host_path(vm.disk)
        disk.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(disk), f"{disk_gib}G"],
            check=True,
            capture_output=True,
        )
        try:
            with running(self.conn, with_console_log(self.daemon, vm.xml)) as (domain, started):
                yield domain, started
        finally:
            disk.unlink(missing_ok=True)

    def ssh(self, name: str, user: str, address: str) -> Ssh:
        """SSH to a machine of this fleet as `user` with the fleet's identity."""
        return Ssh(
            self.daemon,
            user,
            address,
            ssh_config(self.work / f"ssh-{name}.conf", self.identity, self.control_dir),
        )

    def _serve_dns(self, server: NameServer) -> None:
        """dnsmasq on the wire at the host's nameserver, authoritative for its search
        domains, so that the host's DNS check has a server to ask (the real program, not a
        stub: it answers SOA and refuses what it is not authoritative for)."""
        present = self.daemon.run("ip", "-o", "address", "show", "dev", WIRE).stdout
        if f" {server.address} " not in present:
            self.daemon.run("ip", "address", "add", server.address, "dev", WIRE)
        address = server.address.split("/")[0]
        argv = [
            *("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"),
            *("--bind-interfaces", f"--listen-address={address}", "--pid-file=", "--log-facility=-"),
        ]
        for zone in server.zones:
            argv += [f"--auth-server=ns1.{zone},{address}", f"--auth-zone={zone}"]
        log = (self.work / f"dnsmasq-{address}.log").open("ab")
        with log:
            process = subprocess.Popen(self.daemon.command(*argv), stdout=log, stderr=log)
        self._servers.append(process)
        time.sleep(0.5)
        if process.poll() is not None:
            said = (self.work / f"dnsmasq-{address}.log").read_text(errors="replace")[-500:]
            raise VmTierError.of(f"dnsmasq for {address} on the wire exited {process.returncode}: {said}")

    def bootstrap(self, booted: Booted, *args: str) -> subprocess.CompletedProcess[str]:
        """Copy `hosts/<host>/` into the host and run its bootstrap.sh there (as root)."""
        folder = self.output / layout.host_dir(booted.name)
        bundle = f"/root/kvmnet-{booted.name}"
        with subprocess.Popen(
            ["tar", "-C", str(folder), "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        ) as tar:
            copy = subprocess.run(
                booted.ssh.argv(f"rm -rf {bundle} && mkdir -p {bundle} && tar -x -C {bundle}"),
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        if copy.returncode != 0:
            raise VmTierError.of(f"could not copy {folder} to {booted.name}: {copy.stderr.strip()}")
        return booted.ssh.run(f"{bundle}/{layout.BOOTSTRAP}", *args, timeout=600, check=False)

    # --- the generated suite -------------------------------------------------------

    def verify(self, booted: Booted, output: Path | None = None) -> SuiteRun:
        """`kvmnet verify -t ssh://... MACHINE` in libvirtd's namespace, with `output`'s suites."""
        output = output or self.output
        report_file = self.work / f"verify-{booted.name}-{time.monotonic_ns()}.json"
        command = self.daemon.command(
            sys.executable,
            *("-m", "generator", "verify", "-t", booted.ssh.target, "-o", str(output)),
            *("--json", str(report_file), booted.name),
        )
        begun = time.monotonic()
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=VERIFY_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise VmTierError.of(
                f"kvmnet verify on {booted.name} took longer than {VERIFY_TIMEOUT:.0f} s"
            ) from exc
        seconds = round(time.monotonic() - begun, 1)
        report = None
        if report_file.exists():
            data = json.loads(report_file.read_text())
            report = Report(tuple(CheckResult(**r) for r in data["results"]))
            report_file.unlink()
        return SuiteRun(
            booted.name, result.returncode, seconds, report, (result.stdout + result.stderr).strip()
        )
