"""Processes of the live tiers that outlive the program that started them: named so that
they can be found again, and stopped by PID.

A process started for a lab is named by its argv[0] (`exec -a`), which /proc/PID/cmdline
shows; a process in a namespace is also found by the namespace (`ip netns pids`), which
catches anything started there by other means.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from generator.live.commands import run

#: bash, for `exec -a`: runs "$@" named "$0".
_NAMED = 'exec -a "$0" "$@"'


def named_in(ns: str, name: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` in namespace `ns` as a process named `name`."""
    return ["ip", "netns", "exec", ns, "bash", "-c", _NAMED, name, *argv]


def spawn(ns: str, name: str, argv: Sequence[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """`argv` in namespace `ns`, named `name`, in a session of its own; output to `log` or nowhere."""
    with log.open("ab") if log else open(os.devnull, "wb") as out:
        return subprocess.Popen(
            named_in(ns, name, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def named(prefix: str) -> list[int]:
    """PIDs of the processes whose argv[0] starts with `prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cmdline(int(entry.name)).startswith(prefix):
            found.append(int(entry.name))
    return sorted(found)


def in_namespace(ns: str) -> list[int]:
    """PIDs of the processes in network namespace `ns` (none if it does not exist)."""
    result = run("ip", "netns", "pids", ns, check=False)
    return sorted(int(pid) for pid in result.stdout.split() if pid.isdigit())


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (which holds no namespace, file or memory)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may contain any.
    return status.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def stop(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGTERM each of `pids`, SIGKILL what is left after `timeout`; the PIDs still alive after that."""
    pending = [pid for pid in pids if alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            pending = [pid for pid in pending if alive(pid)]
            if pending:
                time.sleep(0.05)
        if not pending:
            break
    return pending
