"""Debian's netplan 0.106 `generate`, used as an oracle: fetched with apt, never vendored.

netplan is GPL-3.0; only its binary is run here, from the .deb Debian ships, unpacked
into a cache directory (KVMNET_TEST_CACHE, default `.cache/` in the repository).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("netplan.io", "libnetplan0")
VERSION_PREFIX = "0.106"


def cache_dir() -> Path:
    return Path(os.environ.get("KVMNET_TEST_CACHE", REPO / ".cache"))


@dataclass(frozen=True)
class Netplan:
    root: Path  # where the .debs were unpacked

    @property
    def generate(self) -> Path:
        return self.root / "usr/libexec/netplan/generate"

    def env(self) -> dict[str, str]:
        return {**os.environ, "LD_LIBRARY_PATH": str(self.root / "usr/lib/x86_64-linux-gnu")}

    def run(self, yaml_text: str, root_dir: Path) -> subprocess.CompletedProcess[str]:
        """Write `yaml_text` as ROOT/etc/netplan/10-kvmnet.yaml and run generate on ROOT."""
        config = root_dir / "etc/netplan"
        config.mkdir(parents=True, exist_ok=True)
        path = config / "10-kvmnet.yaml"
        path.write_text(yaml_text)
        path.chmod(0o600)  # netplan warns about world-readable configs
        return subprocess.run(
            [str(self.generate), "--root-dir", str(root_dir)],
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )


def apt_download(packages: tuple[str, ...], into: Path) -> None:
    """`apt-get download`, refreshing the package index once if it is missing or stale."""
    command = ["apt-get", "download", *packages]
    if subprocess.run(command, cwd=into, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(command, cwd=into, check=True, capture_output=True)


def fetch() -> Netplan:
    """Download and unpack netplan 0.106 once; later calls reuse the cache."""
    root = cache_dir() / "netplan-0.106"
    if (root / "usr/libexec/netplan/generate").exists():
        return Netplan(root)
    downloads = cache_dir() / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is needed to fetch Debian's netplan.io")
    apt_download(PACKAGES, downloads)
    staging = root.with_name(root.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for deb in sorted(downloads.glob("*.deb")):
        if deb.name.split("_")[0] in PACKAGES:
            version = deb.name.split("_")[1]
            if not version.startswith(VERSION_PREFIX):
                raise RuntimeError(f"{deb.name}: expected netplan {VERSION_PREFIX}, as in Debian 12")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    staging.rename(root)
    return Netplan(root)
