"""EL9's firewalld lets the hosts' tunnels in; Debian and Ubuntu have no firewall to open.

- the plan opens each VXLAN device's destination port (its own, an overlay's, or
  Linux's 8472 when none is set) and GRE, on EL9 only;
- the kickstart's `firewall` line passes ksvalidator and pykickstart reads the ports back;
- the bootstrap's firewall step runs for real in the installer's chroot, against
  Debian's `firewall-offline-cmd` (unpacked, never installed): the zone file then holds
  exactly the planned ports and protocols, and a second run adds nothing;
- every EL9 host suite has one firewall check per opening (counted by hand).
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from generator import layout
from generator.load import parse
from generator.model import validate, with_defaults
from generator.plan import make_plan
from generator.plan.types import FirewallPlan, Plan
from generator.renderers import Artifact, render_all
from tests.support import firewalld
from tests.support.pxe import Target, kickstart_scripts

BIN = Path(sys.executable).parent

#: An EL9 host with a VXLAN of no port (Linux's 8472), one of port 4790, an overlay
#: (4789), a gretap and a GRE tunnel; its Debian twin; an EL9 host without tunnels.
PROFILE = """
hosts:
  fw-el:
    distro: el9
    network:
      ethernets: {eno1: {addresses: [192.0.2.10/24]}}
      tunnels:
        vx-plain: {mode: vxlan, id: 100, link: eno1, local: 192.0.2.10, remote: 192.0.2.20}
        vx-port: {mode: vxlan, id: 101, link: eno1, port: 4790, local: 192.0.2.10, remote: 192.0.2.20}
        gt1: {mode: gretap, local: 192.0.2.10, remote: 192.0.2.30}
        gre1: {mode: gre, local: 192.0.2.10, remote: 192.0.2.31}
  fw-deb:
    distro: debian12
    network:
      ethernets: {eno1: {addresses: [192.0.2.11/24]}}
      tunnels:
        vx-plain: {mode: vxlan, id: 100, link: eno1, local: 192.0.2.11, remote: 192.0.2.20}
        gre1: {mode: gre, local: 192.0.2.11, remote: 192.0.2.31}
  fw-none:
    distro: el9
    network:
      ethernets: {eno1: {addresses: [192.0.2.12/24]}}
overlays:
  web: {vni: 5001, hosts: [fw-el, fw-deb], underlay: eno1, bridge: br-web}
"""


def _build() -> tuple[Plan, list[Artifact]]:
    plan = make_plan(validate(with_defaults(parse(PROFILE.encode(), "p.yaml"))))
    return plan, render_all(plan)


def _artifact(artifacts: list[Artifact], path: str) -> Artifact:
    (found,) = [a for a in artifacts if a.path == path]
    return found


def test_el9_opens_each_vxlan_port_and_gre_and_nothing_else_does() -> None:
    plan, _ = _build()
    hosts = {h.name: h for h in plan.hosts}
    assert hosts["fw-el"].firewall == FirewallPlan(udp_ports=(4789, 4790, 8472), protocols=("gre",))
    assert hosts["fw-el"].firewall.ports == ("4789/udp", "4790/udp", "8472/udp")
    assert hosts["fw-deb"].firewall is None  # Debian installs no firewall
    assert hosts["fw-none"].firewall is None  # no tunnel: nothing to open


def test_only_el9_bootstraps_and_kickstarts_touch_the_firewall() -> None:
    _, artifacts = _build()
    assert "firewall" not in _artifact(artifacts, layout.bootstrap("fw-deb")).content.decode()
    assert "firewall" not in _artifact(artifacts, layout.bootstrap("fw-none")).content.decode()
    assert "firewall" not in _artifact(artifacts, layout.pxe_answer("fw-none", "el9")).content.decode()
    script = _artifact(artifacts, layout.bootstrap("fw-el")).content.decode()
    listed = re.search(r"readonly -a FIREWALL=\(\n(.*?)\n\)", script, re.S)
    assert listed is not None
    assert listed.group(1).split("\n") == [
        "  'port 4789/udp'",
        "  'port 4790/udp'",
        "  'port 8472/udp'",
        "  'protocol gre'",
    ]


@pytest.mark.consumer
def test_the_kickstart_opens_the_vxlan_ports(tmp_path: Path) -> None:
    _, artifacts = _build()
    path = tmp_path / "kickstart.cfg"
    path.write_bytes(_artifact(artifacts, layout.pxe_answer("fw-el", "el9")).content)
    result = subprocess.run(
        [str(BIN / "ksvalidator"), "-v", "RHEL9", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "warning" not in result.stdout.lower(), result.stdout + result.stderr
    parser, _ = kickstart_scripts(path)
    firewall = parser.handler.firewall
    assert firewall.enabled is True
    assert firewall.ports == ["4789:udp", "4790:udp", "8472:udp"]
    assert firewall.services == ["ssh"]


def _zone(system_config: Path) -> tuple[list[str], list[str]]:
    """The ports and protocols of firewalld's public zone, as firewall-offline-cmd wrote it."""
    zone = ET.parse(system_config / "zones/public.xml").getroot()
    ports = [f"{p.get('port')}/{p.get('protocol')}" for p in zone.iter("port")]
    return ports, [p.get("value") or "" for p in zone.iter("protocol")]


@pytest.mark.consumer
def test_the_bootstrap_opens_the_firewall_offline_in_the_installers_chroot(tmp_path: Path) -> None:
    """The kickstart's %post runs the bootstrap offline in the chroot, as anaconda does;
    firewall-offline-cmd is Debian's real one, writing to the target's /etc/firewalld."""
    tool = firewalld.fetch()
    _, artifacts = _build()
    target = Target(tmp_path / "target")
    target.prepare("el9")
    etc = target.root / "etc/firewalld"
    etc.mkdir(parents=True)
    etc.joinpath("firewalld.conf").write_bytes(tool.conf.read_bytes())
    # firewalld checks protocol names against /etc/protocols (EL9's `setup` package).
    for name in ("protocols", "services"):
        (target.root / "etc" / name).write_bytes(Path("/etc", name).read_bytes())
    # Inside the chroot, the target's /etc/firewalld is /etc/firewalld; the unpacked
    # package is reached through the path it has outside (bind-mounted by the driver).
    stub = target.root / "kvmnet-stubs/firewall-offline-cmd"
    stub.write_text(tool.offline_cmd("/etc/firewalld"))
    stub.chmod(0o755)
    inside = target.root / str(tool.root).lstrip("/")
    inside.mkdir(parents=True)
    target.add(f"mount --bind {tool.root} {inside}")
    kickstart = tmp_path / "kickstart.cfg"
    kickstart.write_bytes(_artifact(artifacts, layout.pxe_answer("fw-el", "el9")).content)
    _, scripts = kickstart_scripts(kickstart)
    target.add(scripts["post"], chrooted=True)
    # The bootstrap again, as on the first boot, offline: it finds everything open.
    target.add(f"{layout.BUNDLED_BOOTSTRAP} --offline", chrooted=True)
    result = target.run()
    log = target.log("run.log")
    assert result.returncode == 0, log + result.stderr
    assert _zone(etc) == (["4789/udp", "4790/udp", "8472/udp"], ["gre"])
    added = [line for line in log.splitlines() if "firewall-offline-cmd --add-" in line]
    assert added == [
        "kvmnet-bootstrap: firewall-offline-cmd --add-port=4789/udp",
        "kvmnet-bootstrap: firewall-offline-cmd --add-port=4790/udp",
        "kvmnet-bootstrap: firewall-offline-cmd --add-port=8472/udp",
        "kvmnet-bootstrap: firewall-offline-cmd --add-protocol=gre",
    ], log


@pytest.mark.consumer
def test_each_el9_host_suite_checks_each_opening(tmp_path: Path) -> None:
    _, artifacts = _build()
    state = _artifact(artifacts, layout.expected_state("host", "fw-el")).content.decode()
    assert '"firewall": [' in state
    suite = _artifact(artifacts, layout.suite("host", "fw-el")).content.decode()
    assert "def test_firewall_lets_tunnels_in(" in suite
    for name in ("fw-deb", "fw-none"):
        assert "test_firewall" not in _artifact(artifacts, layout.suite("host", name)).content.decode()
        assert '"firewall": []' in _artifact(artifacts, layout.expected_state("host", name)).content.decode()
    tests = tmp_path / "tests"
    for artifact in artifacts:
        if artifact.path.startswith(f"{layout.TESTS}/"):
            (tmp_path / artifact.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / artifact.path).write_bytes(artifact.content)
    counted = subprocess.run(
        [
            sys.executable,
            "-B",
            "-c",
            "import sys, test_host_fw_el as m; sys.path.insert(0, '.');"
            "print([len(k.args[1]) for k in m.test_firewall_lets_tunnels_in.pytestmark if k.name == 'parametrize'])",
        ],
        cwd=tests,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tests), "PATH": "/usr/bin:/bin"},
    )
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.strip() == "[4]"  # 4789, 4790, 8472/udp and gre


@pytest.mark.consumer
def test_the_el9_bootstrap_passes_shellcheck(tmp_path: Path) -> None:
    _, artifacts = _build()
    path = tmp_path / "bootstrap.sh"
    path.write_bytes(_artifact(artifacts, layout.bootstrap("fw-el")).content)
    result = subprocess.run(
        ["shellcheck", "--format=gcc", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout
