"""A private libvirtd (with its virtlogd) for the VM tier, on a machine without systemd.

    with private_libvirtd(Path("/tmp/work")) as daemon:
        conn = libvirt.open(daemon.uri)                    # or virsh -c daemon.uri
        daemon.run("ip", "link", "add", "br0", "type", "bridge")   # in its network namespace
        daemon.host_path("/var/lib/libvirt/images/web1.qcow2")     # where that file really is

Where it lives, and why:

- **Its own network namespace** (`daemon.netns`, a named one: `ip netns exec NAME ...`).
  libvirtd makes taps and bridges and QEMU's guests get addresses there, so nothing of the
  VM tier touches the machine's own network, and the test reaches the guests from inside
  the namespace (`ip netns exec NAME ssh ...`, or `kvmnet verify` run there).
- **Its own mount namespace**, in which `/etc/libvirt`, `/var/lib/libvirt`,
  `/var/log/libvirt`, `/var/cache/libvirt` and `/run` are bind mounts of directories under
  `root`: a qemu.conf of our own (the machine's, if any, is never read or changed), the
  disks and seeds at the paths the generated domain XML names, pid files and sockets, all
  seen from outside as plain files under `root` (`host_path`). The UNIX socket is reached
  from anywhere by its path: `uri` is `qemu:///system?socket=ROOT/run/libvirt/libvirt-sock`.
- qemu.conf as verified on such machines (../shared/FACTS.md, "VM tier"): QEMU runs as
  root with no security driver, no cgroups and no per-domain mount namespaces, since there
  is no systemd to delegate cgroups and no SELinux/AppArmor to label with.

Leaving: every domain is destroyed, then every process left in the namespace (libvirtd,
virtlogd, QEMU, dnsmasq: started by us, found by the namespace) is stopped by PID, the
namespace deleted and `root` removed. The mount namespace goes with its last process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from generator.live import processes
from generator.live.commands import run

#: Directories libvirtd reads and writes, each a bind mount of ROOT/<name> in its mount namespace.
BINDS = {
    "etc": PurePosixPath("/etc/libvirt"),
    "lib": PurePosixPath("/var/lib/libvirt"),
    "log": PurePosixPath("/var/log/libvirt"),
    "cache": PurePosixPath("/var/cache/libvirt"),
    "run": PurePosixPath("/run"),
}

#: qemu.conf: flat `key = value` (FACTS: a section line or unquoted word stops the QEMU driver).
QEMU_CONF = """\
# kvmnet VM tier: QEMU as root, nothing to label or delegate on a machine without systemd
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
"""

LIBVIRTD_CONF = """\
# kvmnet VM tier: only root on this machine reaches the socket (mode 0700)
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

VIRTLOGD_CONF = """\
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
"""

START_TIMEOUT = 60.0  # libvirtd answers in 5-15 s, QEMU's capability probe included
#: A UNIX socket's path has at most 107 bytes (sun_path): a deeper root cannot be reached.
SOCKET_PATH_MAX = 107
_NUMBERS = itertools.count(1)


class LibvirtdError(RuntimeError):
    """libvirtd could not be started (the message says what it logged)."""


@dataclass(frozen=True)
class Libvirtd:
    netns: str  #: the network namespace libvirtd, its taps and bridges and the guests live in
    root: Path  #: ROOT/{etc,lib,log,cache,run}: what libvirtd sees as /etc/libvirt, ...

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def host_path(self, inside: str | PurePosixPath) -> Path:
        """Where a path libvirtd sees (e.g. a disk the domain XML names) is on this machine."""
        path = PurePosixPath(inside)
        for name, mount in BINDS.items():
            if path == mount or mount in path.parents:
                return self.root / name / path.relative_to(mount)
        private = ", ".join(map(str, BINDS.values()))
        raise ValueError(f"{path} is not under a directory private to this libvirtd ({private})")

    def command(self, *argv: str) -> list[str]:
        """`argv` run in libvirtd's network namespace (the machine's mounts)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return run(*self.command(*argv), timeout=timeout)

    def virsh(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run("virsh", "-c", self.uri, *argv, timeout=timeout)

    def pid(self) -> int | None:
        """libvirtd's PID (from its pid file), if it runs."""
        return _pid(self.root / "run" / "libvirtd.pid")

    def log(self, name: str = "libvirtd.log") -> str:
        """A log under /var/log/libvirt (libvirtd.log, virtlogd.log, qemu/<domain>.log)."""
        path = self.root / "log" / name
        return path.read_text(errors="replace") if path.exists() else ""


def _pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and processes.alive(int(text)) else None


def _mounts(root: Path, kvm: bool) -> str:
    """The shell that makes the mounts in the new mount namespace, then becomes virtlogd."""
    binds = [f"mount --bind {root / name} {mount}" for name, mount in BINDS.items()]
    if not kvm and Path("/dev/kvm").exists():
        # libvirtd probes QEMU with accel=kvm:tcg whenever /dev/kvm is usable, and expands
        # the host CPU model with a KVM vCPU: on a machine whose KVM cannot run ordinary
        # guests (FACTS) that probe hung libvirtd's start-up now and then. Without KVM it
        # probes TCG only, and offers type='qemu' alone, which is all the VM tier asks for.
        # Not /dev/null, which libvirt takes for a usable KVM: it calls KVM usable when
        # /dev/kvm exists and access(R_OK|W_OK) passes, which root passes on any device
        # node. Every cached probe was then "not KVM-enabled, but KVM should be usable
        # now": QEMU probed again, several times per call, ~24 s in every define. An empty
        # regular file mounted read-only fails W_OK (EROFS), so the TCG-only probe stays
        # valid (a define then takes milliseconds) and nothing can open a KVM there.
        (root / "no-kvm").touch()
        binds.append(f"mount --bind {root / 'no-kvm'} /dev/kvm")
        binds.append("mount -o remount,bind,ro /dev/kvm")
    lines = "\n".join(binds)
    return f"""set -eu
{lines}
mkdir -p /run/libvirt /var/lib/libvirt/images /var/log/libvirt/qemu
exec virtlogd
"""


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    # In the foreground (not -d), as our children: we reap them, nothing is left a zombie.
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )


def _wait_until(
    ready: Callable[[], bool], children: list[subprocess.Popen[bytes]], what: str, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        dead = [c for c in children if c.poll() is not None]
        if dead or time.monotonic() > deadline:
            said = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            own = log.parent / "log" / "libvirtd.log"  # libvirtd's own log_outputs
            said += own.read_text(errors="replace")[-2000:] if own.exists() else ""
            if dead:
                raise LibvirtdError(f"{what} exited {dead[0].returncode}: {said.strip()}")
            raise LibvirtdError(f"{what} not ready within {START_TIMEOUT:.0f} s: {said.strip()}")
        time.sleep(0.1)


@contextlib.contextmanager
def private_libvirtd(workdir: Path, *, label: str = "vm", kvm: bool = False) -> Iterator[Libvirtd]:
    """Start virtlogd + libvirtd in a network and mount namespace of their own; stop
    them, every domain and process they started, and remove everything on leaving.

    `kvm=False` (the default) hides /dev/kvm from them: software emulation only
    (`<domain type='qemu'>`), whatever the machine has. Ask for `kvm=True` only to boot
    `type='kvm'` domains on a real hypervisor."""
    for tool in ("libvirtd", "virtlogd", "virsh", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            raise LibvirtdError(
                f"{tool} not found: install libvirt-daemon-system, libvirt-daemon-driver-qemu, "
                "libvirt-clients and qemu-system-x86 (apt-get install --no-install-recommends)"
            )
    netns = f"kvmnet-{label}-{os.getpid()}-{next(_NUMBERS)}"
    root = Path(workdir).resolve() / netns
    if len(str(Libvirtd(netns, root).socket)) > SOCKET_PATH_MAX:
        # The socket would be unreachable (connect() refuses the path) while libvirtd runs
        # happily: pytest's tmp_path is deep enough for that. Fall back to a short root.
        root = Path(tempfile.mkdtemp(prefix="kvmnet-libvirtd-")) / netns
    remove = root if root.parent == Path(workdir).resolve() else root.parent
    created = [m for m in BINDS.values() if not Path(m).exists()]
    daemon = Libvirtd(netns, root)
    children: list[subprocess.Popen[bytes]] = []
    try:
        for name in BINDS:
            (root / name).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "qemu.conf").write_text(QEMU_CONF)
        (root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
        (root / "etc" / "virtlogd.conf").write_text(VIRTLOGD_CONF)
        for mount in created:  # mount points; libvirt-daemon-system makes them
            Path(mount).mkdir(parents=True, exist_ok=True)
        run("ip", "netns", "add", netns)
        run("ip", "-n", netns, "link", "set", "lo", "up")
        log = root / "daemons.log"
        # ip netns exec, unshare and sh all exec: the PID is virtlogd's, in the new namespaces.
        holder = _spawn(
            daemon.command(
                "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _mounts(root, kvm)
            ),
            log,
        )
        children.append(holder)
        _wait_until((root / "run" / "libvirt" / "virtlogd-sock").exists, children, "virtlogd", log)
        children.append(
            _spawn(["nsenter", f"--target={holder.pid}", "--mount", "--net", "--", "libvirtd"], log)
        )

        def answers() -> bool:
            try:
                probe = run("virsh", "-c", daemon.uri, "version", check=False, timeout=10)
            except subprocess.TimeoutExpired:
                return False
            return probe.returncode == 0

        _wait_until(answers, children, "libvirtd", log)
        yield daemon
    finally:
        try:
            _stop(daemon, children)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(remove)
            for mount in reversed(created):
                with contextlib.suppress(OSError):
                    Path(mount).rmdir()  # only if still empty: another private libvirtd may use it


def _stop(daemon: Libvirtd, children: list[subprocess.Popen[bytes]]) -> None:
    if daemon.pid() is not None:
        # Let libvirt tear its domains down (taps, its state files) before the processes go.
        listed = run("virsh", "-c", daemon.uri, "list", "--name", check=False, timeout=30)
        for name in listed.stdout.split():
            run("virsh", "-c", daemon.uri, "destroy", name, check=False, timeout=30)
    pids = set(processes.in_namespace(daemon.netns))
    for pidfile in ("libvirtd.pid", "virtlogd.pid"):
        if (pid := _pid(daemon.root / "run" / pidfile)) is not None:
            pids.add(pid)
    qemu = daemon.root / "run" / "libvirt" / "qemu"
    if qemu.is_dir():
        for qemu_pid in qemu.glob("*.pid"):
            if (pid := _pid(qemu_pid)) is not None:
                pids.add(pid)
    pids.update(c.pid for c in children if c.poll() is None)
    left = processes.stop(sorted(pids))
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
    if Path("/run/netns", daemon.netns).exists():
        run("ip", "netns", "delete", daemon.netns, check=False)
    if left:
        raise LibvirtdError(f"processes of {daemon.netns} would not stop: {left}")
