"""The PXE tier: machines with empty disks network-boot from kvmnet's boot service.

Real firmware and servers, nothing stubbed: a VM (QEMU, software emulation, in a private
libvirtd) boots its provisioning NIC's ROM, which is iPXE (Debian's ipxe-qemu); the
boot service is `kvmnet pxe serve` itself, that is Debian's dnsmasq with the generated
`pxe/dnsmasq.conf` and kvmnet's HTTP server for `pxe/http/`, on the wire bridge in
libvirtd's namespace. profiles/pxe.yaml is the profile.

- The installer path (hv2): debian-installer cannot install here (most udebs are not
  served to this machine: shared/FACTS.md), so the test shows what can be shown: the
  machine is leased an address by its MAC, chains its own iPXE script, boots Debian's
  netboot installer (debian-installer-12-netboot-amd64) with the generated arguments,
  and the installer fetches hv2's preseed from the boot service.

Each phase's time is printed and written to $KVMNET_PXE_TIMINGS (JSON) if set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from generator import layout
from generator.live.libvirtd import Libvirtd, private_libvirtd
from generator.live.vms import console_tail
from generator.pipeline import build, plan_profile
from generator.plan.types import BootEntry, Plan
from generator.vm.fleet import Fleet
from generator.vm.hosts import WIRE

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "pxe.yaml"
#: Debian's netboot installer, as debian-installer-12-netboot-amd64 installs it.
DEBIAN_INSTALLER = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
NEEDED = ("libvirtd", "virsh", "qemu-system-x86_64", "qemu-img", "dnsmasq", "ssh", "ssh-keygen")
#: QEMU's virtio NIC ROM: iPXE, which is what PXE-boots the machine.
VIRTIO_ROM = Path("/usr/lib/ipxe/qemu/efi-virtio.rom")
#: From power-on to the installer asking for its preseed, under software emulation.
INSTALLER_TIMEOUT = 600.0
TIMINGS: dict[str, dict[str, float]] = {}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the PXE tier needs root (namespaces, libvirtd, dnsmasq)"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [tool for tool in NEEDED if shutil.which(tool, path=path) is None]
    missing += [str(p) for p in (DEBIAN_INSTALLER / "linux", VIRTIO_ROM) if not p.exists()]
    if missing:
        return f"missing {', '.join(missing)} (deps/apt-test.txt lists the packages)"
    return None


_REASON = _why_not()
boots_vms = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pxe")


@pytest.fixture(scope="module", autouse=True)
def _report_timings() -> Iterator[None]:
    yield
    if not TIMINGS:
        return
    text = json.dumps(TIMINGS, indent=2, sort_keys=True)
    print(f"\nPXE tier timings (seconds):\n{text}")
    if target := os.environ.get("KVMNET_PXE_TIMINGS"):
        Path(target).write_text(text + "\n")


def _entry(plan: Plan, host: str) -> BootEntry:
    assert plan.boot is not None
    return next(e for e in plan.boot.entries if e.host == host)


class BootService:
    """`kvmnet pxe serve` running in libvirtd's namespace, its log followed."""

    def __init__(self, daemon: Libvirtd, output: Path, assets: Path, log: Path) -> None:
        self.log = log
        command = daemon.command(
            sys.executable,
            *("-m", "generator", "pxe", "serve", str(output), "--interface", WIRE, "--assets", str(assets)),
        )
        with log.open("wb") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        self.wait_for("kvmnet: serving", 30)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, console: tuple[Libvirtd, str] | None = None) -> float:
        """Seconds until a line of the log matches `pattern` (a regular expression)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if re.search(pattern, self.text(), re.MULTILINE):
                return time.monotonic() - started
            if self.process.poll() is not None:
                pytest.fail(f"kvmnet pxe serve exited {self.process.returncode}:\n{self.text()}")
            time.sleep(1)
        tail = console_tail(*console) if console else ""
        pytest.fail(
            f"no {pattern!r} in the boot service's log within {timeout:.0f} s:\n{self.text()}\n{tail}"
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def pxe(work: Path) -> Iterator[tuple[Fleet, BootService, Path]]:
    output = work / "output"
    build(PROFILE, output)
    plan = plan_profile(PROFILE).plan
    assert plan.boot is not None
    assets = work / "assets"
    installer = assets / layout.installer_file("debian12", "")
    installer.mkdir(parents=True)
    for name in layout.INSTALLER_FILES["debian12"]:
        (installer / name).symlink_to(DEBIAN_INSTALLER / name)
    server = urlsplit(plan.boot.url).hostname
    prefix = plan.boot.subnet.split("/")[1]
    with (
        private_libvirtd(work, label="pxe") as daemon,
        Fleet(daemon, output, plan, None, work / "fleet") as fleet,
    ):
        # The wire: the hosts' gateway and the boot service's address, jumbo as eno1.
        fleet.wire(9000, (f"{server}/{prefix}",))
        service = BootService(daemon, output, assets, work / "pxe-serve.log")
        try:
            yield fleet, service, output
        finally:
            service.stop()
    said = service.text()
    assert "kvmnet: boot service stopped" in said, said[-2000:]


@pytest.mark.pxe
@boots_vms
def test_installer_path_boots_debian_installer_which_fetches_its_preseed(
    pxe: tuple[Fleet, BootService, Path],
) -> None:
    fleet, service, output = pxe
    entry = _entry(fleet.plan, "hv2")
    assert entry.method == "installer"
    mac = entry.mac
    with fleet.bare_host("hv2", mac, memory_mib=1024) as _machine:
        console = (fleet.daemon, "hv2")
        lease = service.wait_for(rf"DHCPACK\({WIRE}\) [0-9.]+ {mac} hv2", 180, console)
        script = service.wait_for(
            rf"GET /{re.escape(layout.boot_script(mac))} HTTP/1\.[01]\" 200", 60, console
        )
        kernel = service.wait_for(r"GET /installers/debian12/initrd\.gz HTTP/1\.[01]\" 200", 120, console)
        preseed = service.wait_for(
            r"GET /hosts/hv2/preseed\.cfg HTTP/1\.[01]\" 200", INSTALLER_TIMEOUT, console
        )
        # The installer was booted with exactly the plan's arguments (its kernel says so).
        shown = console_tail(fleet.daemon, "hv2", lines=100_000)
    TIMINGS["installer hv2"] = {
        "power_on_to_lease": round(lease, 1),
        "ipxe_script": round(script, 1),
        "installer_loaded": round(kernel, 1),
        "preseed_fetched": round(preseed, 1),
    }
    line = next((ln for ln in shown.splitlines() if "Kernel command line:" in ln), "")
    assert " ".join(entry.args) in line, line or shown[-3000:]
    # Unknown machines are not answered: only the fleet's provisioning MACs are known.
    conf = (output / layout.PXE_DNSMASQ).read_text()
    assert "dhcp-ignore=tag:!known" in conf
    # and the file the installer fetched is the host's generated preseed, byte for byte
    served = output / layout.pxe_http(f"{layout.boot_host_dir('hv2')}preseed.cfg")
    assert served.read_bytes() == (output / layout.pxe_answer("hv2", "debian12")).read_bytes()
