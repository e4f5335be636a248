"""The `image` subcommand's arguments and entry point (wired in generator/cli.py).

`kvmnet image [PROFILE] --role guest|host [--machine NAME] [-o FILE.qcow2]` builds the
profile, then runs diskimage-builder with the machine's generated element
(docs/images.md). Exit codes as the rest of kvmnet (generator/session.py): 0 built (or
`--dry-run` printed), 1 the profile has problems or the build failed, 2 usage (unknown
machine, a program or the mirror missing, not root without sudo).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from generator import layout
from generator.errors import UsageError
from generator.image import deploy, dib, mirror, shims
from generator.image.errors import ImageError
from generator.layout import elements_dir
from generator.pipeline import Planned, build
from generator.resources import default_profile
from generator.session import Exit, Session

ROLES = ("guest", "host", "deploy")
#: Options that name a machine of the profile: the deploy ramdisk has none.
MACHINE_OPTIONS = ("profile", "machine", "output_dir", "vagrant", "vagrant_key", "box")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "profile", nargs="?", type=Path, help="profile YAML (default: the bundled default profile)"
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        required=True,
        help="a guest image, a hypervisor image, or the deploy ramdisk (kernel + initramfs; no profile)",
    )
    parser.add_argument(
        "--machine",
        help="the guest or host of the profile (default: the only one of that role, if there is one)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="the image to write (default: ./kvmnet-<role>-<machine>.qcow2); --role deploy: "
        "the PREFIX of PREFIX.kernel and PREFIX.initramfs (default: ./kvmnet-deploy)",
    )
    parser.add_argument(
        "--mirror",
        metavar="URL",
        help="Debian mirror for the image (default: the one this machine's apt sources use for bookworm)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="write the profile's output tree here and keep it (default: a temporary directory)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="diskimage-builder's download cache and lock files (default: ~/.cache/kvmnet/dib)",
    )
    parser.add_argument(
        "--vagrant",
        action="store_true",
        help="add the user `vagrant` with Vagrant's insecure key and password-less sudo (for a Vagrant box)",
    )
    parser.add_argument(
        "--vagrant-key",
        type=Path,
        metavar="FILE",
        help="the public key for --vagrant (default: Vagrant's own)",
    )
    parser.add_argument(
        "--box",
        type=Path,
        metavar="FILE.box",
        help="also pack the image as a vagrant-libvirt box (implies --vagrant); see docs/vagrant.md",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="give up after this long (default: 3600)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the disk-image-create command and environment, build nothing",
    )


def _say(console: Console, message: str) -> None:
    console.print(f"kvmnet image: {message}", markup=False, highlight=False)


def _cache(args: argparse.Namespace) -> Path:
    if args.cache is not None:
        return Path(args.cache).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kvmnet" / "dib"


def _machine(args: argparse.Namespace, profile: Path, names: list[str]) -> str:
    listed = ", ".join(names) or "none"
    if args.machine is None:
        if len(names) != 1:
            raise UsageError.single(
                f"{profile} has {len(names)} {args.role}s ({listed}): pick one with --machine"
            )
        return names[0]
    if args.machine not in names:
        raise UsageError.single(
            f"{profile} has no {args.role} named {args.machine!r} ({args.role}s: {listed})"
        )
    return str(args.machine)


def _mirrors(args: argparse.Namespace) -> mirror.Mirrors:
    if args.mirror:
        if not args.mirror.startswith(mirror.SCHEMES):
            raise UsageError.single(
                f"--mirror {args.mirror}: give an http://, https://, ftp:// or file:/ URL"
            )
        try:  # the security archive as apt has it, if it has one
            security = mirror.find(dib.RELEASE).security
        except mirror.MirrorError:
            security = None
        return mirror.Mirrors(args.mirror.rstrip("/"), security, "--mirror")
    try:
        return mirror.find(dib.RELEASE)
    except mirror.MirrorError as exc:
        raise UsageError.single(str(exc)) from None


def _vagrant_key(args: argparse.Namespace) -> Path | None:
    if not (args.vagrant or args.vagrant_key or args.box):
        return None
    key: Path | None = args.vagrant_key or dib.vagrant_key()
    if key is None or not key.is_file():
        raise UsageError.single(
            "--vagrant: no Vagrant insecure public key found (install vagrant, or give --vagrant-key)"
        )
    return key


def run(args: argparse.Namespace, session: Session, planned: Planned | None = None) -> int:
    """Build the image; `planned`: the profile as a calling command (`kvmnet vm`) planned it."""
    out, err = session.out, session.err
    if args.role == "deploy":
        return _run_deploy(args, out, err)
    profile: Path = args.profile if args.profile is not None else default_profile()
    planned = planned or session.plan(profile)
    names = [m.name for m in (planned.plan.guests if args.role == "guest" else planned.plan.hosts)]
    machine = _machine(args, profile, names)
    if args.role == "host":
        distro = next(h.install.distro for h in planned.plan.hosts if h.name == machine)
        if distro != dib.DISTRO:
            raise UsageError.single(
                f"host {machine} is installed as {distro}; kvmnet image builds {dib.DISTRO} images only "
                f"(its bootstrap would run {distro}'s boot-loader tools)"
            )
    mirrors = _mirrors(args)
    key = _vagrant_key(args)

    needs = shims.detect()
    output: Path = (args.output or Path(f"kvmnet-{args.role}-{machine}.qcow2")).resolve()
    with tempfile.TemporaryDirectory(prefix="kvmnet-image-") as scratch:
        tree = Path(args.output_dir).resolve() if args.output_dir else Path(scratch) / "output"
        shim_dir = Path(scratch) / "shims" if needs.shims else None
        rec = dib.recipe(args.role, tree / elements_dir(machine), mirrors, _cache(args), shim_dir, key)
        if args.dry_run:
            _dry_run(out, rec, output, needs, mirrors)
            return Exit.OK
        problem = _check_machine(needs)
        program = dib.program()
        if not problem and program is None:
            problem = (
                "disk-image-create is not installed: needs the 'images' extra: "
                "pip install 'kvmnet[images]' (diskimage-builder)"
            )
        if problem or program is None:
            raise UsageError.single(problem)
        build(profile, tree, planned=planned)
        if shim_dir is not None:
            shims.write(shim_dir, needs.shims)
            _say(err, f"this machine lacks {_lacks(needs)}: using kvmnet's {', '.join(needs.shims)} shims")
        _say(
            err,
            f"building the {args.role} image of {machine} ({' '.join(rec.elements)}), mirror {mirrors.main}",
        )
        _build(rec, output, program, args.timeout, out, err)
        sidecar = dib.write_sha256(output)
        out.print(f"wrote {sidecar}", markup=False, highlight=False)
        if args.box is not None:
            _box(output, args.box, out)
        return Exit.OK


def _run_deploy(args: argparse.Namespace, out: Console, err: Console) -> int:
    """The deploy ramdisk: the same for every machine, so no profile is read."""
    given = [name for name in MACHINE_OPTIONS if getattr(args, name, None) not in (None, False)]
    if given:
        flags = ", ".join("PROFILE" if n == "profile" else "--" + n.replace("_", "-") for n in given)
        raise UsageError.single(
            f"--role deploy builds the one ramdisk of the whole fleet: {flags} "
            + ("does" if len(given) == 1 else "do")
            + " not apply"
        )
    mirrors = _mirrors(args)
    needs = shims.detect()
    prefix: Path = (args.output or Path(layout.DEPLOY_PREFIX)).resolve()
    with tempfile.TemporaryDirectory(prefix="kvmnet-image-") as scratch:
        shim_dir = Path(scratch) / "shims" if needs.shims else None
        elements = Path(scratch) / "elements"
        rec = deploy.recipe(elements, mirrors, _cache(args), shim_dir)
        if args.dry_run:
            _dry_run(out, rec, prefix, needs, mirrors)
            return Exit.OK
        problem = _check_machine(needs)
        program = dib.program()
        if not problem and program is None:
            problem = (
                "disk-image-create is not installed: needs the 'images' extra: "
                "pip install 'kvmnet[images]' (diskimage-builder)"
            )
        if problem or program is None:
            raise UsageError.single(problem)
        deploy.write_element(elements)
        if shim_dir is not None:
            shims.write(shim_dir, needs.shims)
            _say(err, f"this machine lacks {_lacks(needs)}: using kvmnet's {', '.join(needs.shims)} shims")
        _say(err, f"building the deploy ramdisk ({' '.join(rec.elements)}), mirror {mirrors.main}")
        _build(rec, prefix, program, args.timeout, out, err)
        return Exit.OK


def _box(image: Path, box: Path, out: Console) -> None:
    from generator.image.box import BoxError, make_box

    try:
        make_box(image, box)
    except BoxError as exc:
        raise ImageError.of(f"cannot make the box: {exc}") from None
    out.print(f"wrote {box}: vagrant box add --name kvmnet/debian12 {box}", markup=False, highlight=False)


def _lacks(needs: shims.Needs) -> str:
    lacking = [] if needs.device_mapper else ["device-mapper"]
    if not needs.sudo:
        lacking.append("sudo")
    return " and ".join(lacking)


def _check_machine(needs: shims.Needs) -> str:
    missing = [tool for tool in dib.TOOLS if not _which(tool)]
    if needs.device_mapper and not _which("kpartx"):
        missing.append("kpartx")
    if missing:
        return (
            f"missing programs: {', '.join(missing)} "
            "(Debian: debootstrap qemu-utils util-linux fdisk e2fsprogs kpartx)"
        )
    return needs.problem()


def _which(tool: str) -> bool:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None


def _dry_run(
    out: Console, rec: dib.Recipe, output: Path, needs: shims.Needs, mirrors: mirror.Mirrors
) -> None:
    out.print(f"# mirror from {mirrors.origin}", markup=False, highlight=False)
    if needs.shims:
        out.print(f"# shims first on PATH: {', '.join(needs.shims)} (lacks {_lacks(needs)})", markup=False)
    for key in sorted(rec.env):
        out.print(f"{key}={shlex.quote(rec.env[key])}", markup=False, highlight=False)
    base = output if rec.outputs else output.with_suffix("")
    out.print(shlex.join(rec.argv(base)), markup=False, highlight=False)


def _build(rec: dib.Recipe, output: Path, program: str, timeout: float, out: Console, err: Console) -> None:
    with err.status("disk-image-create: starting") as status:

        def phase(name: str, at: float) -> None:
            err.print(f"  {at:6.1f} s  {name}", markup=False, highlight=False)
            status.update(f"disk-image-create: {name}")

        def hook(name: str) -> None:
            status.update(f"disk-image-create: {name}")

        result = dib.run(rec, output, program, timeout, phase, hook)
    if not result.ok:
        _say(err, f"the last lines of {result.log}:")
        for line in result.tail:
            err.print(f"  | {line}", markup=False, highlight=False)
        raise ImageError.of(f"build failed: {result.reason}; no image was written to {output}")
    table = Table("phase", "seconds", title=f"{output.name}: {result.seconds:.0f} s", title_justify="left")
    for name, seconds in result.phases:
        table.add_row(name, f"{seconds:.1f}")
    err.print(table)
    for target in rec.targets(output).values():
        size = target.stat().st_size / (1 << 20)
        out.print(f"wrote {target} ({size:.0f} MiB) in {result.seconds:.0f} s", markup=False, highlight=False)
    out.print(f"log: {result.log}", markup=False, highlight=False)
