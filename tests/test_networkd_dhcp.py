"""DHCP on a bridge keeps the installer's lease: real systemd-networkd 252 against a real dnsmasq.

An installer asks for its address with the NIC's MAC (and, from networkd, client-id type 1
plus that MAC). Once kvmnet's files make the NIC a bridge port and the bridge runs DHCP,
networkd 252 by default gives the bridge a MAC derived from the machine-id and asks with
a DUID: the DHCP server sees a new client, and the host's address changes at first boot.
kvmnet writes `MACAddress=none` in the bridge's .netdev (the kernel then gives the bridge
its port's MAC) and `ClientIdentifier=mac`. Here the host of profiles/single-bridge.yaml
runs on exactly its generated files in a namespace, its NIC a veth whose peer is served by
dnsmasq with an address reserved for the NIC's MAC; dnsmasq's lease file shows what the
request carried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator import layout
from generator.pipeline import artifacts_for, plan_profile
from tests.support.networkd import NETWORKD, WARNING, Lab, run, wait_for

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles/single-bridge.yaml"
HOST = "kvm1"
NIC_MAC = "52:54:00:12:34:56"  # the veth standing in for enp1s0
SERVER = "192.0.2.1"
RESERVED = "192.0.2.77"  # dnsmasq's reservation for NIC_MAC: the installer's lease


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and mounts")
    for tool in ("unshare", "ip", "dnsmasq"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not available (dnsmasq: apt-get install dnsmasq-base)")
    if not NETWORKD.exists():
        pytest.skip(f"{NETWORKD} is not installed")
    bench = Lab(tmp_path_factory.mktemp("dhcp"))
    try:
        yield bench
    finally:
        bench.close()


def host_files() -> dict[str, bytes]:
    prefix = f"{layout.rootfs_file(HOST, layout.NETWORKD_DIR)}/"
    return {
        a.path.removeprefix(prefix): a.content
        for a in artifacts_for(plan_profile(PROFILE))
        if a.path.startswith(prefix)
    }


def test_the_generated_files_ask_as_the_installer_did() -> None:
    files = host_files()
    bridge = next(v.decode() for k, v in files.items() if k.endswith("br0.netdev"))
    network = next(v.decode() for k, v in files.items() if k.endswith("br0.network"))
    assert "\nMACAddress=none\n" in bridge
    assert "\nClientIdentifier=mac\n" in network


def test_bridge_takes_the_port_mac_and_keeps_the_lease(lab: Lab, tmp_path: Path) -> None:
    host, server = lab.namespace("host"), lab.namespace("dhcpd")
    lab.veth(host, "enp1s0", mac=NIC_MAC, peer_ns=server, peer_name="up0")
    run("ip", "-n", server, "address", "add", f"{SERVER}/24", "dev", "up0")
    leases = tmp_path / "leases"
    log = tmp_path / "dnsmasq.log"
    with log.open("w") as out:
        dnsmasq = subprocess.Popen(
            [
                *("ip", "netns", "exec", server, "dnsmasq", "--no-daemon", "--conf-file=/dev/null"),
                *("--port=0", "--interface=up0", "--bind-interfaces", "--log-dhcp", "--log-facility=-"),
                f"--dhcp-leasefile={leases}",
                "--dhcp-range=192.0.2.100,192.0.2.150,1h",
                f"--dhcp-host={NIC_MAC},{RESERVED}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        daemon = lab.networkd(host, host_files(), seed=f"single-bridge/{HOST}")

        def leased() -> bool:
            return leases.exists() and RESERVED in leases.read_text()

        got = wait_for(leased, timeout=20)
        links = run("ip", "-n", host, "-br", "link").stdout
        addresses = run("ip", "-n", host, "-br", "-4", "address", "show", "dev", "br0").stdout
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(timeout=5)
    problems = [e.message for e in daemon.entries() if e.priority <= WARNING]
    assert not problems, problems
    bridge_mac = next(line.split()[2] for line in links.splitlines() if line.startswith("br0 "))
    assert bridge_mac == NIC_MAC, links
    assert got, f"no lease for {RESERVED}:\n{log.read_text()}"
    # dnsmasq's lease line: expiry, MAC, address, name, client-id ("01:" = type 1, Ethernet)
    (lease,) = leases.read_text().splitlines()
    _, mac, address, _, client_id = lease.split()
    assert (mac, address, client_id) == (NIC_MAC, RESERVED, f"01:{NIC_MAC}")
    assert f"{RESERVED}/24" in addresses
