"""A simulated hypervisor for running the generated bootstrap.sh live, without systemd.

One network namespace and one mount namespace, held open by a keeper process, with:
- the real systemd-networkd 252 (the recipe in the project's FACTS notes);
- a private D-Bus system bus, so `networkctl reload` reaches networkd exactly as on a
  host (networkd owns org.freedesktop.network1 under Debian's own bus policy);
- tmpfs over every directory the bootstrap writes (/etc/systemd/network, /etc/systemd/
  system, /etc/sysctl.d, /etc/modules-load.d, /var/lib), so nothing reaches the
  machine running the tests.
Commands run inside with `nsenter` into both namespaces.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.networkd import NETWORKD, machine_id, run

BUS = "/run/systemd/kvmnet-test-bus"
PIDFILE = "/run/systemd/kvmnet-networkd.pid"

#: The simulated host has no service manager. This stands in for the two things the
#: bootstrap asks of systemd here, starting and restarting systemd-networkd (stop, then
#: start, as systemd does); anything else goes to the real systemctl working offline on
#: the host's files (`--root=/`: is-enabled, enable).
_SYSTEMCTL = f"""#!/bin/sh
set -eu
case "$*" in
  "start systemd-networkd.service" | "restart systemd-networkd.service")
    if [ -s {PIDFILE} ]; then
      old=$(cat {PIDFILE})
      kill "$old" 2>/dev/null || true
      while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
    fi
    setsid {NETWORKD} >>"$KVMNET_NETWORKD_LOG" 2>&1 </dev/null &
    echo $! >{PIDFILE}
    ;;
  *) exec /bin/systemctl --root=/ "$@" ;;
esac
"""

_KEEPER = r"""
set -eu
umask 022
machine_id=$1
for dir in /run/systemd /etc/systemd/network /etc/systemd/system /etc/sysctl.d /etc/modules-load.d /var/lib; do
  mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp
chown -R systemd-network:systemd-network /run/systemd/netif
mount --bind "$machine_id" /etc/machine-id
mount -o remount,ro /sys
dbus-daemon --system --address="unix:path=/run/systemd/kvmnet-test-bus" --nopidfile --fork
exec sleep infinity
"""


_PACKAGE_SHIMS = {
    "dpkg-query": "#!/bin/sh\nprintf installed\n",  # the simulated host has its stack
    "rpm": "#!/bin/sh\nexit 0\n",
    "apt-get": "#!/bin/sh\necho 'simulated host: no package is installed here' >&2\nexit 1\n",
    "dnf": "#!/bin/sh\necho 'simulated host: no package is installed here' >&2\nexit 1\n",
    "virsh": "#!/bin/sh\necho 'simulated host: no libvirt here' >&2\nexit 1\n",
}


class HostSim:
    def __init__(self, ns: str, workdir: Path, seed: str) -> None:
        self.ns = ns
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        identity = workdir / "machine-id"
        identity.write_text(machine_id(seed) + "\n")
        identity.chmod(0o444)
        shims = workdir / "bin"
        shims.mkdir(exist_ok=True)
        (shims / "systemctl").write_text(_SYSTEMCTL)
        (shims / "systemctl").chmod(0o755)
        # The simulated host is a network, not a machine of its own: its packages are the
        # real machine's, so the bootstrap must never install any (it would install them
        # here), and it has no libvirt (its networks step warns and goes on).
        for name, script in _PACKAGE_SHIMS.items():
            (shims / name).write_text(script)
            (shims / name).chmod(0o755)
        self.env = {
            "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={BUS}",
            "SYSTEMD_LOG_TARGET": "console",
            "SYSTEMD_LOG_LEVEL": "debug",
            "LC_ALL": "C",
            "PATH": f"{shims}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
            "KVMNET_NETWORKD_LOG": str(workdir / "networkd.log"),
        }
        self.keeper = subprocess.Popen(
            ["ip", "netns", "exec", ns, "sh", "-c", _KEEPER, "sh", str(identity)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "keeper.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{self.keeper.pid}/root{BUS}").exists():
            if self.keeper.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simulated host did not start: " + (workdir / "keeper.log").read_text())
            time.sleep(0.05)

    def _enter(self) -> list[str]:
        pid = self.keeper.pid
        env = (f"{k}={v}" for k, v in self.env.items())
        return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", f"--net=/proc/{pid}/ns/net", "--", "env", *env]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._enter(), *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self._enter(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def start_networkd(self) -> None:
        result = self.run("systemctl", "start", "systemd-networkd.service")
        assert result.returncode == 0, result.stderr

    def networkd_log(self) -> str:
        return (self.workdir / "networkd.log").read_text(errors="replace")

    def file(self, path: str) -> bytes | None:
        """A file as the simulated host sees it (through the keeper's root)."""
        try:
            return Path(f"/proc/{self.keeper.pid}/root/{path.lstrip('/')}").read_bytes()
        except OSError:
            return None

    def close(self) -> None:
        # Everything started in the namespace: the keeper, networkd, dbus-daemon, guards.
        for pid in _pids_in_netns(self.ns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            self.keeper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.keeper.kill()


def _pids_in_netns(ns: str) -> list[int]:
    result = run("ip", "netns", "pids", ns, check=False)
    return [int(p) for p in result.stdout.split()]
