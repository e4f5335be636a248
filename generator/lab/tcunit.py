"""A host's generated `kvmnet-tc@.service`, run the way systemd would run one instance of it.

There is no systemd in a lab namespace, so the unit's own `ExecStartPre=` and
`ExecStart=` lines are run in order, with the instance specifiers filled in (`%I` the
device, `%i` its escaped name) and a leading `-` meaning "a failure is fine", as in
systemd.service(5). Paths the host's generated rootfs has (the `.tc` batch) are read
from the built output, where the bootstrap would have installed them; programs are the
machine's own.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from generator.lab.state import TcRun
from generator.live.commands import run


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    may_fail: bool


def _lines(text: str, section: str, key: str) -> list[str]:
    """Every `key=` line of `section`, in order (systemd allows a key many times). A line
    ending in a backslash goes on in the next, the backslash read as a space."""
    out, current = [], None
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and line.startswith(f"{key}="):
            out.append(line.split("=", 1)[1])
    return out


def commands(text: str, device: str, instance: str, rootfs: Path) -> tuple[Command, ...]:
    """The commands one instance runs on start, in order."""

    def fill(word: str) -> str:
        # Specifiers, then systemd's escapes: `%%` is a `%`, `$$` a `$`.
        word = re.sub(r"%([%Ii])", lambda m: {"%": "%", "I": device, "i": instance}[m.group(1)], word)
        word = word.replace("$$", "$")
        local = rootfs / word.lstrip("/")
        return str(local) if word.startswith("/") and local.exists() else word

    out = []
    for key in ("ExecStartPre", "ExecStart"):
        for line in _lines(text, "Service", key):
            may_fail = line.startswith("-")
            out.append(Command(tuple(fill(w) for w in shlex.split(line.lstrip("-"))), may_fail))
    return tuple(out)


def condition_met(text: str, device: str, instance: str, rootfs: Path) -> bool:
    for line in _lines(text, "Unit", "ConditionPathExists"):
        path = line.replace("%I", device).replace("%i", instance)
        if not (rootfs / path.lstrip("/")).exists():
            return False
    return True


def start(ns: str, host: str, text: str, device: str, instance: str, rootfs: Path) -> TcRun:
    """Start the unit's instance for `device` in namespace `ns`."""
    if not condition_met(text, device, instance, rootfs):
        return TcRun(host, device, False, "ConditionPathExists= not met: the unit would not run")
    for command in commands(text, device, instance, rootfs):
        result = run("ip", "netns", "exec", ns, *command.argv, check=False)
        if result.returncode != 0 and not command.may_fail:
            said = result.stderr.strip().replace("\n", " ")
            return TcRun(
                host, device, False, f"`{shlex.join(command.argv)}` exited {result.returncode}: {said}"
            )
    return TcRun(host, device, True, "")
