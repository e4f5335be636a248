"""Debian 12's `udevadm`, the real consumer of `.link` files (networkd never reads them).

Fetched with apt and unpacked into the test cache like netplan (tests/support/netplan.py);
the binary runs with the system's libsystemd-shared-252. `udevadm test-builtin
net_setup_link` does what udev does for a new NIC: picks the first matching .link file,
applies its settings (MTU, WakeOnLan...) and computes the name udev would give the device
(ID_NET_NAME), without renaming it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.netplan import apt_download, cache_dir
from tests.support.networkd import adapt_for_veth

PACKAGE = "udev"
VERSION_PREFIX = "252."
LINK_DIR = "/etc/systemd/network"
#: log_syntax() prefixes every complaint about a file with `path:line:`.
_SYNTAX = re.compile(r"^/\S+:\d+: |Unknown (key|section|lvalue)|Failed to parse")

_RUN = r"""
set -eu
files=$1 ns=$2 udevadm=$3 device=$4
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
cp "$files"/* /etc/systemd/network/
exec ip netns exec "$ns" "$udevadm" test-builtin net_setup_link "/sys/class/net/$device"
"""


#: `udevadm test --action=add`: the whole rule set of Debian's udev as at a NIC's "add"
#: event, net_id (75-net-description.rules) before net_setup_link (80-net-setup-link.rules),
#: plus one rule standing in for what net_id exports on hardware the sandbox lacks.
_ADD = r"""
set -eu
files=$1 rules=$2 ns=$3 udevadm=$4 device=$5
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/network
cp "$files"/* /etc/systemd/network/
# only these rules: the machine's own (systemd's 99-systemd.rules...) hidden
mount -t tmpfs -o mode=0755 tmpfs /lib/udev/rules.d
cp "$rules"/* /lib/udev/rules.d/
exec ip netns exec "$ns" "$udevadm" test --action=add "/sys/class/net/$device"
"""
#: The rules of the udev package that name a NIC: the net_id import and net_setup_link.
NAMING_RULES = ("75-net-description.rules", "80-net-setup-link.rules")


@dataclass(frozen=True)
class LinkSetup:
    """What net_setup_link reported for one device."""

    returncode: int
    properties: Mapping[str, str]  # ID_NET_LINK_FILE=, ID_NET_NAME=...
    log: tuple[str, ...]

    def syntax_warnings(self) -> list[str]:
        return [line for line in self.log if _SYNTAX.search(line)]

    def parsed(self) -> set[str]:
        found = (re.fullmatch(r'Parsed configuration file "(.+)"', line) for line in self.log)
        return {match.group(1) for match in found if match}


@dataclass(frozen=True)
class Udevadm:
    root: Path  # where the .deb was unpacked

    @property
    def binary(self) -> Path:
        return self.root / "bin/udevadm"

    def net_setup_link(
        self, ns: str, device: str, link_files: Mapping[str, bytes], workdir: Path
    ) -> LinkSetup:
        """Run net_setup_link for `device` in `ns` with exactly `link_files` in /etc/systemd/network.

        The files get the same PermanentMACAddress= adaptation as networkd's (see
        adapt_for_veth); a private mount namespace keeps the host's own .link files out.
        """
        workdir.mkdir(parents=True)
        for name, content in link_files.items():
            (workdir / name).write_text(adapt_for_veth(content.decode()))
        result = subprocess.run(
            [
                *("unshare", "-m", "--propagation", "private", "sh", "-c", _RUN, "sh"),
                *(str(workdir), ns, str(self.binary), device),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        properties = dict(
            line.split("=", 1) for line in result.stdout.splitlines() if re.match(r"^[A-Z_]+=", line)
        )
        return LinkSetup(result.returncode, properties, tuple(result.stderr.splitlines()))

    def add_event(
        self,
        ns: str,
        device: str,
        link_files: Mapping[str, bytes],
        hardware: Mapping[str, str],
        workdir: Path,
    ) -> LinkSetup:
        """Process an "add" event of `device` in `ns` with Debian's naming rules, as at boot:
        net_id, then net_setup_link picking among `link_files` (plus 99-default.link) and
        renaming the device.

        The sandbox has no PCI NIC, so net_id exports no ID_NET_NAME_ONBOARD/SLOT/PATH for a
        veth: `hardware` are those properties as net_id exports them on the NIC simulated
        (systemd.net-naming-scheme(7)), set by a rule that runs just before net_id's.
        """
        files, rules = workdir / "links", workdir / "rules"
        files.mkdir(parents=True)
        rules.mkdir()
        for name, content in link_files.items():
            (files / name).write_text(adapt_for_veth(content.decode()))
        shutil.copy(self.root / "lib/systemd/network/99-default.link", files)
        for name in NAMING_RULES:
            shutil.copy(self.root / "lib/udev/rules.d" / name, rules)
        assigns = "".join(f', ENV{{{key}}}="{value}"' for key, value in sorted(hardware.items()))
        (rules / "74-kvmnet-test-hardware.rules").write_text(
            f'SUBSYSTEM=="net", KERNEL=="{device}"{assigns}\n'
        )
        result = subprocess.run(
            [
                *("unshare", "-m", "--propagation", "private", "sh", "-c", _ADD, "sh"),
                *(str(files), str(rules), ns, str(self.binary), device),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        # udevadm test prints the event's properties on stdout, its log on stderr
        properties = dict(
            line.split("=", 1) for line in result.stdout.splitlines() if re.match(r"^[A-Z_]+=", line)
        )
        return LinkSetup(result.returncode, properties, tuple(result.stderr.splitlines()))


def fetch() -> Udevadm:
    """Download and unpack Debian 12's udev once; later calls reuse the cache."""
    root = cache_dir() / "udev-252"
    if (root / "bin/udevadm").exists():
        return Udevadm(root)
    downloads = cache_dir() / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is needed to fetch Debian's udev")
    apt_download((PACKAGE,), downloads)
    debs = sorted(downloads.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {PACKAGE} left no .deb in {downloads}")
    deb = debs[-1]
    if not deb.name.split("_")[1].startswith(VERSION_PREFIX):
        raise RuntimeError(f"{deb.name}: expected udev {VERSION_PREFIX}x, as in Debian 12")
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    staging.rename(root)
    return Udevadm(root)
