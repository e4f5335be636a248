"""The deploy ramdisk writes an image to a blank disk, grows it, and reboots (`-m vm`).

The ramdisk (`kvmnet image --role deploy`, built once per content by
tests/support/images.py) boots in QEMU directly (`-kernel -initrd -append`, software
emulation) with the kernel command line the iPXE script passes: kvmnet.image= an image
served by Python's http.server on this machine (10.0.2.2 from QEMU's user-mode network),
kvmnet.disk=vda, BOOTIF= the virtio NIC's MAC, console=ttyS0. The image is made here with
real tools: a 1 GiB disk with an MBR partition holding an ext4 with a marker file
(sfdisk, mkfs.ext4 -d at the partition's offset, qemu-img convert), its sidecar written
by kvmnet's own `write_sha256`.

- deploy: the console says done, QEMU ends by the reboot (-no-reboot); the 3 GiB target
  disk then holds the image's partition, grown to the disk's end, and its ext4 (e2fsck
  clean, resized to the partition, the marker file's bytes);
- negative controls: a .sha256 that does not match, and an image URL that answers 404:
  the console says which, QEMU is still running (no reboot) 20 s after the message, and
  the target disk is still blank.

Both runs are timed and printed.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.image import dib
from tests.support import images

NEEDED = ("qemu-system-x86_64", "qemu-img", "sfdisk", "mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs")
MAC = "52:54:00:4b:d0:01"
SECTOR = 512
SOURCE_SIZE = 1 << 30
TARGET_SIZE = 3 << 30
PART_START = 2048  # sectors: sfdisk's default alignment
GROWPART_PAD = 33  # sectors: a GPT backup header's room, kept by growpart on MBR disks too
#: A cold ramdisk boot to "done" under TCG takes ~1-2 min here; the limit leaves room
#: for a machine busy with other VMs.
DEPLOY_TIMEOUT = 900
TIMINGS: dict[str, float] = {}


def _why_not() -> str | None:
    lacking = [tool for tool in NEEDED if shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin") is None]
    lacking += images.missing()
    return f"needs {', '.join(lacking)}" if lacking else None


pytestmark = [pytest.mark.vm, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


def _run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def ramdisk() -> tuple[Path, Path]:
    started = time.monotonic()
    kernel, initramfs = images.deploy_ramdisk()
    TIMINGS["ramdisk (build or cache)"] = time.monotonic() - started
    return kernel, initramfs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, bytes]]:
    """(base URL as the VM sees it, the served directory, the marker's bytes)."""
    root = tmp_path_factory.mktemp("served")
    marker = f"kvmnet deploy marker {secrets.token_hex(16)}\n".encode()
    work = tmp_path_factory.mktemp("source")
    (work / "tree").mkdir()
    (work / "tree" / "kvmnet-marker").write_bytes(marker)
    raw = work / "source.raw"
    with raw.open("wb") as handle:
        handle.truncate(SOURCE_SIZE)
    subprocess.run(
        ["sfdisk", "--quiet", str(raw)],
        input=f"label: dos\nstart={PART_START}, type=83\n",
        text=True,
        check=True,
    )
    blocks = (SOURCE_SIZE - PART_START * SECTOR) // 4096
    _run(
        "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "kvmnet-test", "-d", work / "tree",
        "-E", f"offset={PART_START * SECTOR}", raw, str(blocks),
    )  # fmt: skip
    _run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, root / "good.qcow2")
    raw.unlink()
    dib.write_sha256(root / "good.qcow2")
    shutil.copyfile(root / "good.qcow2", root / "bad.qcow2")
    # The negative control: the right format, the digest of something else.
    (root / "bad.qcow2.sha256").write_text(f"{hashlib.sha256(b'not the image').hexdigest()}  bad.qcow2\n")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://10.0.2.2:{server.server_address[1]}", root, marker
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _boot(
    ramdisk: tuple[Path, Path], url: str, target: Path, console: Path, until: re.Pattern[str] | None = None
) -> tuple[int | None, float]:
    """Boot the ramdisk; return QEMU's exit code (None: killed once `until` showed on the
    console and QEMU was still running 20 s later) and the seconds it took."""
    kernel, initramfs = ramdisk
    append = f"console=ttyS0,115200 kvmnet.image={url} kvmnet.disk=vda BOOTIF=01-{MAC.replace(':', '-')}"
    argv = [
        "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "1024", "-smp", "1",
        "-display", "none", "-monitor", "none", "-serial", f"file:{console}", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initramfs), "-append", append,
        "-drive", f"file={target},if=virtio,format=qcow2,cache=unsafe",
        "-netdev", "user,id=n0", "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = started + DEPLOY_TIMEOUT
        seen_at: float | None = None
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            if (
                until is not None
                and seen_at is None
                and console.exists()
                and until.search(console.read_text(errors="replace"))
            ):
                seen_at = time.monotonic()
            if seen_at is not None and time.monotonic() - seen_at > 20:
                return None, seen_at - started
        if proc.poll() is None:
            pytest.fail(f"QEMU still running after {DEPLOY_TIMEOUT} s; console:\n{_tail(console)}")
        return proc.returncode, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _tail(console: Path, lines: int = 60) -> str:
    text = console.read_text(errors="replace") if console.exists() else "(no console output)"
    return "\n".join(text.splitlines()[-lines:])


def _deploy_lines(console: Path) -> list[str]:
    return [line for line in console.read_text(errors="replace").splitlines() if "kvmnet-deploy:" in line]


def _blank_target(path: Path) -> None:
    _run("qemu-img", "create", "-q", "-f", "qcow2", path, str(TARGET_SIZE))


def test_deploy_writes_grows_and_reboots(
    ramdisk: tuple[Path, Path], served: tuple[str, Path, bytes], tmp_path: Path
) -> None:
    base, _root, marker = served
    target, console = tmp_path / "target.qcow2", tmp_path / "console.log"
    _blank_target(target)
    code, seconds = _boot(ramdisk, f"{base}/good.qcow2", target, console)
    TIMINGS["deploy (boot to reboot)"] = seconds
    lines = _deploy_lines(console)
    assert code == 0, f"QEMU exited with {code}; console:\n{_tail(console)}"
    assert lines and lines[-1].endswith("kvmnet-deploy: done, rebooting"), _tail(console)
    assert any("sha256 ok" in line for line in lines)
    assert not any("FAILED" in line for line in lines)

    raw = tmp_path / "target.raw"
    _run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", target, raw)
    assert raw.stat().st_size == TARGET_SIZE
    partitions = json.loads(_run("sfdisk", "--json", raw))["partitiontable"]["partitions"]
    assert len(partitions) == 1
    start, size = partitions[0]["start"], partitions[0]["size"]
    assert start == PART_START
    # grown to the disk's end, less the 33 sectors growpart always keeps free ("if MBR,
    # allow subsequent conversion to GPT without shrinking": cloud-guest-utils 0.33)
    assert start + size == TARGET_SIZE // SECTOR - GROWPART_PAD, partitions
    part = tmp_path / "part.raw"
    # the partition alone, as its own file, for the e2fsprogs tools (no loop device needed)
    window = f"driver=raw,offset={start * SECTOR},size={size * SECTOR},file.driver=file,file.filename={raw}"
    _run("qemu-img", "convert", "--image-opts", window, "-O", "raw", part)
    raw.unlink()
    check = subprocess.run(["e2fsck", "-f", "-n", str(part)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    header = _run("dumpe2fs", "-h", part)
    block_count = int(re.search(r"^Block count:\s+(\d+)", header, re.M).group(1))  # type: ignore[union-attr]
    block_size = int(re.search(r"^Block size:\s+(\d+)", header, re.M).group(1))  # type: ignore[union-attr]
    assert block_count * block_size == (size * SECTOR) // block_size * block_size
    assert block_count * block_size > SOURCE_SIZE  # grown, not the source's size
    assert _run("debugfs", "-R", "cat /kvmnet-marker", part).encode() == marker
    print(f"\ndeploy ramdisk timings: {TIMINGS}")


#: The negative controls: (served name, the console's FAILED reason). A digest of
#: something else; an image whose URL answers 404 (its .sha256 too: nothing is served).
FAILURES = {
    "sha256 mismatch": ("bad.qcow2", "FAILED: sha256 mismatch"),
    "failed download": ("missing.qcow2", "FAILED: cannot download"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failure_stops_without_writing_or_rebooting(
    case: str, ramdisk: tuple[Path, Path], served: tuple[str, Path, bytes], tmp_path: Path
) -> None:
    name, reason = FAILURES[case]
    base, _root, _marker = served
    target, console = tmp_path / "target.qcow2", tmp_path / "console.log"
    _blank_target(target)
    reference = tmp_path / "blank.qcow2"
    _blank_target(reference)
    code, seconds = _boot(
        ramdisk,
        f"{base}/{name}",
        target,
        console,
        until=re.compile(r"kvmnet-deploy: .*staying in the ramdisk"),
    )
    TIMINGS[f"{case} (boot to message)"] = seconds
    assert code is None, f"QEMU ended ({code}): the ramdisk rebooted; console:\n{_tail(console)}"
    lines = _deploy_lines(console)
    assert any(reason in line for line in lines), _tail(console)
    assert any("the disk was not written" in line for line in lines)
    assert not any("done, rebooting" in line for line in lines)
    # byte for byte the blank disk: nothing was written, not even a wipe
    _run("qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", target, reference)
    print(f"\ndeploy ramdisk timings: {TIMINGS}")
