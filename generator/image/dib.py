"""One `disk-image-create` run: its elements, its environment, its phases.

The command line and environment are plain data (`Recipe`), so `--dry-run` and the
tests see exactly what a build would run. `run()` streams diskimage-builder's output
into a log, reports each phase as it starts (the names are DIB's own hook directories:
root.d, install.d, finalise.d...), and leaves the image at its destination only when
the build succeeded.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from generator import layout
from generator.image.mirror import Mirrors

RELEASE = "bookworm"
#: The profile's name for the distribution the images are (hosts' `distro:`).
DISTRO = "debian12"
#: The base elements, as the issue names them; the role's element and devuser follow.
BASE_ELEMENTS = ("vm", "debian-minimal", "cloud-init", "cloud-init-datasources", "openssh-server")
#: What disk-image-create needs on the machine besides itself (debootstrap for
#: debian-minimal, qemu-img to write qcow2, partx/losetup for the partitions).
TOOLS = ("debootstrap", "qemu-img", "losetup", "partx", "sfdisk", "mkfs.ext4", "chroot")
#: Where Vagrant keeps its insecure key pair (Debian's vagrant package; the upstream
#: installer). The box's vagrant user must accept it for the first `vagrant up`.
VAGRANT_KEYS = (
    "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub",
)
LOG_TAIL = 40

_PHASE = re.compile(r"Running hooks from \S*/hooks/([\w-]+)\.d\b")
_HOOK = re.compile(r"dib-run-parts Running \S*/([\w-]+)\.d/([\w-]+)\s*$")
_MARKS = (
    (re.compile(r"Building elements:"), "elements"),
    (re.compile(r"Creating partition on"), "block-device"),
    (re.compile(r"Calling \[sudo kpartx -d"), "unmount"),
    (re.compile(r"Converting image using qemu-img"), "qemu-img convert"),
)


@dataclass(frozen=True, slots=True)
class Recipe:
    elements: tuple[str, ...]
    env: dict[str, str] = field(hash=False)  # only what kvmnet sets, on top of the caller's
    path_prefix: tuple[str, ...]  # directories put first on PATH (shims, DIB's scripts)
    #: What the build leaves beside its `-o` name, as suffixes: empty for a qcow2 disk
    #: image (which goes to the destination itself); the deploy ramdisk's elements copy
    #: out `.kernel` and `.initramfs` (each goes to the destination prefix + suffix).
    outputs: tuple[str, ...] = ()

    def argv(self, output_base: Path, program: str = "disk-image-create") -> list[str]:
        types = [] if self.outputs else ["-t", "qcow2"]
        return [program, *types, "-o", str(output_base), *self.elements]

    def targets(self, destination: Path) -> dict[str, Path]:
        """Each file the build writes (its name in the build directory) → where it goes."""
        if not self.outputs:
            return {"image.qcow2": destination}
        return {f"image{suffix}": destination.with_name(destination.name + suffix) for suffix in self.outputs}


def write_sha256(image: Path) -> Path:
    """`<image>.sha256` in sha256sum's format (`<hex>  <name>`): what the deploy ramdisk
    fetches beside the image's URL and checks the download with."""
    digest = hashlib.sha256()
    with image.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    sidecar = image.with_name(layout.sha256_sidecar(image.name))
    partial = sidecar.with_name(f".{sidecar.name}.partial")
    partial.write_text(f"{digest.hexdigest()}  {image.name}\n")
    os.replace(partial, sidecar)
    return sidecar


def vagrant_key() -> Path | None:
    for pattern in VAGRANT_KEYS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    return None


def program() -> str | None:
    """disk-image-create: beside the running Python (kvmnet's venv), else on PATH."""
    beside = Path(sys.executable).parent / "disk-image-create"
    if beside.exists():
        return str(beside)
    return shutil.which("disk-image-create")


def recipe(
    role: layout.Role,
    elements_path: Path,
    mirrors: Mirrors,
    cache: Path,
    shim_dir: Path | None,
    vagrant: Path | None = None,
) -> Recipe:
    env = {
        "ELEMENTS_PATH": str(elements_path),
        "DIB_RELEASE": RELEASE,
        "DIB_DISTRIBUTION_MIRROR": mirrors.main,
        # debootstrap's downloads and the base image, kept between builds.
        "DIB_IMAGE_CACHE": str(cache / "image-cache"),
        "DIB_LOCKFILES": str(cache / "locks"),
    }
    if mirrors.security:
        env["DIB_DEBIAN_SECURITY_MIRROR"] = mirrors.security
    elements = [*BASE_ELEMENTS, layout.ELEMENTS[role]]
    if vagrant is not None:
        elements.append("devuser")
        env |= {
            "DIB_DEV_USER_USERNAME": "vagrant",
            "DIB_DEV_USER_SHELL": "/bin/bash",
            "DIB_DEV_USER_PWDLESS_SUDO": "yes",
            "DIB_DEV_USER_AUTHORIZED_KEYS": str(vagrant),
            # kvmnet's hooks add DHCP for Vagrant's management NIC (found with vagrant up:
            # without it the box never gets an address)
            "DIB_KVMNET_VAGRANT": "1",
        }
    prefix = [str(shim_dir)] if shim_dir else []
    prefix.append(str(Path(sys.executable).parent))  # element-info, dib-run-parts...
    return Recipe(tuple(elements), env, tuple(prefix))


@dataclass
class Phases:
    """Phase start times, as diskimage-builder reports them."""

    started: float = field(default_factory=time.monotonic)
    spans: list[tuple[str, float]] = field(default_factory=list)  # (phase, start)
    hook: str = ""

    def feed(self, line: str) -> str | None:
        """The new phase `line` starts, if it starts one."""
        name = None
        if m := _PHASE.search(line):
            name = f"{m.group(1)}.d"
        elif m := _HOOK.search(line):
            if not self.spans or self.spans[-1][0] != f"{m.group(1)}.d":
                name = f"{m.group(1)}.d"
            self.hook = m.group(2)
        else:
            for pattern, mark in _MARKS:
                if pattern.search(line):
                    name = mark
                    break
        if name is None or (self.spans and self.spans[-1][0] == name):
            return None
        self.spans.append((name, time.monotonic()))
        self.hook = ""
        return name

    def durations(self, end: float) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for index, (name, start) in enumerate(self.spans):
            stop = self.spans[index + 1][1] if index + 1 < len(self.spans) else end
            out.append((name, stop - start))
        return out


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    seconds: float
    log: Path
    tail: list[str]
    phases: list[tuple[str, float]]
    reason: str = ""


def run(
    rec: Recipe,
    destination: Path,
    dib: str,
    timeout: float,
    on_phase: Callable[[str, float], None],
    on_hook: Callable[[str], None] = lambda _hook: None,
) -> Result:
    """Build into a private directory beside `destination`, then move the image there
    (or, for a recipe with `outputs`, each output to `destination` + its suffix).

    A failed, interrupted or timed-out build leaves nothing at `destination`; its log
    stays at `<destination>.log`.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    log = destination.parent / f"{destination.name}.log"
    env = dict(os.environ) | rec.env
    env["PATH"] = os.pathsep.join([*rec.path_prefix, env.get("PATH", os.defpath)])
    for directory in (rec.env["DIB_IMAGE_CACHE"], rec.env["DIB_LOCKFILES"]):
        Path(directory).mkdir(parents=True, exist_ok=True)
    phases = Phases()
    tail: list[str] = []
    reason = ""
    proc: subprocess.Popen[str] | None = None
    try:
        with log.open("w", encoding="utf-8") as sink:
            proc = subprocess.Popen(
                rec.argv(work / "image", dib),
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # one process group: a timeout ends all of it
            )
            assert proc.stdout is not None
            deadline = phases.started + timeout
            for line in proc.stdout:
                sink.write(line)
                tail.append(line.rstrip("\n"))
                del tail[:-LOG_TAIL]
                if (name := phases.feed(line)) is not None:
                    on_phase(name, time.monotonic() - phases.started)
                elif phases.hook:
                    on_hook(phases.hook)
                if time.monotonic() > deadline:
                    reason = f"timed out after {timeout:.0f} s"
                    _stop(proc)
                    break
            code = proc.wait()
        targets = rec.targets(destination)
        if not reason and code != 0:
            reason = f"disk-image-create exited with {code}"
        missing = [name for name in targets if not (work / name).is_file()]
        if not reason and missing:
            reason = f"disk-image-create reported success but wrote no {', '.join(missing)}"
        seconds = time.monotonic() - phases.started
        if reason:
            return Result(False, seconds, log, tail, phases.durations(time.monotonic()), reason)
        for name, target in targets.items():
            os.replace(work / name, target)
        return Result(True, seconds, log, tail, phases.durations(time.monotonic()))
    finally:
        if proc is not None and proc.poll() is None:  # interrupted (Ctrl-C)
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    """TERM to the whole build (DIB's traps unmount and detach), KILL if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
