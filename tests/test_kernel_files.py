"""Kernel tuning files, checked against real kernels and shells.

- modules-load.d: every module must exist in Debian 12's kernel package (a .ko file or
  listed in modules.builtin), which is fetched with apt like the other consumers.
- sysctl.d: every key kvmnet knows must exist under /proc/sys of a running kernel, and
  the generated values of the per-network-namespace keys are written for real, with
  `sysctl -w`, in a throw-away namespace (global keys would change the machine).
- GRUB drop-in: `bash -n` passes, and sourcing it with sh, as update-grub does, appends
  exactly the planned arguments to what /etc/default/grub already had.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from generator import layout
from generator.layout import HOST_GRUB as GRUB
from generator.layout import HOST_MODULES as MODULES
from generator.layout import HOST_SYSCTL as SYSCTL
from generator.model.sysctls import KNOWN
from generator.pipeline import artifacts_for, plan_profile
from tests.support.kernel_gaps import kernel_gap
from tests.support.netplan import apt_download, cache_dir

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
KERNEL_PACKAGE = "linux-image-amd64"  # Debian 12's metapackage; pulls the current 6.1 image


def generated(path: str) -> list[tuple[str, str, str]]:
    """(profile, host, text) of every host's generated file at machine path `path`."""
    out = []
    for profile in PROFILES:
        for artifact in artifacts_for(plan_profile(profile)):
            host = layout.host_of(artifact.path)
            if host is not None and artifact.path == layout.rootfs_file(host, path):
                out.append((profile.stem, host, artifact.content.decode()))
    return out


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- modules -------------------------------------------------------------------------------


@cache
def debian_modules() -> frozenset[str]:
    """Module names of Debian 12's kernel: loadable (.ko) and built in."""
    root = cache_dir() / "linux-image"
    listing = root / "modules.txt"
    if not listing.exists():
        root.mkdir(parents=True, exist_ok=True)
        for old in root.glob("*.deb"):
            old.unlink()
        version = subprocess.run(
            ["apt-cache", "depends", "--important", KERNEL_PACKAGE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        image = re.search(r"Depends: (linux-image-6\.1\.\S+-amd64)", version)
        assert image, f"cannot tell which kernel {KERNEL_PACKAGE} depends on:\n{version}"
        apt_download((image.group(1),), root)
        (deb,) = root.glob("*.deb")
        contents = subprocess.run(
            ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
        ).stdout
        names = set(re.findall(r"/([^/\s]+)\.ko(?:\.xz)?$", contents, flags=re.M))
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        builtin = subprocess.run(
            ["tar", "-xO", "--wildcards", "./lib/modules/*/modules.builtin"],
            input=tar,
            capture_output=True,
            check=True,
        ).stdout.decode()
        names |= {Path(line).stem for line in builtin.split()}
        listing.write_text("\n".join(sorted(n.replace("-", "_") for n in names)) + "\n")
        deb.unlink()  # 70 MB; the list is what the tests need
    return frozenset(listing.read_text().split())


def test_the_module_list_is_real() -> None:
    modules = debian_modules()
    assert len(modules) > 3000
    assert {"vhost_net", "bridge", "8021q", "vxlan", "sch_htb"} <= modules
    assert "vhost_nett" not in modules


@pytest.mark.parametrize(
    ("profile", "host", "text"), generated(MODULES), ids=lambda v: v if len(v) < 40 else ""
)
def test_every_module_exists_in_debians_kernel(profile: str, host: str, text: str) -> None:
    wanted = lines(text)
    assert "vhost_net" in wanted
    missing = [m for m in wanted if m.replace("-", "_") not in debian_modules()]
    assert not missing, f"{profile}/{host}: no such module in Debian 12's kernel: {missing}"


# --- sysctls -------------------------------------------------------------------------------


def proc_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def test_every_known_sysctl_exists_in_a_running_kernel() -> None:
    missing = [k for k in KNOWN if not proc_path(k.replace("<iface>", "all")).exists()]
    assert not missing, f"kvmnet knows sysctls this kernel does not have: {missing}"


@pytest.fixture(scope="module")
def scratch_ns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    name = f"kn-{os.getpid()}-sysctl"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def sysctl_w(ns: str, key: str, value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-w", f"{key}={value}"],
        capture_output=True,
        text=True,
        check=False,
    )


def writable_in_namespace(ns: str, key: str) -> bool:
    """Writing the value already there changes nothing, and fails where the key is global."""
    current = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-n", key], capture_output=True, text=True, check=True
    )
    result = sysctl_w(ns, key, " ".join(current.stdout.split()))
    return result.returncode == 0 and not result.stderr


@pytest.mark.parametrize(
    ("profile", "host", "text"), generated(SYSCTL), ids=lambda v: v if len(v) < 40 else ""
)
def test_sysctl_file_is_accepted_by_the_kernel(profile: str, host: str, text: str, scratch_ns: str) -> None:
    written = 0
    for line in lines(text):
        optional = line.startswith("-")
        key, value = (part.strip() for part in line.lstrip("-").split("=", 1))
        assert key in KNOWN or re.sub(r"\.conf\.[^.]+\.", ".conf.<iface>.", key) in KNOWN, key
        exists = (
            subprocess.run(
                ["ip", "netns", "exec", scratch_ns, "test", "-e", str(proc_path(key))], check=False
            ).returncode
            == 0
        )
        if not exists:
            # Not per network namespace (or its module is not loaded): the name was checked
            # against the kernel above; writing it here would change the whole machine.
            assert optional or proc_path(key).exists(), f"{key} does not exist"
            continue
        if not writable_in_namespace(scratch_ns, key):
            continue  # shown in every namespace but only the initial one may change it
        result = sysctl_w(scratch_ns, key, value)
        if result.stderr and key == "net.ipv4.tcp_congestion_control":
            kernel_gap(f"this kernel has no {value} congestion control: {result.stderr.strip()}")
        # procps' sysctl prints the error but may still exit 0: stderr is the verdict.
        assert result.returncode == 0 and not result.stderr, f"{key}={value}: {result.stderr}"
        read = subprocess.run(
            ["ip", "netns", "exec", scratch_ns, "sysctl", "-n", key],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert read.split() == value.split(), f"{key}: wrote {value!r}, read {read!r}"
        written += 1
    assert written, f"{profile}/{host}: nothing could be written in a namespace"


# --- GRUB ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "host", "text"), generated(GRUB), ids=lambda v: v if len(v) < 40 else "")
def test_grub_drop_in_appends_the_planned_arguments(
    profile: str, host: str, text: str, tmp_path: Path
) -> None:
    drop_in = tmp_path / "90-kvmnet.cfg"
    drop_in.write_text(text)
    assert subprocess.run(["bash", "-n", str(drop_in)], check=False).returncode == 0
    args = plan_profile(REPO / "profiles" / f"{profile}.yaml").plan
    cmdline = " ".join(next(h for h in args.hosts if h.name == host).kernel.cmdline)
    for before, after in (("quiet", f"quiet {cmdline}"), ("", cmdline)):
        script = f'GRUB_CMDLINE_LINUX="{before}"\n. {drop_in}\nprintf %s "$GRUB_CMDLINE_LINUX"'
        result = subprocess.run(
            [shutil.which("dash") or "sh", "-c", script], capture_output=True, text=True, check=True
        )
        assert result.stdout == after


def test_grub_drop_in_only_where_update_grub_reads_it() -> None:
    for profile in PROFILES:
        plan = plan_profile(profile).plan
        paths = {a.path for a in artifacts_for(plan_profile(profile))}
        for host in plan.hosts:
            has = layout.rootfs_file(host.name, GRUB) in paths
            assert has == (bool(host.kernel.cmdline) and host.install.distro != "el9"), (
                profile.stem,
                host.name,
            )
