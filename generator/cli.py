"""The `kvmnet` command: its arguments, and which sub-command runs.

What every sub-command shares, the exit codes and how problems, warnings and internal
errors are printed, is generator/session.py's; sub-commands print their own results.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from generator import __version__
from generator.errors import KvmnetError, UsageError
from generator.image import command as image_command
from generator.lab import command as lab_command
from generator.layout import MANIFEST
from generator.live import graphviz
from generator.model import Profile
from generator.pipeline import Built, Planned, artifacts_for, build
from generator.plan import report
from generator.pxe import command as pxe_command
from generator.renderers import topology
from generator.resources import default_profile
from generator.session import Exit, Session, consoles
from generator.verify import command as verify_command
from generator.vm import command as vm_command
from generator.write import ChangeKind, patch, recorded_extras


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvmnet",
        description="Turn one YAML profile of a KVM fleet into what builds, boots and checks it.",
    )
    parser.add_argument("--version", action="version", version=f"kvmnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def profile_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "profile", nargs="?", type=Path, help="profile YAML (default: the bundled default profile)"
        )

    b = commands.add_parser("build", help="render every artifact into the output directory")
    profile_arg(b)
    b.add_argument(
        "-o", "--output", type=Path, default=Path("output"), help="output directory (default: ./output)"
    )
    b.add_argument(
        "--check", action="store_true", help="write nothing; list what would change and exit 1 on drift"
    )
    b.add_argument(
        "--diff",
        action="store_true",
        help="like --check, and show each change as a unified diff (binary files are only named)",
    )
    b.add_argument(
        "--seed-iso",
        action=argparse.BooleanOptionalAction,
        help="also write each guest's NoCloud seed image (guests/<guest>/seed.iso); "
        "default: as the output's manifest.json records",
    )

    v = commands.add_parser("validate", help="check a profile and report every problem")
    profile_arg(v)

    p = commands.add_parser("plan", help="print the plan: every derived value")
    profile_arg(p)
    p.add_argument(
        "--json", action="store_true", help="print as JSON, keyed by name like the profile (default: tables)"
    )

    commands.add_parser("schema", help="print the JSON Schema of the profile (for editors)")

    g = commands.add_parser("graph", help="draw the fleet: hosts, devices, overlays, tunnels, guests")
    profile_arg(g)
    g.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write FILE.svg (needs graphviz's dot) or FILE.dot; default: DOT on standard output",
    )

    verify_command.add_arguments(
        commands.add_parser("verify", help="check machines against the generated suites (output/tests/)")
    )
    lab_command.add_arguments(
        commands.add_parser("lab", help="realize a profile in network namespaces and test it (root)")
    )
    image_command.add_arguments(
        commands.add_parser("image", help="build a golden image (diskimage-builder, generated elements)")
    )
    vm_command.add_arguments(
        commands.add_parser("vm", help="boot generated guests and hosts in VMs and run their suites (root)")
    )
    pxe_command.add_arguments(commands.add_parser("pxe", help="run the fleet's PXE boot service (root)"))
    return parser


def _profile(args: argparse.Namespace) -> Path:
    return args.profile if args.profile is not None else default_profile()


def _extras(args: argparse.Namespace) -> tuple[frozenset[str], str | None]:
    """The optional renderers of this build, and a note when the output's record and the
    command line have a say. Like a configured build directory, an output remembers its
    options (manifest.json): a flag left out is taken from there, so `build --check`
    compares like with like and says what `build` would do; `--no-seed-iso` drops seeds."""
    recorded = recorded_extras(args.output)
    had = recorded is not None and "seed-iso" in recorded
    where = args.output / MANIFEST
    note: str | None = None
    if args.seed_iso is None:
        if had:
            note = f"--seed-iso: as {where} records (--no-seed-iso leaves the seed images out)"
        return frozenset({"seed-iso"} if had else set()), note
    if recorded is not None and args.seed_iso != had:
        note = (
            f"--seed-iso: {where} records a build without it"
            if args.seed_iso
            else f"--no-seed-iso: {where} records a build with --seed-iso"
        )
    return frozenset({"seed-iso"} if args.seed_iso else set()), note


#: How `build --check` marks each kind of change.
_SIGNS = {ChangeKind.ADD: "+", ChangeKind.REMOVE: "-", ChangeKind.MODIFY: "~", ChangeKind.MODE: "m"}


def _report_build(console: Console, built: Built, output: Path, check: bool, show_diff: bool) -> int:
    files = len(built.artifacts)
    hosts = len(built.planned.plan.hosts)
    if check:
        wanted = {a.path: a for a in built.artifacts}
        for change in built.changes:
            sign = _SIGNS[change.kind]
            console.print(
                f"{sign} {change.path}{' ' + change.detail if change.detail else ''}", highlight=False
            )
            if show_diff:
                for line in patch(output, wanted, change):
                    console.print(line, highlight=False)
        if built.changes:
            console.print(f"{len(built.changes)} file(s) would change in {output}", highlight=False)
            return Exit.PROBLEMS
        console.print(f"{output} is up to date ({files} files)", highlight=False)
        return Exit.OK
    if built.changes:
        console.print(
            f"wrote {output}: {files} files for {hosts} host(s), {len(built.changes)} changed",
            highlight=False,
        )
    else:
        console.print(f"{output} is up to date ({files} files); nothing written", highlight=False)
    return Exit.OK


def _graph(planned: Planned, profile: Path, output: Path | None) -> int:
    if output is not None and output.suffix not in (".svg", ".dot", ".gv"):
        raise UsageError.single(f"-o {output}: write .svg, .dot or .gv")
    text = topology.graph(planned.plan, f"kvmnet: {profile.name}")
    if output is None:
        sys.stdout.write(text)
    elif output.suffix == ".svg":
        output.write_bytes(graphviz.to_svg(text))
    else:
        output.write_text(text)
    return Exit.OK


def _schema() -> int:
    schema = Profile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kvmnet profile"
    sys.stdout.write(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    return Exit.OK


def _run(args: argparse.Namespace, session: Session) -> int:
    out = session.out
    if args.command == "schema":
        return _schema()
    if args.command == "verify":
        return verify_command.run(args, session)
    if args.command == "lab":
        return lab_command.run(args, session)
    if args.command == "image":
        return image_command.run(args, session)
    if args.command == "vm":
        return vm_command.run(args, session)
    if args.command == "pxe":
        return pxe_command.run(args, session)
    profile = _profile(args)
    planned = session.plan(profile)
    if args.command == "validate":
        artifacts_for(planned)  # what only rendering can refuse (a preseed's size), as build does
        out.print(
            f"{profile}: ok ({len(planned.plan.hosts)} host(s), {len(planned.plan.overlays)} overlay(s), "
            f"{len(planned.plan.guests)} guest(s))"
        )
        return Exit.OK
    if args.command == "plan":
        if args.json:
            shown = report.data(planned.plan, planned.warnings)
            sys.stdout.write(json.dumps(shown, indent=2, sort_keys=True) + "\n")
        else:
            for table in report.tables(planned.plan):
                # A terminal wraps a table to its width; a pipe or a log gets it whole
                # (rich would wrap it to 80 columns).
                if not out.is_terminal:
                    out.width = max(
                        80, out.measure(table, options=out.options.update(max_width=1000)).maximum
                    )
                out.print(table)
        return Exit.OK
    if args.command == "graph":
        return _graph(planned, profile, args.output)
    extras, note = _extras(args)
    if note:
        out.print(note)
    check = args.check or args.diff
    built = build(profile, args.output, check=check, planned=planned, extras=extras)
    return _report_build(out, built, args.output, check, args.diff)


def run(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, usage errors (2)
        return int(exc.code or 0)
    out, err = consoles()
    session = Session(args.command, out, err)
    try:
        return _run(args, session)
    except KvmnetError as exc:
        return session.problems(exc)
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except Exception as exc:  # a bug: say so briefly, unless asked for the traceback
        if args.debug:
            raise
        return session.internal(exc)


def main() -> int:
    # A build allocates hundreds of thousands of small, acyclic objects; collecting the
    # youngest generation every 700 allocations costs ~10% of a large build for nothing.
    gc.set_threshold(100_000, 50, 100)
    return run(sys.argv[1:])
