"""The `lab` subcommand's arguments and entry point (wired in generator/cli.py).

Exit codes as the rest of kvmnet (generator/session.py): 0 success (for `test`: nothing
failed), 1 a problem (the profile's, a check failed, the lab is not up, or it exists
already), 2 usage (a bad id, not root, a program or the `lab` extra missing).

`up` reads the profile first: its problems and warnings show as `kvmnet build` shows them,
also on a machine where the lab cannot run.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from generator import extras
from generator.errors import Diagnostic, UsageError
from generator.lab.names import Names, check_id, lab_id_for
from generator.live.networkd import NETWORKD
from generator.pipeline import Planned
from generator.resources import default_profile
from generator.session import Exit, Session

#: What `lab up` runs: iproute2, util-linux's unshare, bash (for `exec -a`), systemd-networkd.
NEEDED = ("ip", "bridge", "tc", "unshare", "bash", "sysctl", "ss")
GRAPH_SUFFIXES = (".svg", ".dot", ".gv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("up", "test", "down"),
        help="up: realize the profile in network namespaces; test: check it; down: remove it",
    )
    parser.add_argument(
        "profile", nargs="?", type=Path, help="profile YAML (default: the bundled default profile)"
    )
    parser.add_argument(
        "--id",
        dest="lab_id",
        help="lab id, part of every namespace and process name (default: the profile's file name)",
    )
    parser.add_argument(
        "--report", type=Path, help="test: write the JSON report here (default: in the lab's state directory)"
    )
    parser.add_argument(
        "--graph",
        type=Path,
        metavar="FILE",
        help="up: also draw the lab's topology, as `kvmnet graph` does (FILE.svg, or FILE.dot)",
    )


class _Steps:
    """`up`'s progress, as a rich progress bar per phase."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def begin(self, what: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.task = self.progress.add_task(what, total=max(total, 1))

    def advance(self) -> None:
        if self.task is not None:
            self.progress.advance(self.task)


def run(args: argparse.Namespace, session: Session) -> int:
    out, err = session.out, session.err
    profile: Path = args.profile if args.profile is not None else default_profile()
    # `test` and `down` find the lab by its id: a profile broken since `up` does not stop them.
    planned = session.plan(profile) if args.action == "up" else None
    names = Names(check_id(args.lab_id or lab_id_for(profile)))
    if args.graph is not None and args.graph.suffix not in GRAPH_SUFFIXES:
        raise UsageError.single(f"--graph {args.graph}: write .svg, .dot or .gv")
    if os.geteuid() != 0:
        raise UsageError.single("must run as root: it creates network namespaces and runs systemd-networkd")
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if not NETWORKD.exists():
        missing.append(str(NETWORKD))
    if missing:
        raise UsageError.single(
            f"missing programs: {', '.join(missing)} (Debian: iproute2, util-linux, systemd)"
        )
    if planned is not None:
        extras.require("lab")
        code = _up(planned, profile, names, session)
        if code == Exit.OK and args.graph is not None:
            _graph(planned, profile, args.graph, out)
        return code
    if args.action == "test":
        extras.require("lab")
        return _test(names, args.report, out, err)
    return _down(names, out)


# The lab's machinery (pyroute2, the checks) is imported when a lab command runs, not when
# any kvmnet command starts: `kvmnet build` in CI should not pay for it.


def _up(planned: Planned, profile: Path, names: Names, session: Session) -> int:
    from generator.lab.up import up

    warnings: list[str] = []
    out, err = session.out, session.err
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=not err.is_terminal,
    ) as progress:
        state = up(profile, names, _Steps(progress), warnings.append, planned)
    for warning in warnings:  # after the progress bars, which would overwrite them
        session.warn(Diagnostic(warning))
    hosts = sum(1 for ns in state.namespaces if ns.startswith(f"{names.prefix}h."))
    guests = sum(1 for ns in state.namespaces if ns.startswith(f"{names.prefix}g."))
    total = sum(state.timings.values())
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in state.timings.items())
    out.print(
        f"lab {names.lab_id} is up: {hosts} hypervisor(s), {guests} guest(s), "
        f"{len(state.namespaces)} namespaces in {total:.1f} s ({phases})",
        markup=False,
        highlight=False,
    )
    out.print(f"state: {state.directory}", markup=False, highlight=False)
    for name, reason in sorted(state.missing.items()):
        out.print(f"this kernel lacks {name}: {reason}", markup=False, highlight=False)
    out.print(f"next: kvmnet lab test --id {names.lab_id}", markup=False, highlight=False)
    return Exit.OK


def _graph(planned: Planned, profile: Path, path: Path, out: Console) -> None:
    from generator.live import graphviz
    from generator.renderers import topology

    text = topology.graph(planned.plan, f"kvmnet lab: {profile.name}")
    if path.suffix == ".svg":
        path.write_bytes(graphviz.to_svg(text))
    else:
        path.write_text(text, encoding="utf-8")
    out.print(f"topology: {path}", markup=False, highlight=False)


def _test(names: Names, report_path: Path | None, out: Console, err: Console) -> int:
    from generator.lab.checks import run_all
    from generator.lab.results import detail_table, shaping_table, summary_table

    with err.status("testing") as status:
        report, path = run_all(names, report_path, lambda phase: status.update(f"testing: {phase}"))
    out.print(detail_table(report))
    if (table := shaping_table(report)) is not None:
        out.print(table)
    out.print(summary_table(report))
    counts = report.counts()
    verdict = "passed" if report.ok else "FAILED"
    out.print(
        f"lab {names.lab_id}: {verdict}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped; report: {path}",
        markup=False,
        highlight=False,
    )
    return Exit.OK if report.ok else Exit.PROBLEMS


def _down(names: Names, out: Console) -> int:
    from generator.lab.down import down

    removed = down(names)
    if not (removed.namespaces or removed.processes or removed.state_dir):
        out.print(f"lab {names.lab_id}: nothing to remove", markup=False, highlight=False)
    else:
        out.print(
            f"lab {names.lab_id} is down: removed {len(removed.namespaces)} namespaces, "
            f"stopped {len(removed.processes)} processes",
            markup=False,
            highlight=False,
        )
    return Exit.OK
