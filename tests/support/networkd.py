"""The bench the networkd tests use, and the vocabulary (Check, Result, Tolerance) they use to
compare what the kernel ended up with with what they expect.

The machinery (namespaces, networkd processes, the read-back) lives in `generator.live`,
shared with `kvmnet lab`; what to expect comes from the plan, in tests/test_networkd_real.py.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from generator.live.commands import COMMAND_TIMEOUT, ping, run, wait_for
from generator.live.kernel import Kernel, probe
from generator.live.namespaces import Lab
from generator.live.networkd import (
    INVALID_CONFIGURATION,
    NETWORKD,
    RUN_NETWORK,
    WARNING,
    JournalEntry,
    JournalSink,
    Networkd,
    adapt_for_veth,
    machine_id,
    parse_datagram,
)
from generator.live.snapshot import Link, PortVlans, Snapshot, read

__all__ = [
    "COMMAND_TIMEOUT",
    "INVALID_CONFIGURATION",
    "MISSING",
    "NETWORKD",
    "RUN_NETWORK",
    "WARNING",
    "Check",
    "JournalEntry",
    "JournalSink",
    "Kernel",
    "Lab",
    "Link",
    "Networkd",
    "Observed",
    "PortVlans",
    "Reader",
    "Result",
    "Snapshot",
    "Tolerance",
    "adapt_for_veth",
    "any_ip",
    "info",
    "ip",
    "machine_id",
    "on_link",
    "parse_datagram",
    "ping",
    "probe",
    "read",
    "run",
    "wait_for",
]

# --- comparing what is there with what is expected ---------------------------------------

MISSING = "(no such device)"


@dataclass(frozen=True)
class Observed:
    """Everything known about one device: the kernel's view, networkd's log and state file."""

    link: Link | None
    snapshot: Snapshot
    entries: tuple[JournalEntry, ...]
    state: Mapping[str, str]


Reader = Callable[[Observed], object]


@dataclass(frozen=True)
class Check:
    label: str
    expected: object
    actual: Reader
    blocked: str | None = None  # why this cannot be verified on this machine


@dataclass(frozen=True)
class Result:
    check: Check
    actual: object

    @property
    def wrong(self) -> bool:
        return self.check.blocked is None and self.actual != self.check.expected


@dataclass(frozen=True)
class Tolerance:
    """A networkd warning that is the known consequence of a feature this kernel lacks."""

    interface: str
    message: str  # regex for the text after "<interface>: "

    def covers(self, entry: JournalEntry) -> bool:
        text = entry.message.removeprefix(f"{self.interface}: ")
        return entry.interface == self.interface and re.fullmatch(self.message, text) is not None


def on_link(read_link: Callable[[Link], object]) -> Reader:
    return lambda observed: MISSING if observed.link is None else read_link(observed.link)


def info(attr: str, convert: Callable[[Any], object] = lambda value: value) -> Reader:
    """An IFLA_INFO_DATA attribute (None when the kernel does not report it)."""
    return on_link(lambda link: None if link.info.get(attr) is None else convert(link.info[attr]))


def ip(text: object) -> str:
    return str(ipaddress.ip_address(str(text)))


def any_ip(*attrs: str) -> Reader:
    """The first of several attributes that is set (IPv4 and IPv6 come in different ones)."""
    return on_link(lambda link: next((ip(link.info[a]) for a in attrs if link.info.get(a) is not None), None))
