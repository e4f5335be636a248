"""Virtual machines of the VM tier: disks, bridges, a domain defined and started from
its XML in a private libvirtd (generator/live/libvirtd.py), and SSH into the guest.

Everything here acts inside the libvirtd's own network namespace: the bridges the
domains attach to, the test's address on them, and every SSH connection
(`ip netns exec`), so the guests' addresses exist nowhere else on the machine.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import libvirt

from generator.live.commands import run
from generator.live.libvirtd import Libvirtd

#: How long a guest may take from `start` to answering SSH, and to cloud-init done.
#: Software emulation boots Debian 12 in ~50 s on an idle 2-core machine (FACTS).
BOOT_TIMEOUT = 420.0
SSH_PROBE_TIMEOUT = 10


class VmError(RuntimeError):
    """A VM could not be made, started or reached (the message says what was seen)."""


class NoAnswerError(VmError):
    """The VM ran but never answered SSH within the boot timeout (its console in the message)."""


@dataclass(frozen=True)
class Disks:
    """The files a domain XML names: its disk(s) and cdrom(s) (the NoCloud seed)."""

    disks: tuple[str, ...]
    cdroms: tuple[str, ...]


def disks_of(xml: str) -> Disks:
    root = ET.fromstring(xml)
    disks: list[str] = []
    cdroms: list[str] = []
    for disk in root.iterfind("./devices/disk"):
        source = disk.find("source")
        if source is None or source.get("file") is None:
            continue
        (cdroms if disk.get("device") == "cdrom" else disks).append(str(source.get("file")))
    return Disks(tuple(disks), tuple(cdroms))


def overlay(golden: Path, disk: Path) -> None:
    """A throw-away copy-on-write disk over `golden` (which is never written)."""
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.unlink(missing_ok=True)
    run(
        *("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2"),
        *("-b", str(golden.resolve()), str(disk)),
        timeout=60,
    )


def bridge(daemon: Libvirtd, name: str, mtu: int, addresses: Sequence[str]) -> None:
    """A Linux bridge in libvirtd's namespace, as the guest's host would have it.

    An empty bridge takes any MTU; a tap libvirt adds with `<mtu size>` keeps it.
    """
    daemon.run("ip", "link", "add", name, "mtu", str(mtu), "type", "bridge")
    for address in addresses:
        daemon.run("ip", "address", "add", address, "dev", name)
    daemon.run("ip", "link", "set", name, "up")


#: Where a domain's serial console is copied, in libvirtd's view (its log directory, which
#: `Libvirtd.log` reads): `console/<domain>.log`.
CONSOLE_DIR = "console"


def with_console_log(daemon: Libvirtd, xml: str) -> str:
    """`xml` with its serial consoles copied to a file (`<log>` of the character device).

    When a machine never answers SSH, its console (kernel, systemd, cloud-init) is the only
    witness of why; QEMU's own log says nothing about the guest. Only the tier's copy of the
    XML gets this: the generated domain.xml stays what a user defines."""
    daemon.host_path(f"/var/log/libvirt/{CONSOLE_DIR}").mkdir(parents=True, exist_ok=True)
    root = ET.fromstring(xml)
    name = root.findtext("name", "domain")
    for serial in root.iterfind("./devices/serial"):
        if serial.find("log") is None:
            ET.SubElement(serial, "log", file=f"/var/log/libvirt/{CONSOLE_DIR}/{name}.log", append="off")
    return ET.tostring(root, encoding="unicode")


def console_tail(daemon: Libvirtd, name: str, lines: int = 40) -> str:
    """The last `lines` lines of a domain's console (`with_console_log`), or why there are none."""
    text = daemon.log(f"{CONSOLE_DIR}/{name}.log")
    if not text.strip():
        return "(its console printed nothing)"
    return "\n".join(text.replace("\r", "").rstrip().splitlines()[-lines:])


def start(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    """Define the domain from `xml` as written (VALIDATE: nothing silently dropped) and start it."""
    try:
        domain = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        domain.create()
    except libvirt.libvirtError as exc:
        raise VmError(f"libvirt refused the domain: {exc}") from exc
    return domain


def remove(domain: libvirt.virDomain) -> None:
    """Destroy (power off) and undefine; a domain already gone is fine."""
    with contextlib.suppress(libvirt.libvirtError):
        if domain.isActive():
            domain.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        domain.undefine()


# --- SSH -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ssh:
    """SSH to one guest from inside libvirtd's network namespace, one reused connection."""

    daemon: Libvirtd
    user: str
    address: str
    config: Path

    @property
    def target(self) -> str:
        """For `kvmnet verify -t` (testinfra's ssh backend reads the same config file)."""
        return f"ssh://{self.user}@{self.address}?ssh_config={self.config}"

    def argv(self, *command: str) -> list[str]:
        return self.daemon.command("ssh", "-F", str(self.config), f"{self.user}@{self.address}", *command)

    def run(
        self, *command: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`command` in the guest (a shell line: ssh joins its words)."""
        line = " ".join(shlex.quote(word) for word in command)
        result = subprocess.run(self.argv(line), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise VmError(
                f"{line} on {self.user}@{self.address} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def close(self) -> None:
        """Stop the shared connection (its master process lives in the namespace)."""
        subprocess.run(
            self.daemon.command("ssh", "-F", str(self.config), "-O", "exit", f"{self.user}@{self.address}"),
            capture_output=True,
            timeout=10,
            check=False,
        )


def ssh_config(path: Path, identity: Path | None, control_dir: Path) -> Path:
    """An ssh_config for throw-away guests: their host keys are new on every boot, so
    none is recorded or checked; one master connection per guest is reused (testinfra
    runs one ssh per command: ~20 s of handshakes per suite without it, FACTS)."""
    control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        "Host *",
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  GlobalKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  BatchMode yes",
        f"  ConnectTimeout {SSH_PROBE_TIMEOUT}",
        "  ControlMaster auto",
        f"  ControlPath {control_dir}/%C",
        "  ControlPersist 120",
        "  ServerAliveInterval 5",
    ]
    if identity is not None:
        lines += [f"  IdentityFile {identity.resolve()}", "  IdentitiesOnly yes"]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class Boot:
    """Seconds from `start` to SSH answering, and to cloud-init done."""

    ssh: float
    cloud_init: float


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def wait_booted(
    ssh: Ssh,
    started: float,
    domain: libvirt.virDomain,
    timeout: float = BOOT_TIMEOUT,
    *,
    not_boot: str | None = None,
) -> Boot:
    """Wait for SSH (from a boot other than `not_boot`, a boot id), then for cloud-init
    to finish (`cloud-init status --wait`)."""
    deadline = started + timeout
    last = ""
    while True:
        if not domain.isActive():
            raise VmError(f"{domain.name()} stopped while booting: {_qemu_log(ssh.daemon, domain)}")
        probe = subprocess.run(
            ssh.argv("cat", BOOT_ID),
            capture_output=True,
            text=True,
            timeout=SSH_PROBE_TIMEOUT + 20,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() != not_boot:
            break
        last = probe.stderr.strip() or "the previous boot still answers"
        if time.monotonic() > deadline:
            raise NoAnswerError(
                f"{domain.name()}: no SSH to {ssh.user}@{ssh.address} within {timeout:.0f} s "
                f"(last: {last or 'no answer'}); the end of its console:\n"
                f"{console_tail(ssh.daemon, domain.name())}"
            )
        time.sleep(2)
    ssh_at = time.monotonic() - started
    remaining = max(10.0, deadline - time.monotonic())
    status = ssh.run("cloud-init", "status", "--wait", timeout=remaining, check=False)
    done_at = time.monotonic() - started
    if status.returncode != 0:
        text = status.stdout.strip().splitlines()[-1] if status.stdout.strip() else status.stderr.strip()
        detail = ssh.run("cloud-init", "status", "--long", check=False).stdout.strip()
        raise VmError(f"{domain.name()}: cloud-init did not finish cleanly ({text}):\n{detail}")
    return Boot(round(ssh_at, 1), round(done_at, 1))


def reboot(ssh: Ssh, domain: libvirt.virDomain, timeout: float = BOOT_TIMEOUT) -> Boot:
    """Reboot the guest (as root, or with sudo) and wait for its next boot to be up."""
    before = ssh.run("cat", BOOT_ID).stdout.strip()
    prefix = () if ssh.user == "root" else ("sudo",)
    # ssh may lose the connection before `systemctl reboot` returns: its exit says nothing.
    ssh.run(*prefix, "systemctl", "reboot", check=False, timeout=30)
    ssh.close()
    started = time.monotonic()
    return wait_booted(ssh, started, domain, timeout, not_boot=before)


def _qemu_log(daemon: Libvirtd, domain: libvirt.virDomain) -> str:
    return daemon.log(f"qemu/{domain.name()}.log")[-2000:].strip()


@contextlib.contextmanager
def running(conn: libvirt.virConnect, xml: str) -> Iterator[tuple[libvirt.virDomain, float]]:
    """The domain started from `xml`, and when (monotonic); destroyed and undefined after."""
    domain = start(conn, xml)
    started = time.monotonic()
    try:
        yield domain, started
    finally:
        remove(domain)
