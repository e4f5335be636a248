"""A lab's state directory: /run/kvmnet/lab/<id>/state.json and the files beside it.

`lab up` records each namespace and process *before* it makes it, and saves the file
after each step (atomically), so that a `lab up` killed at any point leaves a record
of everything it may have made. `lab down` does not depend on it: it also finds the
lab's namespaces and processes by name (see names.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.lab.names import LabError, Names

STATE_FILE = "state.json"


@dataclass
class Process:
    pid: int
    name: str  # its argv[0]
    ns: str
    log: str


@dataclass
class TcRun:
    """What running a host's kvmnet-tc@ unit did."""

    host: str
    device: str
    ok: bool
    detail: str  # the failing command and its error, or ""


@dataclass
class State:
    lab_id: str
    profile: str
    digest: str
    phase: str = "starting"  # "starting" | "up"
    namespaces: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    tc: list[TcRun] = field(default_factory=list)
    #: feature -> why this kernel lacks it (segments.missing_features), as probed by `up`
    missing: dict[str, str] = field(default_factory=dict)
    cannot_queue: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: what the lab could not do as the generated files say (no DHCP server, a route refused)
    notes: list[list[str]] = field(default_factory=list)  # [outcome, subject, message]

    @property
    def names(self) -> Names:
        return Names(self.lab_id)

    @property
    def directory(self) -> Path:
        return self.names.state_dir

    @property
    def output(self) -> Path:
        """The output tree `lab up` built from the profile: what the lab realizes."""
        return self.directory / "output"

    def networkd(self, host: str) -> Process | None:
        return next((p for p in self.processes if p.name == self.names.process("networkd", host)), None)

    def save(self) -> None:
        path = self.directory / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(temporary, path)


def load(names: Names) -> State:
    path = names.state_dir / STATE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError.single(
            f"lab {names.lab_id!r} is not up (no {path}): run `kvmnet lab up` first"
        ) from None
    except (OSError, ValueError) as exc:
        raise LabError.single(f"{path}: cannot be read ({exc}); `kvmnet lab down` removes the lab") from None
    return State(
        **{
            **data,
            "processes": [Process(**p) for p in data.get("processes", [])],
            "tc": [TcRun(**t) for t in data.get("tc", [])],
        }
    )
