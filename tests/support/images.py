"""Golden images for the VM and Vagrant tiers, built once per content and shared.

`guest_image(profile, guest)`, `host_image(profile, host)` and
`vagrant_image(profile, machine, role)` return the path of a qcow2 built by the real
`kvmnet image` command, and `deploy_ramdisk()` the (kernel, initramfs) of
`kvmnet image --role deploy`. An image is rebuilt only when what goes into it changes: the
cache key is a hash of the machine's generated element (paths, modes, bytes; not its
README), the settings `kvmnet image` passes to diskimage-builder (role, release, base
elements, the mirrors, --vagrant) and diskimage-builder's version (the ramdisk's: its
element's files, the same settings, DIB's version). Images live outside
the repository, in $KVMNET_IMAGE_CACHE (default /var/cache/kvmnet-test/images), each
with its build log beside it, and diskimage-builder's download cache in `dib/`; a lock
file serialises builds between pytest processes. Old images are not pruned.

Building needs root (or sudo), debootstrap, qemu-utils, fdisk, e2fsprogs and
diskimage-builder in kvmnet's venv; on a machine without device-mapper `kvmnet image`
uses its own shims. A build takes ~3.5 min on an idle machine here (2 cores; DIB boots
no VM), ~7 min while VMs run beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from generator import layout
from generator.image import deploy, dib, mirror
from generator.pipeline import artifacts_for, plan_profile

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KVMNET_IMAGE_CACHE", "/var/cache/kvmnet-test/images"))
#: One build's limit; a cold build (debootstrap download) takes ~4 min here.
BUILD_TIMEOUT = 1800
#: Seconds each image took to build in this session (the VM tier reports them).
BUILD_SECONDS: dict[Path, float] = {}
_BUILT: dict[str, Path] = {}


def missing() -> list[str]:
    """What this machine lacks to build an image (empty: it can)."""
    lacking = [
        tool
        for tool in dib.TOOLS
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None
    ]
    if dib.program() is None:
        lacking.append("disk-image-create (pip install diskimage-builder)")
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        lacking.append("root or sudo")
    return lacking


def key(profile: Path, machine: str, role: layout.Role, vagrant: bool = False) -> str:
    """The content hash of the image `kvmnet image` would build."""
    prefix = f"{layout.element_dir(machine, role)}/"
    digest = hashlib.sha256()
    for artifact in artifacts_for(plan_profile(profile)):
        # README.rst does not reach the image: a reworded README must not cost a rebuild.
        if artifact.path.startswith(prefix) and not artifact.path.endswith("/README.rst"):
            digest.update(f"{artifact.path}\0{artifact.mode:o}\0".encode())
            digest.update(hashlib.sha256(artifact.content).digest())
    if digest.digest() == hashlib.sha256().digest():
        raise ValueError(f"{profile} has no {role} named {machine!r}")
    mirrors = mirror.find(dib.RELEASE)
    settings = {
        "role": role,
        "vagrant": vagrant,
        "release": dib.RELEASE,
        "elements": dib.BASE_ELEMENTS,
        "mirror": mirrors.main,
        "security": mirrors.security,
        "diskimage-builder": metadata.version("diskimage-builder"),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image(profile: Path, machine: str, role: layout.Role, vagrant: bool = False) -> Path:
    """The image of `machine` (built now if no image of the same content exists)."""
    profile = profile.resolve()
    content = key(profile, machine, role, vagrant)
    if content in _BUILT:
        return _BUILT[content]
    flavour = f"{role}-vagrant" if vagrant else role
    target = CACHE / f"{flavour}-{machine}-{content}.qcow2"
    if target.is_file():  # complete: a build moves its image in only when done
        _with_sha256(target)
        _BUILT[content] = target
        return target
    with _locked(CACHE / ".build.lock"):
        if not target.is_file():
            lacking = missing()
            if lacking:
                raise RuntimeError(f"cannot build {target.name}: this machine lacks {', '.join(lacking)}")
            command = [
                sys.executable, "-m", "generator", "image", str(profile),
                "--role", role, "--machine", machine, "-o", str(target), "--cache", str(CACHE / "dib"),
            ]  # fmt: skip
            if vagrant:
                command.append("--vagrant")
            started = time.monotonic()
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
            )
            if done.returncode != 0 or not target.is_file():
                raise RuntimeError(
                    f"kvmnet image failed ({done.returncode}) for {role} {machine} of {profile.name}:\n"
                    + "\n".join(done.stderr.splitlines()[-60:])
                )
            BUILD_SECONDS[target] = time.monotonic() - started
    _with_sha256(target)
    _BUILT[content] = target
    return target


def _with_sha256(image: Path) -> None:
    """Images cached before `kvmnet image` wrote `<image>.sha256` get it here, from the
    same function (the content, hence the cache key, is unchanged)."""
    if not Path(layout.sha256_sidecar(str(image))).is_file():
        dib.write_sha256(image)


def guest_image(profile: Path, guest: str) -> Path:
    return image(profile, guest, "guest")


def host_image(profile: Path, host: str) -> Path:
    return image(profile, host, "host")


def vagrant_image(profile: Path, machine: str, role: layout.Role = "guest") -> Path:
    """Like the others, plus the `vagrant` user with Vagrant's insecure key (for a box)."""
    return image(profile, machine, role, vagrant=True)


def deploy_key() -> str:
    """The content hash of the deploy ramdisk: its element, the settings, DIB's version."""
    digest = hashlib.sha256()
    for rel, (content, mode) in sorted(deploy.files().items()):
        if rel == "README.rst":  # does not reach the ramdisk
            continue
        digest.update(f"{rel}\0{mode:o}\0".encode())
        digest.update(hashlib.sha256(content.encode()).digest())
    mirrors = mirror.find(dib.RELEASE)
    settings = {
        "role": "deploy",
        "release": dib.RELEASE,
        "elements": deploy.ELEMENTS,
        "mirror": mirrors.main,
        "security": mirrors.security,
        "diskimage-builder": metadata.version("diskimage-builder"),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def deploy_ramdisk() -> tuple[Path, Path]:
    """(kernel, initramfs) of the deploy ramdisk, built by `kvmnet image --role deploy`
    when no ramdisk of the same content exists."""
    prefix = CACHE / f"deploy-{deploy_key()}"
    kernel, initramfs = (Path(layout.deploy_kernel(str(prefix))), Path(layout.deploy_initramfs(str(prefix))))
    if kernel.is_file() and initramfs.is_file():  # a build moves them in only when done
        return kernel, initramfs
    with _locked(CACHE / ".build.lock"):
        if not (kernel.is_file() and initramfs.is_file()):
            lacking = missing()
            if lacking:
                raise RuntimeError(f"cannot build {prefix.name}: this machine lacks {', '.join(lacking)}")
            command = [
                sys.executable, "-m", "generator", "image", "--role", "deploy",
                "-o", str(prefix), "--cache", str(CACHE / "dib"),
            ]  # fmt: skip
            started = time.monotonic()
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
            )
            if done.returncode != 0 or not (kernel.is_file() and initramfs.is_file()):
                raise RuntimeError(
                    f"kvmnet image --role deploy failed ({done.returncode}):\n"
                    + "\n".join(done.stderr.splitlines()[-60:])
                )
            BUILD_SECONDS[initramfs] = time.monotonic() - started
    return kernel, initramfs
