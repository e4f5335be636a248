"""What `lab test` found: one result per check, the JSON report, and the tables shown."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.table import Table

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
#: Areas in the order they run and are shown.
AREAS = (
    "networkd",
    "devices",
    "setup",
    "tc",
    "reach",
    "isolation",
    "mtu",
    "shaping",
    "policing",
    "libvirt",
    "suite",
)
#: Above this many results, the table lists only failures and skips (the JSON has all).
FULL_TABLE_UP_TO = 40


@dataclass(frozen=True)
class Result:
    area: str
    subject: str
    outcome: str  # PASSED | FAILED | SKIPPED
    message: str
    #: measured numbers, for the JSON report (rates in bit/s, sizes in bytes)
    values: Mapping[str, float | int | str] = field(default_factory=dict)


def passed(area: str, subject: str, message: str, **values: float | int | str) -> Result:
    return Result(area, subject, PASSED, message, values)


def failed(area: str, subject: str, message: str, **values: float | int | str) -> Result:
    return Result(area, subject, FAILED, message, values)


def skipped(area: str, subject: str, message: str, **values: float | int | str) -> Result:
    return Result(area, subject, SKIPPED, message, values)


@dataclass(frozen=True)
class Report:
    lab_id: str
    profile: str
    results: tuple[Result, ...]
    timings: Mapping[str, float]

    @property
    def ok(self) -> bool:
        return all(r.outcome != FAILED for r in self.results)

    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def write(self, path: Path) -> None:
        data = {
            "lab": self.lab_id,
            "profile": self.profile,
            "ok": self.ok,
            "counts": dict(sorted(self.counts().items())),
            "timings_s": dict(self.timings),
            "results": [asdict(r) for r in self.results],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _order(results: Iterable[Result]) -> list[Result]:
    rank = {area: n for n, area in enumerate(AREAS)}
    return sorted(results, key=lambda r: rank.get(r.area, len(AREAS)))


def summary_table(report: Report) -> Table:
    table = Table(title=f"lab {report.lab_id}: {report.profile}", title_justify="left")
    for column in ("area", "passed", "failed", "skipped"):
        table.add_column(column, justify="left" if column == "area" else "right")
    for area in [a for a in AREAS if any(r.area == a for r in report.results)]:
        counts = Counter(r.outcome for r in report.results if r.area == area)
        table.add_row(area, str(counts[PASSED]), str(counts[FAILED]), str(counts[SKIPPED]))
    return table


def detail_table(report: Report) -> Table:
    """Every result for a small lab; failures and skips only for a large one."""
    full = len(report.results) <= FULL_TABLE_UP_TO
    rows = [r for r in _order(report.results) if full or r.outcome != PASSED]
    table = Table(title=None if full else "failures and skips", title_justify="left")
    for column in ("area", "subject", "outcome", "message"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.area, r.subject, r.outcome, r.message)
    return table


def shaping_table(report: Report) -> Table | None:
    rows = [r for r in report.results if r.area == "shaping" and "configured_bps" in r.values]
    if not rows:
        return None
    table = Table(title="shaping: measured vs configured", title_justify="left")
    for column in ("interface", "configured", "qdisc sent", "deviation", "TCP goodput", "goodput expected"):
        table.add_column(column, justify="left" if column == "interface" else "right")
    for r in rows:
        v = r.values
        table.add_row(
            r.subject,
            _mbit(v.get("configured_bps")),
            _mbit(v.get("measured_bps")),
            f"{float(v.get('deviation', 0.0)):+.1%}" if "deviation" in v else "-",
            _mbit(v.get("goodput_bps")),
            _mbit(v.get("goodput_expected_bps")),
        )
    return table


def _mbit(value: float | int | str | None) -> str:
    return "-" if value is None or isinstance(value, str) else f"{value / 1e6:.1f} Mbit/s"
