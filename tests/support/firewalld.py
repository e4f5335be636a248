"""Debian's firewalld, for its `firewall-offline-cmd`: fetched with apt, never installed.

The .debs (firewalld, python3-firewall, python3-nftables) are unpacked into the test
cache (KVMNET_TEST_CACHE) and run with this machine's /usr/bin/python3, which has the
other dependencies (python3-dbus, python3-gi, libnftables1). Nothing is installed, no
service is started, and `--system-config`/`--default-config` keep every file it writes
in a directory the test names. Debian 12 ships firewalld 1.3, EL9 1.2: the offline
command's options used here (`--query-`/`--add-port`, `--query-`/`--add-protocol`) are
the same in both.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.netplan import apt_download, cache_dir

PACKAGES = ("firewalld", "python3-firewall", "python3-nftables")


@dataclass(frozen=True)
class Firewalld:
    root: Path  # where the .debs were unpacked

    @property
    def defaults(self) -> Path:
        """firewalld's default configuration (zones, services) as the package ships it."""
        return self.root / "usr/lib/firewalld"

    @property
    def conf(self) -> Path:
        """The package's /etc/firewalld/firewalld.conf (default zone: public)."""
        return self.root / "etc/firewalld/firewalld.conf"

    def offline_cmd(self, system_config: str) -> str:
        """A `firewall-offline-cmd` script running the real one on `system_config`."""
        return (
            "#!/bin/sh\n"
            f"PYTHONPATH={self.root}/usr/lib/python3/dist-packages exec /usr/bin/python3 "
            f"{self.root}/usr/bin/firewall-offline-cmd --system-config={system_config} "
            f'--default-config={self.defaults} "$@"\n'
        )


def fetch() -> Firewalld:
    """Download and unpack firewalld once; later calls reuse the cache."""
    root = cache_dir() / "firewalld"
    if (root / "usr/bin/firewall-offline-cmd").exists():
        return Firewalld(root)
    downloads = cache_dir() / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is needed to fetch Debian's firewalld")
    apt_download(PACKAGES, downloads)
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(downloads.glob("*.deb")):
        if deb.name.split("_")[0] in PACKAGES:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    staging.rename(root)
    return Firewalld(root)
