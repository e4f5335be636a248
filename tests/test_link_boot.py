"""A name-matched NIC's `.link` applies at boot, when the NIC still has the kernel's name.

Issue 14, finding 5. At a NIC's "add" event udev picks the `.link` before it renames the
NIC (80-net-setup-link.rules), so `OriginalName=eno2` sees `veth0`/`eth0` and never
matches at boot. kvmnet matches the name udev is about to give, which net_id has just
exported (generator/plan/naming.py). Here Debian's udevadm processes the whole "add" event
of a kernel-named veth (`udevadm test --action=add`: net_id, then net_setup_link, then
the rename) with the generated files. The veth has no PCI parent, so the property net_id
would export on an onboard NIC is set by a rule just before net_id's (tests/support/udev.py).
A VM's reboot proves the rest (tests/test_vm.py, the lead's tier).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.checks import kvmnet_checks as checks
from generator.pipeline import artifacts_for, plan_profile
from generator.renderers.expected import host_state
from tests.support import udev

pytestmark = pytest.mark.networkd

PROFILE = """\
hosts:
  hv1:
    network:
      ethernets:
        eno2: {mtu: 1400, tcp-segmentation-offload: false}
"""


@pytest.fixture
def kernel_named(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A namespace and a veth in it named by the kernel (veth0: name_assign_type enum)."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, ip and unshare: network namespaces and mounts")
    ns = f"kn-linkboot-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "type", "veth"], check=True)
        yield ns, "veth0"
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


@pytest.fixture(scope="module")
def udevadm() -> udev.Udevadm:
    try:
        return udev.fetch()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"could not fetch Debian's udev with apt: {exc}")


def _profile(tmp_path: Path) -> Path:
    profile = tmp_path / "p.yaml"
    profile.write_text(PROFILE)
    return profile


def _links(tmp_path: Path) -> dict[str, bytes]:
    return {
        Path(a.path).name: a.content
        for a in artifacts_for(plan_profile(_profile(tmp_path)))
        if a.path.startswith("hosts/hv1/rootfs/") and a.path.endswith(".link")
    }


def _offload_problems(ns: str, device: str, tmp_path: Path) -> list[str]:
    """What the generated suite's offload check finds wrong, read with the real ethtool."""
    if shutil.which("ethtool") is None:
        pytest.skip("ethtool is not installed: offloads cannot be read")
    plan = plan_profile(_profile(tmp_path)).plan
    [link] = [entry for entry in host_state(plan, plan.hosts[0], "")["links"] if "offloads" in entry]
    shown = subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-k", device], capture_output=True, text=True, check=True
    )
    features = checks.features_in(shown.stdout)
    return [p for o in link["offloads"] if (p := checks.offload_problem(o, features))]


def _mtu(ns: str, device: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", device], capture_output=True, check=True)
    return int(json.loads(out.stdout)[0]["mtu"])


def test_matched_at_the_add_event_and_renamed(
    kernel_named: tuple[str, str], udevadm: udev.Udevadm, tmp_path: Path
) -> None:
    ns, device = kernel_named
    links = _links(tmp_path)
    assert list(links) == ["10-kvmnet-eno2.link"]
    assert b"Property=ID_NET_NAME_ONBOARD=eno2\n" in links["10-kvmnet-eno2.link"]
    setup = udevadm.add_event(ns, device, links, {"ID_NET_NAME_ONBOARD": "eno2"}, tmp_path / "u")
    log = "\n".join(setup.log)
    assert setup.returncode == 0, log
    assert setup.syntax_warnings() == [], log
    assert setup.properties["ID_NET_LINK_FILE"] == f"{udev.LINK_DIR}/10-kvmnet-eno2.link", log
    assert setup.properties["ID_NET_NAME"] == "eno2", log
    # udevadm test renames the device, and net_setup_link set our MTU and offload on it
    assert _mtu(ns, "eno2") == 1400, log
    assert _offload_problems(ns, "eno2", tmp_path) == []


def test_original_name_would_not_match(
    kernel_named: tuple[str, str], udevadm: udev.Udevadm, tmp_path: Path
) -> None:
    """The negative control: the file as kvmnet wrote it before (OriginalName=eno2) loses
    to 99-default.link at the same event; the NIC is still named eno2, without our MTU,
    and the generated offload check says so."""
    ns, device = kernel_named
    [(name, content)] = _links(tmp_path).items()
    old = content.replace(b"Property=ID_NET_NAME_ONBOARD=eno2", b"OriginalName=eno2")
    setup = udevadm.add_event(ns, device, {name: old}, {"ID_NET_NAME_ONBOARD": "eno2"}, tmp_path / "u")
    log = "\n".join(setup.log)
    assert setup.returncode == 0, log
    assert setup.properties["ID_NET_LINK_FILE"] == f"{udev.LINK_DIR}/99-default.link", log
    assert setup.properties["ID_NET_NAME"] == "eno2", log
    assert _mtu(ns, "eno2") == 1500, log
    assert _offload_problems(ns, "eno2", tmp_path) == [
        "TCPSegmentationOffload=no: expected off, found tx-tcp-segmentation on"
    ]
