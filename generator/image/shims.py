"""Stand-ins for kpartx, dmsetup and sudo on a build machine without device-mapper.

diskimage-builder maps the image's partitions with kpartx (device-mapper) and runs
every privileged step through sudo. A container kernel may have no device-mapper, and
a root shell may have no sudo; the loop driver's own partition devices do the same job
(../shared/FACTS.md, "VM tier"). The shims are written from kvmnet's templates (they
ship in the wheel) into a directory put first on PATH for one build, and only for what
the machine lacks.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from generator.templating import render as render_template

SHIMS = ("kpartx", "dmsetup", "sudo")


@dataclass(frozen=True, slots=True)
class Needs:
    device_mapper: bool  # the kernel has device-mapper
    sudo: bool  # a sudo is on PATH
    root: bool = True  # the build runs as root

    @property
    def shims(self) -> tuple[str, ...]:
        wanted = [] if self.device_mapper else ["kpartx", "dmsetup"]
        # A real sudo resets PATH (secure_path) and would hide the other shims; as root it
        # adds nothing, so the sudo shim goes along with them, or stands in for a missing sudo.
        if self.root and (wanted or not self.sudo):
            wanted.append("sudo")
        return tuple(wanted)

    def problem(self) -> str:
        """Why this machine cannot build at all ("" if it can)."""
        if self.root:
            return ""
        if not self.sudo:
            return "diskimage-builder needs root: run as root, or install sudo"
        if not self.device_mapper:
            return "this kernel has no device-mapper: run as root, so that kvmnet's kpartx shim can stand in"
        return ""


def has_device_mapper(proc: Path = Path("/proc")) -> bool:
    """device-mapper registers a block major ("device-mapper" in /proc/devices) when the
    kernel has it, built in or loaded; /dev/mapper/control alone can be a stale node."""
    try:
        text = (proc / "devices").read_text()
    except OSError:
        return False
    block = text.partition("Block devices:")[2]
    return any(line.split()[1:] == ["device-mapper"] for line in block.splitlines() if line.strip())


def detect() -> Needs:
    return Needs(has_device_mapper(), shutil.which("sudo") is not None, os.geteuid() == 0)


def write(directory: Path, names: tuple[str, ...]) -> Path:
    """The shims `names`, executable, in `directory` (to go first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(render_template(f"images/shims/{name}.j2"))
        os.chmod(path, 0o755)
    return directory
