"""The `vm` subcommand's arguments and entry point (wired in generator/cli.py).

`kvmnet vm test [PROFILE] [--guest NAME]... [--host NAME]... [--image QCOW2] ...` builds the
profile (with seed images) into a work directory, builds each chosen machine's golden
image with `kvmnet image` unless one is given, starts a private libvirtd
(generator/live/libvirtd.py), boots each chosen guest from its generated domain XML and
seed, and each chosen host from a host image, runs the host's bootstrap, and checks
every machine with its generated suite over SSH (`kvmnet verify -t ssh://...`).

Exit codes as the rest of kvmnet (generator/session.py): 0 every suite passed; 1 the
profile has problems, a check failed, or a machine did not boot, answer SSH or finish
cloud-init; 2 usage (an unknown machine, an image missing, not root, a program or the
`vm` extra missing). The profile and the arguments are checked before the machine, so
that their problems show wherever the command runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from generator import extras, layout
from generator.errors import UsageError
from generator.pipeline import Planned, build
from generator.plan.types import Plan
from generator.resources import default_profile
from generator.session import Exit, Session
from generator.verify.command import print_report
from generator.vm.errors import VmTierError

if TYPE_CHECKING:
    from generator.vm.fleet import SuiteRun

NEEDED = (
    "ip",
    "unshare",
    "nsenter",
    "libvirtd",
    "virtlogd",
    "virsh",
    "qemu-img",
    "qemu-system-x86_64",
    "ssh",
    "tar",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Boot guests and hosts of a profile in VMs (a private libvirtd, software emulation) from "
        "the generated domain XML and NoCloud seed, and check them with their generated suites over SSH."
    )
    parser.add_argument("action", choices=("test",), help="test: boot, check, remove")
    parser.add_argument(
        "profile", nargs="?", type=Path, help="profile YAML (default: the bundled default profile)"
    )
    parser.add_argument(
        "--guest",
        action="append",
        default=[],
        metavar="NAME",
        help="a guest to boot (repeat; default: every guest)",
    )
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host to boot and bootstrap (repeat; default: none)",
    )
    parser.add_argument(
        "--image",
        type=Path,
        metavar="QCOW2",
        help="golden guest image for every chosen guest, used read-only through an overlay "
        "(default: build each guest's own with `kvmnet image`, into the work directory)",
    )
    parser.add_argument(
        "--host-image",
        type=Path,
        metavar="QCOW2",
        help="golden host image for every chosen host (default: build each host's own with `kvmnet image`)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="diskimage-builder's download cache for the images built here (default: kvmnet image's)",
    )
    parser.add_argument(
        "-i",
        "--identity",
        type=Path,
        metavar="KEY",
        help="SSH private key of the guests' user (its .pub is given to hosts' root); default: ssh's own",
    )
    parser.add_argument(
        "--workdir", type=Path, help="where the build, disks and sockets go (default: a temporary directory)"
    )


@dataclass(frozen=True)
class Outcome:
    machine: str
    role: str
    boot_ssh: float
    boot_cloud_init: float
    bootstrap: str  # "" for guests; the bootstrap's exit and last line for hosts
    suite: SuiteRun


def run(args: argparse.Namespace, session: Session) -> int:
    out, err = session.out, session.err
    profile = args.profile if args.profile is not None else default_profile()
    planned = session.plan(profile)
    guests = args.guest or ([] if args.host else [g.name for g in planned.plan.guests])
    known_guests = {g.name for g in planned.plan.guests}
    known_hosts = {h.name for h in planned.plan.hosts}
    unknown = [g for g in guests if g not in known_guests] + [h for h in args.host if h not in known_hosts]
    if unknown:
        raise UsageError.single(f"not a machine of {profile}: {', '.join(unknown)}")
    if not guests and not args.host:
        raise UsageError.single(f"{profile} has no guests; name hosts with --host")
    for flag, image, wanted in (
        ("--image", args.image, guests),
        ("--host-image", args.host_image, args.host),
    ):
        if wanted and image is not None and not image.is_file():
            raise UsageError.single(
                f"{flag} {image}: no such image (leave it out to build one with kvmnet image)"
            )
    if os.geteuid() != 0:
        raise UsageError.single("must run as root: it starts libvirtd in namespaces of its own")
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        raise UsageError.single(
            f"missing {', '.join(missing)}: apt-get install --no-install-recommends qemu-system-x86 "
            "qemu-utils libvirt-daemon-system libvirt-clients openssh-client",
        )
    # Only checked here, and imported only below: libvirt-python is an extra, and `kvmnet`
    # starts faster without it.
    extras.require("vm", "; libvirt-python builds against libvirt-dev, pkg-config and gcc from apt")
    from generator.live.libvirtd import LibvirtdError
    from generator.live.vms import VmError

    with tempfile.TemporaryDirectory(prefix="kvmnet-vm-") as scratch:
        work = (args.workdir or Path(scratch)).resolve()
        output = work / "output"
        images: dict[str, Path] = {}
        for role, names, given in (("guest", guests, args.image), ("host", args.host, args.host_image)):
            for name in names:
                if given is not None:
                    images[name] = given
                    continue
                images[name] = work / "images" / f"{role}-{name}.qcow2"
                code = _golden_image(planned, profile, role, name, images[name], args.cache, session)
                if code != Exit.OK:
                    return code
        build(profile, output, planned=planned, extras=frozenset({"seed-iso"}))
        try:
            outcomes = _boot_all(args, planned.plan, output, work, guests, images, err)
        except (VmError, LibvirtdError) as exc:
            raise VmTierError.of(str(exc)) from None
    _print(out, outcomes)
    return Exit.OK if all(o.suite.ok for o in outcomes) else Exit.PROBLEMS


def _golden_image(
    planned: Planned,
    profile: Path,
    role: str,
    machine: str,
    target: Path,
    cache: Path | None,
    session: Session,
) -> int:
    """`kvmnet image PROFILE --role ROLE --machine MACHINE -o TARGET`, as the user would run it."""
    from generator.image import command as image_command

    parser = argparse.ArgumentParser(prog="kvmnet image")
    image_command.add_arguments(parser)
    argv = [str(profile), "--role", role, "--machine", machine, "-o", str(target)]
    if cache is not None:
        argv += ["--cache", str(cache)]
    target.parent.mkdir(parents=True, exist_ok=True)
    session.err.print(
        f"kvmnet vm: no image given for {role} {machine}: building it (a few minutes)", markup=False
    )
    # Its problems are raised as kvmnet image raises them (2 for what this machine lacks,
    # 1 for a failed build); the plan is this command's, whose warnings were shown.
    return image_command.run(parser.parse_args(argv), session, planned)


def _boot_all(
    args: argparse.Namespace,
    plan: Plan,
    output: Path,
    work: Path,
    guests: list[str],
    images: dict[str, Path],
    err: Console,
) -> list[Outcome]:
    from generator.live.libvirtd import private_libvirtd
    from generator.vm.fleet import Fleet

    # KVM only when a chosen guest asks for it (virt-type: kvm): never because /dev/kvm exists.
    kvm = any(g.virt_type == "kvm" for g in plan.guests if g.name in guests)
    outcomes = []
    with (
        private_libvirtd(work, kvm=kvm) as daemon,
        Fleet(daemon, output, plan, args.identity, work / "fleet") as fleet,
    ):
        for name in guests:
            with (
                err.status(f"booting guest {name} (software emulation: about a minute)"),
                fleet.guest(name, images[name]) as booted,
            ):
                suite = fleet.verify(booted)
            outcomes.append(Outcome(name, "guest", booted.boot.ssh, booted.boot.cloud_init, "", suite))
        for name in args.host:
            with err.status(f"booting host {name}"), fleet.host(name, images[name]) as booted:
                started = time.monotonic()
                ran = fleet.bootstrap(booted)
                said = (ran.stdout + ran.stderr).strip().splitlines()
                note = (
                    f"exit {ran.returncode} in {time.monotonic() - started:.0f} s: {said[-1] if said else ''}"
                )
                if booted.ssh.run("test", "-e", layout.REBOOT_MARKER, check=False).returncode == 0:
                    # As an operator would: new kernel arguments show after a reboot.
                    note += f"; rebooted ({booted.reboot().ssh:.0f} s to SSH)"
                suite = fleet.verify(booted)
            outcomes.append(Outcome(name, "host", booted.boot.ssh, booted.boot.cloud_init, note, suite))
    return outcomes


def _print(out: Console, outcomes: list[Outcome]) -> None:
    table = Table(title="kvmnet vm test", title_justify="left")
    for column in (
        "machine",
        "role",
        "SSH after",
        "cloud-init done after",
        "bootstrap",
        "suite",
        "suite time",
    ):
        table.add_column(column)
    for o in outcomes:
        verdict = "passed" if o.suite.ok else f"FAILED (kvmnet verify exit {o.suite.exit_code})"
        table.add_row(
            Text(o.machine),
            o.role,
            f"{o.boot_ssh:.0f} s",
            f"{o.boot_cloud_init:.0f} s",
            Text(o.bootstrap or "-"),
            verdict,
            f"{o.suite.seconds:.0f} s",
        )
    out.print(table)
    for o in outcomes:
        if o.suite.report is not None:
            print_report(out, o.suite.report)
        elif not o.suite.ok:
            out.print(Text(o.suite.said))
