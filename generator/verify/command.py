"""The `verify` subcommand's arguments and entry point (wired in generator/cli.py).

Exit codes (generator/session.py): 0 every check passed (some may be skipped, with the
reason shown); 1 a check failed, or none passed; 2 the command cannot run (bad target,
unknown machine, no generated suites, the `verify` extra not installed: a `VerifyError`
or a `UsageError`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from generator import extras
from generator.errors import UsageError
from generator.session import Exit, Session
from generator.verify.runner import Report, verify


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the check suites `kvmnet build` wrote (OUTPUT/tests/) against a machine: is it what "
        "the profile says? Name the machine(s) the target is; a fleet run through Ansible may name none."
    )
    parser.add_argument(
        "machines", nargs="*", metavar="MACHINE", help="host or guest of the profile that the target is"
    )
    parser.add_argument(
        "-t",
        "--target",
        default="local",
        help="local (default), ssh://[user@]host[:port], netns:NAME, or ansible[:INVENTORY] "
        "(default inventory: OUTPUT/inventory.yaml)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("output"),
        help="kvmnet's output directory (default: ./output)",
    )
    parser.add_argument(
        "--scope",
        choices=("all", "netns"),
        default="all",
        help="netns: only what a network namespace shows (devices, addresses, qdiscs, its sysctls)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write a JUnit XML report")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", dest="json_report", help="also write a JSON report"
    )
    parser.add_argument(
        "--sudo",
        action="store_true",
        help="run the checks through sudo on the machine (an SSH login that is not root)",
    )
    parser.add_argument(
        "-n", "--workers", type=int, metavar="N", help="run N machines' suites at once (pytest-xdist)"
    )


def run(args: argparse.Namespace, session: Session) -> int:
    out, err = session.out, session.err
    if args.workers is not None and args.workers < 1:
        raise UsageError.single("--workers must be at least 1")
    extras.require("verify")
    with err.status(f"checking {', '.join(args.machines) or 'the fleet'} on {args.target}"):
        report = verify(
            args.output,
            args.machines,
            args.target,
            scope=args.scope,
            junit=args.junit,
            json_report=args.json_report,
            workers=args.workers,
            sudo=args.sudo,
        )
    print_report(out, report)
    if not report.ok and not any(r.outcome == "failed" for r in report.results):
        err.print("kvmnet verify: no check passed, so nothing was proven (see the reasons above)")
    return Exit.OK if report.ok else Exit.PROBLEMS


def print_report(out: Console, report: Report) -> None:
    summary = Table(title="kvmnet verify", title_justify="left")
    for column in ("machine", "passed", "failed", "skipped"):
        summary.add_column(column, justify="left" if column == "machine" else "right")
    for machine in report.machines:
        summary.add_row(
            Text(machine),
            str(report.count(machine, "passed")),
            str(report.count(machine, "failed")),
            str(report.count(machine, "skipped")),
        )
    out.print(summary)
    failed = [r for r in report.results if r.outcome == "failed"]
    if failed:
        table = Table(title="failed", title_justify="left")
        for column in ("machine", "check", "message"):
            table.add_column(column, overflow="fold")
        for r in failed:
            table.add_row(Text(r.machine), Text(r.check), Text(r.message))
        out.print(table)
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in report.results:
        if r.outcome == "skipped":
            skipped.setdefault((r.machine, r.message), []).append(r.check)
    if skipped:
        table = Table(title="skipped, and why", title_justify="left")
        for column in ("machine", "checks", "reason"):
            table.add_column(column, overflow="fold")
        for (machine, reason), checks in skipped.items():
            table.add_row(Text(machine), Text(", ".join(checks)), Text(reason))
        out.print(table)
