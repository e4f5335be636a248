"""Problems found in a profile, located by file, line, column and key path.

Every stage raises its own subclass of `KvmnetError`, carrying *all* the
problems it found (users fix a profile faster when one run lists everything).
Only generator/session.py prints them and chooses the exit code: 1 for a
`KvmnetError`, 2 for a `UsageError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

KeyPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: KeyPath) -> str:
    """`hosts.hv1.network.vlans."eno1.100".id`: keys with dots or odd characters are quoted."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
            continue
        text = part if _PLAIN_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out.append(("." if out else "") + text)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file
    column: int  # 1-based


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem: where it is, which key, and what would be valid."""

    message: str
    path: KeyPath = ()
    location: Location | None = None
    #: The problem is the key itself (unknown, duplicate, bad name), not its value.
    on_key: bool = False

    def format(self, severity: str = "") -> str:
        """`file:line:col: key.path: message`, with `severity: ` before the message if given."""
        loc = self.location
        if loc is None:
            where = ""
        elif loc.line == 0:  # a whole file or directory, e.g. an output path
            where = f"{loc.file}: "
        else:
            where = f"{loc.file}:{loc.line}:{loc.column}: "
        key = f"{format_path(self.path)}: " if self.path else ""
        label = f"{severity}: " if severity else ""
        return f"{where}{key}{label}{self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.message) if loc else ("", 0, 0, self.message)


class KvmnetError(Exception):
    """Base of every error a user can cause. Carries one or more diagnostics."""

    #: True when the command stopped before it changed anything (the summary line says so).
    wrote_nothing: ClassVar[bool] = True

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @classmethod
    def single(cls, message: str, path: KeyPath = (), location: Location | None = None) -> KvmnetError:
        return cls([Diagnostic(message, path, location)])


class UsageError(KvmnetError):
    """The command cannot run as asked: a bad argument, an unknown machine, not root, a
    program or an optional extra missing. Nothing in the profile needs fixing (exit 2)."""


class LoadError(KvmnetError):
    """The file could not be read as safe, well-formed YAML."""


class ProfileError(KvmnetError):
    """The YAML is well formed but does not match the profile schema."""


class PlanError(KvmnetError):
    """The profile is well typed but its parts do not fit together."""


class WriteError(KvmnetError):
    """The output could not be written (nothing was changed)."""
