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
import yaml

from generator import layout
from generator.live.libvirtd import Libvirtd, private_libvirtd
from generator.live.vms import console_tail, wait_booted
from generator.pipeline import build, plan_profile
from generator.plan.types import BootEntry, Plan
from generator.verify.runner import CheckResult, Report
from generator.vm.fleet import Booted, Fleet, SuiteRun
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


# --- the image path ------------------------------------------------------------------

#: From power-on to SSH on the deployed host: PXE, the ramdisk, the image written, and
#: the first boot of the host (software emulation).
DEPLOY_TIMEOUT = 1200.0


def _profile_with_key(work: Path, public_key: str) -> Path:
    """profiles/pxe.yaml with the test's key as admin's (the profile's is an example)."""
    data = yaml.safe_load(PROFILE.read_text())
    for user in data["defaults"]["host"]["users"]:
        user["ssh-authorized-keys"] = [public_key.strip()]
    path = work / "pxe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def key(work: Path) -> Path:
    if given := os.environ.get("KVMNET_PXE_KEY"):
        return Path(given)  # a fixed key keeps the host image's cache key (docs/pxe.md)
    path = work / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kvmnet-pxe-test", "-f", str(path)], check=True
    )
    return path


@pytest.mark.pxe
@boots_vms
def test_image_path_deploys_a_working_hypervisor_that_passes_its_suite(work: Path, key: Path) -> None:
    from tests.support import images

    (work / "image").mkdir()
    profile = _profile_with_key(work / "image", key.with_suffix(".pub").read_text())
    output = work / "image-output"
    build(profile, output)
    plan = plan_profile(profile).plan
    entry = _entry(plan, "hv1")
    assert entry.method == "image"
    began = time.monotonic()
    image = images.host_image(profile, "hv1")
    kernel, initramfs = images.deploy_ramdisk()
    TIMINGS["images"] = {"host_and_ramdisk_ready": round(time.monotonic() - began, 1)}
    assets = work / "image-assets"
    for url_path, source in (
        (layout.DEPLOY_KERNEL, kernel),
        (layout.DEPLOY_INITRD, initramfs),
        (layout.host_image("hv1"), image),
        (layout.sha256_sidecar(layout.host_image("hv1")), Path(layout.sha256_sidecar(str(image)))),
    ):
        (assets / url_path).parent.mkdir(parents=True, exist_ok=True)
        (assets / url_path).symlink_to(source)
    assert plan.boot is not None
    server = urlsplit(plan.boot.url).hostname
    prefix = plan.boot.subnet.split("/")[1]
    address = next(a for i in plan.hosts[0].interfaces if i.id == "eno1" for a in i.addresses).split("/")[0]
    with (
        private_libvirtd(work, label="pxeimg") as daemon,
        Fleet(daemon, output, plan, key, work / "image-fleet") as fleet,
    ):
        fleet.wire(9000, (f"{server}/{prefix}",))
        service = BootService(daemon, output, assets, work / "image-serve.log")
        try:
            with fleet.bare_host("hv1", entry.mac, memory_mib=2048) as (domain, started):
                console = (daemon, "hv1")
                lease = service.wait_for(rf"DHCPACK\({WIRE}\) [0-9.]+ {entry.mac} hv1", 180, console)
                fetched = service.wait_for(r"GET /images/hv1\.qcow2 HTTP/1\.[01]\" 200", 300, console)
                written = _wait_console(daemon, "hv1", "kvmnet-deploy: done, rebooting", 600)
                ssh = fleet.ssh("hv1", "admin", address)
                boot = wait_booted(ssh, started, domain, DEPLOY_TIMEOUT)
                booted = Booted("hv1", ssh, boot, domain)
                if ssh.run("test", "-e", layout.REBOOT_MARKER, check=False).returncode == 0:
                    TIMINGS["image hv1 reboot"] = {"boot_to_ssh": booted.reboot().ssh}
                # The image was written to the disk the profile names, grown to fill it,
                # and the host has its own name.
                said = ssh.run(
                    "sh",
                    "-c",
                    "hostname; readlink -f " + str(plan.hosts[0].install.disk) + "; df -B1 --output=size /",
                )
                name, disk, _, size = said.stdout.split()
                assert (name, disk) == ("hv1", "/dev/vda"), said.stdout
                assert int(size) > 7 * 2**30, said.stdout  # an 8 GiB disk; the image is 1.9 GiB
                suite = _verify(fleet, booted, output)
                # A negative control: one value changed on the deployed host fails the
                # suite, naming it.
                ssh.run("sudo", "sysctl", "-q", "-w", "net.core.rmem_max=212992")
                changed = _verify(fleet, booted, output)
                ssh.close()
        finally:
            service.stop()
    TIMINGS["image hv1"] = {
        "power_on_to_lease": round(lease, 1),
        "image_fetched": round(fetched, 1),
        "image_written_and_grown": round(written, 1),
        "power_on_to_ssh": boot.ssh,
        "suite": suite.seconds,
    }
    assert suite.report is not None, suite.said
    outcomes: dict[str, tuple[str, str]] = {r.check: (r.outcome, r.message) for r in suite.report.results}
    failed = {c: o for c, o in outcomes.items() if o[0] == "failed"}
    assert suite.ok and not failed, (failed, suite.said[-3000:])
    for check in (
        "test_kernel_argument[intel_iommu=on]",
        "test_kernel_argument[iommu=pt]",
        "test_root_qdisc[eno1]",
        "test_mtu[eno1]",
        "test_libvirt_answers",
        "test_libvirt_network[br-guest]",
        "test_libvirt_network[br-tenant]",
        "test_user_keys[admin]",
    ):
        assert outcomes.get(check, ("missing", ""))[0] == "passed", (check, sorted(outcomes))
    assert changed.report is not None, changed.said
    now_failed = [r for r in changed.report.results if r.outcome == "failed"]
    assert len(now_failed) == 1 and now_failed[0].check.startswith("test_sysctl"), now_failed
    assert "rmem_max" in now_failed[0].check, now_failed
    assert "212992" in now_failed[0].message and "67108864" in now_failed[0].message, now_failed[0].message


def _wait_console(daemon: Libvirtd, name: str, text: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        shown = console_tail(daemon, name, lines=100_000)
        if text in shown:
            return time.monotonic() - started
        if "kvmnet-deploy: FAILED" in shown:
            pytest.fail(f"the deploy ramdisk failed:\n{console_tail(daemon, name, lines=60)}")
        time.sleep(2)
    pytest.fail(f"no {text!r} on {name}'s console within {timeout:.0f} s:\n{console_tail(daemon, name, 60)}")


def _verify(fleet: Fleet, booted: Booted, output: Path) -> SuiteRun:
    """`kvmnet verify --sudo -t ssh://admin@...`: the login is the profile's own user."""
    report_file = fleet.work / f"verify-{time.monotonic_ns()}.json"
    command = fleet.daemon.command(
        sys.executable,
        *("-m", "generator", "verify", "--sudo", "-t", booted.ssh.target, "-o", str(output)),
        *("--json", str(report_file), booted.name),
    )
    begun = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    report = None
    if report_file.exists():
        data = json.loads(report_file.read_text())
        report = Report(tuple(CheckResult(**r) for r in data["results"]))
    return SuiteRun(
        booted.name,
        result.returncode,
        round(time.monotonic() - begun, 1),
        report,
        result.stdout + result.stderr,
    )
