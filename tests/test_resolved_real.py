"""The generated DNS checks against Debian's real systemd-resolved 252, fed by real networkd.

A host namespace runs systemd-networkd 252 and systemd-resolved 252 (from Debian's
`systemd-resolved` package, unpacked: this machine must not switch its own resolver) on a
private D-Bus bus; its NIC has default.yaml hv1's `DNS=`/`Domains=` (192.0.2.53, example.net).
A DNS namespace across a veth runs dnsmasq, authoritative for a zone. The check library's
dns_servers and dns_resolves then read the namespace through `resolvectl`, as the
generated suite does on a host:

- dnsmasq authoritative for example.net: both pass;
- dnsmasq authoritative for example.org only (the server does not know the site's domain):
  dns_resolves fails, naming the zone and the server.

What only the VM tier can show: the same on a booted hypervisor, with resolv.conf pointed at
the stub by the bootstrap (test_resolver).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator.checks import kvmnet_checks as checks
from generator.pipeline import plan_profile
from generator.renderers.expected import host_state
from tests.support.netplan import apt_download, cache_dir
from tests.support.networkd import NETWORKD, Lab, machine_id, run

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
BUS = "/run/systemd/kvmnet-resolved-bus"
SERVER = "192.0.2.53"

#: The host namespace: tmpfs where networkd and resolved keep state, the unpacked package's
#: resolved user in a passwd of its own, a private system bus, then networkd and resolved.
_HOST = r"""
set -eu
umask 022
pkg=$1 machine_id=$2 files=$3 work=$4
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
mkdir -p /run/systemd/netif/links /run/systemd/netif/leases /run/systemd/netif/lldp /run/systemd/resolve
chown -R systemd-network:systemd-network /run/systemd/netif
mkdir -p /run/systemd/network
cp "$files"/* /run/systemd/network/
chmod -R a+rX /run/systemd/network
cp /etc/passwd "$work/passwd"
cp /etc/group "$work/group"
grep -q '^systemd-resolve:' "$work/passwd" || echo 'systemd-resolve:x:990:990::/run/systemd/resolve:/usr/sbin/nologin' >>"$work/passwd"
grep -q '^systemd-resolve:' "$work/group" || echo 'systemd-resolve:x:990:' >>"$work/group"
mount --bind "$work/passwd" /etc/passwd
mount --bind "$work/group" /etc/group
chown systemd-resolve:systemd-resolve /run/systemd/resolve
mount --bind "$machine_id" /etc/machine-id
mount -o remount,ro /sys
ip link set lo up
dbus-daemon --config-file="$work/bus.conf" --nopidfile --fork
export DBUS_SYSTEM_BUS_ADDRESS="unix:path=/run/systemd/kvmnet-resolved-bus"
/lib/systemd/systemd-networkd >"$work/networkd.log" 2>&1 &
"$pkg/lib/systemd/systemd-resolved" >"$work/resolved.log" 2>&1 &
exec sleep infinity
"""

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@dataclass
class _Result:
    rc: int
    stdout: str
    stderr: str


class _InNamespace:
    """testinfra's `host` for the check library, running each command in the host namespace."""

    def __init__(self, keeper: int, resolvectl: Path) -> None:
        self.keeper = keeper
        self.resolvectl = resolvectl

    def run(self, command: str, *args: str) -> _Result:
        line = (command % args if args else command).removeprefix(checks.SBIN)
        line = (
            line.replace("resolvectl ", f"{self.resolvectl} ", 1) if line.startswith("resolvectl ") else line
        )
        enter = ["nsenter", f"--mount=/proc/{self.keeper}/ns/mnt", f"--net=/proc/{self.keeper}/ns/net", "--"]
        env = ["env", f"DBUS_SYSTEM_BUS_ADDRESS=unix:path={BUS}", "SYSTEMD_COLORS=0", "COLUMNS=200"]
        argv = [*enter, *env, "sh", "-c", line]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
        return _Result(done.returncode, done.stdout, done.stderr)

    def file(self, path: str) -> Any:
        raise NotImplementedError


def _resolved_package() -> Path:
    """Debian's systemd-resolved, unpacked once into the test cache."""
    root = cache_dir() / "systemd-resolved"
    if (root / "lib/systemd/systemd-resolved").exists():
        return root
    downloads = cache_dir() / "resolved-debs"
    downloads.mkdir(parents=True, exist_ok=True)
    apt_download(("systemd-resolved",), downloads)
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in downloads.glob("systemd-resolved_*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    staging.rename(root)
    return root


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in ("dnsmasq", "dbus-daemon", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not available")
    if not NETWORKD.exists():
        pytest.skip(f"{NETWORKD} is not installed")
    bench = Lab(tmp_path_factory.mktemp("resolved"))
    try:
        yield bench
    finally:
        bench.close()


def _hv1_eno1() -> checks.Link:
    """default.yaml hv1's eno1 as its generated suite expects it."""
    planned = plan_profile(REPO / "profiles/default.yaml")
    hv1 = next(h for h in planned.plan.hosts if h.name == "hv1")
    state = json.loads(json.dumps(host_state(planned.plan, hv1, "test")))
    link: checks.Link = next(entry for entry in state["links"] if entry["id"] == "eno1")
    assert link["dns"] == {"servers": [SERVER], "domains": ["example.net"]}
    return link


@pytest.mark.parametrize("zone", ["example.net", "example.org"])
def test_dns_checks_against_real_resolved(zone: str, lab: Lab, tmp_path: Path) -> None:
    try:
        package = _resolved_package()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not fetch Debian's systemd-resolved with apt: {exc}")
    link = _hv1_eno1()
    host, dns = lab.namespace("host"), lab.namespace("dns")
    lab.veth(host, "eno1", peer_ns=dns, peer_name="up0")
    run("ip", "-n", dns, "address", "add", f"{SERVER}/24", "dev", "up0")
    server = subprocess.Popen(
        [
            *("ip", "netns", "exec", dns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null"),
            *("--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={SERVER}"),
            f"--auth-server=ns1.{zone},{SERVER}",
            f"--auth-zone={zone}",
            "--log-queries",
            "--log-facility=-",
        ],
        stdout=(tmp_path / "dnsmasq.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    files = tmp_path / "network"
    files.mkdir()
    # eno1's DNS lines as kvmnet writes them for default.yaml hv1 (the rest of its file
    # needs the VLAN and GRE devices this kernel lacks).
    (files / "10-kvmnet-eno1.network").write_text(
        f"[Match]\nName=eno1\n\n[Network]\nAddress=192.0.2.11/24\nDNS={SERVER}\nDomains=example.net\n"
    )
    identity = tmp_path / "machine-id"
    identity.write_text(machine_id("resolved/hv1") + "\n")
    identity.chmod(0o444)
    (tmp_path / "bus.conf").write_text(_BUS_CONF.format(bus=BUS))
    keeper = subprocess.Popen(
        [
            *("unshare", "-m", "--propagation", "private", "ip", "netns", "exec", host),
            *("sh", "-c", _HOST, "sh", str(package), str(identity), str(files), str(tmp_path)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=(tmp_path / "keeper.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        machine = checks.Machine(_InNamespace(keeper.pid, package / "usr/bin/resolvectl"))

        def ready() -> bool:
            result = machine.host.run("resolvectl dns eno1")
            return result.rc == 0 and SERVER in result.stdout

        if not _wait(ready, 20):
            logs = "".join(
                (tmp_path / n).read_text()
                for n in ("keeper.log", "resolved.log", "networkd.log")
                if (tmp_path / n).exists()
            )
            pytest.fail(f"resolved never had eno1's server:\n{logs}")
        checks.dns_servers(machine, link)
        if zone == "example.net":
            checks.dns_resolves(machine, link)
        else:
            with pytest.raises(pytest.fail.Exception, match=rf"^eno1: example.net SOA through {SERVER}: "):
                checks.dns_resolves(machine, link)
        assert "auth[SOA] example.net" in (tmp_path / "dnsmasq.log").read_text()  # asked the server itself
    finally:
        # Everything started in the host namespace: the keeper, dbus-daemon, networkd, resolved.
        for pid in run("ip", "netns", "pids", host).stdout.split():
            subprocess.run(["kill", "-KILL", pid], check=False)
        keeper.wait(timeout=10)
        server.terminate()
        server.wait(timeout=5)


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False
