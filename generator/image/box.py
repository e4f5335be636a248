"""A Vagrant box for the libvirt provider, made from a qcow2 golden image.

A libvirt box (vagrant-libvirt's "v1" format) is a tar holding `box.img` (the qcow2),
`metadata.json` `{"provider": "libvirt", "format": "qcow2", "virtual_size": <GiB>}` and
a Vagrantfile. vagrant-libvirt 0.11.2 reads `virtual_size` as whole gigabytes (an integer:
its ByteNumber.from_GB); the image's virtual size is read from the qcow2 header itself.

The box is deterministic for a given image (members sorted, owner root, mtime 0), and it
appears at its path only once complete (written beside it, then renamed).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from generator.renderers.bundle import tar_member

#: qcow2 header: magic "QFI\xfb", version (u32), backing file offset (u64), backing file
#: size (u32), cluster bits (u32), then the virtual size in bytes (u64), all big-endian.
QCOW2_MAGIC = b"QFI\xfb"
_HEADER = struct.Struct(">4sIQIIQ")
GIB = 2**30

#: The box's own Vagrantfile: the lowest-priority layer of Vagrant's configuration. It
#: sets nothing the machine's Vagrantfile must decide (the libvirt driver above all: a box
#: cannot know whether the machine it lands on has usable KVM).
BOX_VAGRANTFILE = """\
# Vagrant box made by kvmnet from a golden image (kvmnet image --box).
# It sets nothing: the Vagrantfile that uses the box chooses the libvirt driver
# (kvm or qemu), CPUs, memory and networks.
Vagrant.configure("2") do |config|
end
"""


class BoxError(Exception):
    """The image cannot become a box (the message says why)."""


def virtual_size(image: Path) -> int:
    """The qcow2 image's virtual disk size in bytes, from its header."""
    try:
        with image.open("rb") as f:
            header = f.read(_HEADER.size)
    except OSError as exc:
        raise BoxError(f"cannot read {image}: {exc.strerror}") from exc
    if len(header) < _HEADER.size or header[:4] != QCOW2_MAGIC:
        raise BoxError(f"{image} is not a qcow2 image (vagrant-libvirt boxes hold qcow2)")
    _, version, _, _, _, size = _HEADER.unpack(header)
    if version not in (2, 3):
        raise BoxError(f"{image}: qcow2 version {version} is not one QEMU writes (2 or 3)")
    return int(size)


def metadata(image: Path) -> dict[str, object]:
    """metadata.json of the box: virtual_size in whole GiB, rounded up (never smaller than the disk)."""
    size = virtual_size(image)
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": -(-size // GIB)}


def _member(name: str, size: int) -> tarfile.TarInfo:
    return tar_member(name, tarfile.REGTYPE, 0o644, size)


def make_box(image: Path, box: Path, progress: Callable[[int, int], None] | None = None) -> dict[str, object]:
    """Write `box` (a .box file: tar of box.img, metadata.json, Vagrantfile) from the
    qcow2 `image`; return the metadata written. `progress(done, total)` is called with
    bytes of the image copied so far. Raises BoxError for an image that is not qcow2 or
    a box that cannot be written."""
    meta = metadata(image)
    total = image.stat().st_size
    texts = {
        "metadata.json": (json.dumps(meta, sort_keys=True, indent=2) + "\n").encode(),
        "Vagrantfile": BOX_VAGRANTFILE.encode(),
    }
    box = box.absolute()
    try:
        box.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{box.name}.", dir=box.parent)
    except OSError as exc:
        raise BoxError(f"cannot write {box}: {exc.strerror}") from exc
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for name in sorted(texts):
                tar.addfile(_member(name, len(texts[name])), io.BytesIO(texts[name]))
            with image.open("rb") as src:
                tar.addfile(_member("box.img", total), _Counting(src, total, progress))
        os.chmod(tmp, 0o644)
        os.replace(tmp, box)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BoxError(f"cannot write {box}: {exc.strerror}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


class _Counting(io.RawIOBase):
    """A read-only file that reports how much of it has been read."""

    def __init__(
        self, src: io.BufferedReader, total: int, progress: Callable[[int, int], None] | None
    ) -> None:
        self._src = src
        self._total = total
        self._done = 0
        self._progress = progress

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size)
        self._done += len(data)
        if self._progress is not None:
            self._progress(self._done, self._total)
        return data
