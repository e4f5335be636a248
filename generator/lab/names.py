"""Names of everything a lab makes, all carrying its lab id, so that `lab down` finds them
again from the names alone, also after `lab up` was killed half-way.

- network namespaces: `kvl-<id>.<role>.<name>` (`ip netns list`); the id has no dot, so
  `kvl-<id>.` is a prefix no other lab's names share;
- processes: argv[0] `kvmnet-lab:<id>:<role>:<name>` (/proc/PID/cmdline);
- links: every link of a lab lives in one of its namespaces (veth pairs are created with
  both ends there), so it goes with its namespace;
- files: the state directory /run/kvmnet/lab/<id>/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from generator.errors import KvmnetError, UsageError

STATE_ROOT = Path("/run/kvmnet/lab")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")


class LabError(KvmnetError):
    """The lab cannot do what was asked (already up, not up, a command failed...)."""

    # `up` removes what it made when it fails, but `down` may leave survivors: do not claim.
    wrote_nothing = False


def lab_id_for(profile: Path) -> str:
    """The default lab id: the profile's file name, in the characters an id may have."""
    stem = re.sub(r"[^a-z0-9-]+", "-", profile.stem.lower()).strip("-")[:24] or "lab"
    return stem if stem[0].isalnum() else f"l{stem}"[:24]


def check_id(lab_id: str) -> str:
    if not _ID.match(lab_id):
        raise UsageError.single(
            f"lab id {lab_id!r} is not valid: 1–24 characters of a-z, 0-9 and '-', starting with a "
            "letter or digit (it becomes part of namespace and process names)",
            ("--id",),
        )
    return lab_id


@dataclass(frozen=True)
class Names:
    lab_id: str

    @property
    def prefix(self) -> str:
        """Every namespace of this lab, and only of this lab, starts with it."""
        return f"kvl-{self.lab_id}."

    @property
    def process_prefix(self) -> str:
        return f"kvmnet-lab:{self.lab_id}:"

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.lab_id

    @property
    def switch(self) -> str:
        return f"{self.prefix}switch"

    @property
    def probe(self) -> str:
        return f"{self.prefix}probe"

    def host(self, host: str) -> str:
        return f"{self.prefix}h.{host}"

    def guest(self, guest: str) -> str:
        return f"{self.prefix}g.{guest}"

    def traffic(self, number: int) -> str:
        """A namespace that sends or receives test traffic (made by `lab test`, removed after)."""
        return f"{self.prefix}t.{number}"

    def process(self, role: str, name: str) -> str:
        return f"{self.process_prefix}{role}:{name}"
