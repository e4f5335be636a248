"""The real systemd-networkd 252, run in a network namespace without systemd as PID 1.

The recipe (the project's FACTS notes): a private mount namespace (`unshare -m`) with
tmpfs on /run/systemd and /etc/systemd/network, the files in /run/systemd/network, a
per-host /etc/machine-id bind-mounted (networkd derives bridge and VXLAN MACs from it, so
simulated hosts sharing one would share MACs no two real hosts have), then `ip netns exec
NS` with /sys remounted read-only, which makes networkd stop waiting for a udev that does
not run here.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NETWORKD = Path("/lib/systemd/systemd-networkd")
RUN_NETWORK = "/run/systemd/network"
#: sd-messages.h SD_MESSAGE_INVALID_CONFIGURATION: every log_syntax() warning carries it.
INVALID_CONFIGURATION = "c772d24e9a884cbeb9ea12625c306c01"
WARNING = 4  # syslog priority; this and lower numbers (err, crit...) are problems
SO_RCVBUFFORCE = 33  # socket(7); Python's socket module does not export it
#: How networkd words a complaint about a configuration file, in a log line of any form.
SYNTAX_COMPLAINT = re.compile(r"Unknown (key|section|lvalue)|Failed to parse")

# --- the one deliberate change to generated files ----------------------------------------

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]*)\]\s*$")
_PERMANENT_MAC = re.compile(r"^(?P<indent>\s*)PermanentMACAddress=")


def adapt_for_veth(text: str) -> str:
    """Return `text` with `PermanentMACAddress=` turned into `MACAddress=` in [Match] sections.

    This is the only change made to generated files on their way into the bench. Physical
    NICs are matched by their burnt-in address (as netplan does: it survives a MAC change),
    but the NICs here are veth devices, which have none (`ethtool -P`: "Permanent address:
    not set"), so no such [Match] could ever select them. The value stays the same and
    every other byte stays as generated.
    """
    out = []
    section = None
    for line in text.splitlines(keepends=True):
        if header := _SECTION.match(line):
            section = header["name"]
        out.append(
            _PERMANENT_MAC.sub(r"\g<indent>MACAddress=", line, count=1) if section == "Match" else line
        )
    return "".join(out)


def machine_id(seed: str) -> str:
    """A stable, distinct machine-id per simulated host (32 lowercase hex digits)."""
    return hashlib.sha256(f"kvmnet-test/{seed}".encode()).hexdigest()[:32]


# --- networkd's journal ------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    fields: Mapping[str, str]

    @property
    def priority(self) -> int:
        return int(self.fields.get("PRIORITY", "7"))

    @property
    def message(self) -> str:
        return self.fields.get("MESSAGE", "")

    @property
    def interface(self) -> str | None:
        return self.fields.get("INTERFACE")

    @property
    def is_syntax_warning(self) -> bool:
        """A complaint about a configuration file (log_syntax(): file, line and message id)."""
        return (
            "CONFIG_FILE" in self.fields
            or self.fields.get("MESSAGE_ID") == INVALID_CONFIGURATION
            or SYNTAX_COMPLAINT.search(self.message) is not None
        )


def parse_datagram(data: bytes) -> JournalEntry:
    """journald's native protocol: `KEY=value` lines, or `KEY`, a 64-bit LE size and raw bytes."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = end + 1
        else:
            size = int.from_bytes(data[end + 1 : end + 9], "little")
            key, value = line, data[end + 9 : end + 9 + size]
            pos = end + 9 + size + 1
        if key:
            fields[key.decode()] = value.decode(errors="replace")
    return JournalEntry(fields)


class JournalSink:
    """A stand-in for journald's socket, so networkd's messages keep their priority and fields.

    On the console networkd prints bare text; to the journal it sends PRIORITY=, INTERFACE=,
    ERRNO= and, for configuration syntax problems, CONFIG_FILE= and a MESSAGE_ID. The socket
    lives in the test's work directory and is bind-mounted over /run/systemd/journal/socket
    in networkd's mount namespace.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        path.chmod(0o666)  # networkd drops to the systemd-network user
        # net.unix.max_dgram_qlen is small (10 here): a burst of debug lines blocks networkd's
        # logging (for up to 10 s per line in log.c) unless the queue is drained and roomy.
        self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._drain, name=f"journal {path}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._socket.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._entries.append(parse_datagram(data))

    def entries(self) -> tuple[JournalEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()


# --- networkd ----------------------------------------------------------------------------

_START = r"""
set -eu
umask 022  # networkd reads its files and state directories as the systemd-network user
ns=$1 files=$2 machine_id=$3 journal=$4 networkd=$5 name=$6
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp /run/systemd/journal
chown -R systemd-network:systemd-network /run/systemd/netif
cp -R "$files" /run/systemd/network
chmod -R a+rX /run/systemd/network
if [ -n "$journal" ]; then
  touch /run/systemd/journal/socket
  mount --bind "$journal" /run/systemd/journal/socket
fi
mount --bind "$machine_id" /etc/machine-id
# bash for `exec -a`: the process is named `$name`, so that it can be found by that name.
exec ip netns exec "$ns" bash -c 'mount -o remount,ro /sys && exec -a "$1" "$0"' "$networkd" "$name"
"""


def _prepare(files: Mapping[str, bytes], seed: str, workdir: Path) -> tuple[Path, Path]:
    """The adapted files and the machine-id file, under `workdir`."""
    workdir.mkdir(parents=True)
    network = workdir / "network"
    network.mkdir()
    for name, content in files.items():
        (network / name).write_text(adapt_for_veth(content.decode()))
    identity = workdir / "machine-id"
    identity.write_text(machine_id(seed) + "\n")
    identity.chmod(0o444)  # bind-mounted as is; read after networkd drops privileges
    return network, identity


def start_detached(ns: str, files: Mapping[str, bytes], seed: str, workdir: Path, name: str) -> int:
    """networkd in `ns` that outlives this process; its PID. It logs to `workdir`/networkd.log.

    The process gets a session of its own (a Ctrl-C of the caller does not reach it) and is
    named `name` (argv[0]), so that it can be found again without this process.
    Without a journal socket to keep alive, it logs plain lines (with their time) to a file.
    """
    network, identity = _prepare(files, seed, workdir)
    env = {
        **os.environ,
        "SYSTEMD_LOG_LEVEL": "info",
        "SYSTEMD_LOG_TARGET": "console",
        "SYSTEMD_LOG_COLOR": "0",
        "SYSTEMD_LOG_TIME": "1",
    }
    with (workdir / "networkd.log").open("ab") as log:
        process = subprocess.Popen(
            [
                *("unshare", "-m", "--propagation", "private", "sh", "-c", _START, "sh"),
                *(ns, str(network), str(identity), "", str(NETWORKD), name),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    return process.pid


def link_state(pid: int, ifindex: int) -> Mapping[str, str]:
    """The state file networkd `pid` keeps for a link (ADMIN_STATE=, NETWORK_FILE=...), {} if none."""
    # The file is on a tmpfs of networkd's private mount namespace: reach it via its root.
    path = Path(f"/proc/{pid}/root/run/systemd/netif/links/{ifindex}")
    try:
        text = path.read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Networkd:
    """One systemd-networkd in network namespace `ns`, reading exactly `files`."""

    def __init__(self, ns: str, files: Mapping[str, bytes], seed: str, workdir: Path) -> None:
        self.ns = ns
        network, identity = _prepare(files, seed, workdir)
        self.journal = JournalSink(workdir / "journal.sock")
        self.console = workdir / "console.log"
        env = {**os.environ, "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_TARGET": "journal"}
        with self.console.open("wb") as console:
            # unshare, sh and ip all exec, so this PID ends up being networkd's own.
            self.process = subprocess.Popen(
                [
                    *("unshare", "-m", "--propagation", "private", "sh", "-c", _START, "sh"),
                    *(ns, str(network), str(identity), str(self.journal.path), str(NETWORKD), str(NETWORKD)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                env=env,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def entries(self) -> tuple[JournalEntry, ...]:
        return self.journal.entries()

    def console_output(self) -> str:
        """Anything printed instead of sent to the journal (a failed start, or lost log lines)."""
        return self.console.read_text(errors="replace")

    def link_state(self, ifindex: int) -> Mapping[str, str]:
        """networkd's state file for a link (ADMIN_STATE=, NETWORK_FILE=...), {} if none yet."""
        return link_state(self.process.pid, ifindex)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.journal.close()
