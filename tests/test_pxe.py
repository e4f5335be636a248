"""PXE answer files, read and run by their consumers.

Every host of every bundled profile, plus hosts covering each distro's variants and a
profile of the nastiest values the validators still accept:
- kickstarts pass pykickstart's `ksvalidator -v RHEL9`, and anaconda's own parser reads
  back exactly the profile's values;
- preseeds pass `debconf-set-selections -c`, and the real debconf stores exactly the
  profile's values;
- autoinstall files are `#cloud-config` YAML of the shape Subiquity documents;
- the installer's commands (the %post, the late_command, the late-commands) run for real
  against a chroot: the bundle unpacks to bootstrap.sh and rootfs/ byte for byte with
  modes, the offline bootstrap installs the rootfs, the network is handed to networkd,
  the first-boot unit is enabled and passes `systemd-analyze verify`, and no canary fires;
- every shell script in them passes shellcheck;
- building twice gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import jsonschema
import pytest
import yaml
from pykickstart.constants import DISPLAY_MODE_TEXT

from generator import layout
from generator.layout import from_root
from generator.load import parse
from generator.model import validate, with_defaults
from generator.pipeline import artifacts_for, plan_profile
from generator.plan import make_plan
from generator.plan.types import HostPlan, Plan
from generator.renderers import DELIVERY, Artifact, pxe, render_all
from generator.renderers.bundle import host_members, tarball
from tests.support.cli import kvmnet
from tests.support.pxe import (
    AUTOINSTALL_SCHEMA,
    INSTALLER_RESOLV_CONF,
    Target,
    debconf_check,
    debconf_values,
    heredoc,
    kickstart_scripts,
    serve,
    shellcheck,
)

pytestmark = pytest.mark.consumer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Each distro's other branches: no mirror or EPEL, a given disk, https, 22.04.
VARIANTS = """
hosts:
  el-bare:
    distro: el9
    install: {disk: sdb, timezone: Europe/Berlin}
    kernel: {cmdline: [intel_iommu=on]}
  el-dns:
    distro: el9
    kernel: {cmdline: [iommu=pt]}
    network:
      ethernets:
        eno1:
          addresses: [192.0.2.10/24]
          nameservers: {addresses: [192.0.2.53], search: [example.net]}
  el-byid:
    distro: el9
    install: {disk: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4}
  deb-bypath:
    distro: debian12
    install: {disk: "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"}
  deb-https:
    distro: debian12
    install: {mirror: "https://mirror.example.net:8443/debian/", disk: nvme0n1, timezone: America/New_York}
  jammy:
    distro: ubuntu2204
    install: {mirror: "http://mirror.example.net/ubuntu/", disk: vda}
    kernel: {cmdline: [iommu=pt], ipv6: removed}
    network:
      ethernets:
        ens1: {dhcp4: true, nameservers: {addresses: [192.0.2.53]}}
"""

#: What the validators still accept, at its nastiest: every character the mirror-URL rule
#: lets through besides letters and digits (. _ ~ : / % + -, percent-escapes of shell
#: syntax), option-like time zones and kernel arguments, and a canary command wherever a
#: word could be run.
HOSTILE = """
hosts:
  kvmnet-canary:
    distro: el9
    install:
      mirror: "http://m.example:8080/--kvmnet-canary/%3Bkvmnet-canary%3B/~+:/-x_y.z"
      epel: "https://--kvmnet-canary/%60kvmnet-canary%60/%24%28kvmnet-canary%29/"
      timezone: --nontp
    kernel: {cmdline: ["--append=x", kvmnet-canary, "a=b,c:d/e+f@g-h"]}
  canary-deb:
    distro: debian12
    install: {mirror: "http://m.example/-/kvmnet-canary/%26%26kvmnet-canary/debian/", timezone: "-x/+y_z"}
    kernel: {cmdline: ["--", kvmnet-canary]}
  canary-ubu:
    distro: ubuntu2404
    install: {mirror: "https://m.example:1/--/kvmnet-canary+~/", timezone: --utc}
    kernel: {cmdline: [kvmnet-canary, "x=@:,"]}
"""


def _from_text(text: str) -> tuple[Plan, list[Artifact]]:
    plan = make_plan(validate(with_defaults(parse(text.encode(), "p.yaml"))))
    return plan, render_all(plan)


def _from_profile(path: Path) -> tuple[Plan, list[Artifact]]:
    planned = plan_profile(path)
    return planned.plan, list(artifacts_for(planned))


BUILDS = {p.stem: _from_profile(p) for p in sorted((REPO / "profiles").glob("*.yaml"))}
BUILDS["variants"] = _from_text(VARIANTS)
BUILDS["hostile"] = _from_text(HOSTILE)
CASES = [(name, host.name) for name, (plan, _) in BUILDS.items() for host in plan.hosts]
IDS = [f"{name}-{host}" for name, host in CASES]


def _case(name: str, host_name: str) -> tuple[HostPlan, list[Artifact], Artifact]:
    plan, artifacts = BUILDS[name]
    host = next(h for h in plan.hosts if h.name == host_name)
    path = layout.pxe_answer(host_name, host.install.distro)
    found = [a for a in artifacts if a.path == path]
    assert len(found) == 1, f"no {path}"
    return host, artifacts, found[0]


def _only(distro: str) -> list[tuple[str, str]]:
    return [c for c in CASES if _case(*c)[0].install.distro.startswith(distro)]


def _ids(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{name}-{host}" for name, host in cases]


def _write(artifact: Artifact, tmp_path: Path) -> Path:
    path = tmp_path / artifact.path.rsplit("/", 1)[1]
    path.write_bytes(artifact.content)
    return path


def test_every_distro_and_branch_is_covered() -> None:
    distros = {_case(*c)[0].install.distro for c in CASES}
    assert distros == set(layout.ANSWER_FILES)
    hosts = [_case(*c)[0] for c in CASES]
    for distro in ("el9", "debian12", "ubuntu"):
        mine = [h for h in hosts if h.install.distro.startswith(distro)]
        assert any(h.install.mirror for h in mine) and any(not h.install.mirror for h in mine), distro
        assert any(h.install.disk for h in mine) and any(not h.install.disk for h in mine), distro
        if distro != "ubuntu":
            assert any(h.install.disk_is_link for h in mine), distro
        assert any(h.kernel.cmdline for h in mine), distro
        assert any(h.interfaces for h in mine) and any(not h.interfaces for h in mine), distro


def test_hosts_with_nameservers_get_systemd_resolved() -> None:
    """Only systemd-resolved reads networkd's DNS=: each installer installs its package for a
    host with nameservers (none on Ubuntu 22.04, whose systemd has it), and only then."""
    seen = set()
    for name, host_name in CASES:
        host, _, answer = _case(name, host_name)
        text = answer.content.decode()
        package = host.resolver.package if host.resolver else None
        if host.install.distro == "el9":
            packages = text[text.index("%packages") :]
            listed = "\nsystemd-resolved\n" in packages[: packages.index("%end")]
        elif host.install.distro == "debian12":
            listed = (
                re.search(r"^d-i pkgsel/include string .*\bsystemd-resolved\b", text, re.MULTILINE)
                is not None
            )
        else:
            config = _autoinstall(answer)["autoinstall"]
            assert isinstance(config, dict)
            listed = "systemd-resolved" in config.get("packages", [])
        assert listed == (package is not None), f"{name}-{host_name}"
        seen.add((host.install.distro, host.resolver is not None, package is not None))
    assert {("el9", True, True), ("debian12", True, True), ("ubuntu2204", True, False)} <= seen
    assert {("el9", False, False), ("debian12", False, False)} <= seen


def test_only_installer_files_are_added() -> None:
    for name, (plan, artifacts) in BUILDS.items():
        dirs = tuple(f"{layout.pxe_dir(h.name)}/" for h in plan.hosts)
        made = sorted(a.path for a in artifacts if a.path.startswith(dirs))
        assert made == sorted(layout.pxe_answer(h.name, h.install.distro) for h in plan.hosts), name


# --- kickstart ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "host_name"), _only("el9"), ids=_ids(_only("el9")))
def test_kickstart_passes_ksvalidator_and_reads_back(name: str, host_name: str, tmp_path: Path) -> None:
    host, _, artifact = _case(name, host_name)
    path = _write(artifact, tmp_path)
    result = subprocess.run(
        [str(BIN / "ksvalidator"), "-v", "RHEL9", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stdout.lower() and "warning" not in result.stdout.lower(), result.stdout

    parser, scripts = kickstart_scripts(path)
    ks = parser.handler
    install = host.install
    assert ks.displaymode.displayMode == DISPLAY_MODE_TEXT
    assert ks.timezone.timezone == install.timezone and ks.timezone.isUtc
    assert ks.network.hostname == host.name
    assert ks.rootpw.lock
    assert ks.reboot.action is not None
    assert ks.url.url == install.mirror
    repos = {r.name: r.baseurl for r in ks.repo.dataList()}
    assert repos == ({"epel": install.epel} if install.epel else {})
    assert (ks.bootloader.appendLine or None) == (" ".join(host.kernel.cmdline) or None)
    assert ks.autopart.autopart and ks.zerombr.zerombr
    assert {"iproute-tc", "systemd-networkd", "tar"} <= set(ks.packages.packageList)
    if install.disk:
        assert ks.ignoredisk.onlyuse == [install.disk]
        assert ks.clearpart.drives == [install.disk]
        assert "pre" not in scripts
    else:
        assert "%include /tmp/kvmnet-disk.ks" in artifact.content.decode()
        assert "/tmp/kvmnet-disk.ks" in scripts["pre"]
    post = next(s for s in ks.scripts if s.type == 1)
    assert post.errorOnFail and post.interp == "/bin/sh" and post.inChroot


# --- preseed ------------------------------------------------------------------------


def _preseed_install_sh(late_command: str) -> str:
    found = re.search(
        r"printf %s\s+([A-Za-z0-9+/=]+)\s+\| base64 -d >" + re.escape(layout.INSTALL_STEP), late_command
    )
    assert found, late_command[:200]
    return base64.b64decode(found.group(1), validate=True).decode()


@pytest.mark.parametrize(("name", "host_name"), _only("debian"), ids=_ids(_only("debian")))
def test_preseed_passes_debconf_and_reads_back(name: str, host_name: str, tmp_path: Path) -> None:
    host, _, artifact = _case(name, host_name)
    path = _write(artifact, tmp_path)
    check = debconf_check(path, tmp_path / "debconf-check")
    assert check.returncode == 0 and check.stdout == check.stderr == "", check.stdout + check.stderr

    values = debconf_values(path, tmp_path / "debconf")
    install = host.install
    assert values["time/zone"] == install.timezone
    assert values["netcfg/get_hostname"] == values["netcfg/hostname"] == host.name
    mirror = install.mirror or "http://deb.debian.org/debian"
    protocol = values["mirror/protocol"]
    assert (
        f"{protocol}://{values[f'mirror/{protocol}/hostname']}{values[f'mirror/{protocol}/directory']}"
        == mirror
    )
    assert values["passwd/root-password-crypted"] == "!"
    assert "debian-installer/add-kernel-opts" not in values
    if install.disk_is_link:
        # partman compares kernel names: the link is resolved in the installer first.
        assert values["partman-auto/disk"] == values["grub-installer/bootdev"] == install.disk
        early = values["partman/early_command"]
        assert early.startswith(f"disk=$(readlink -f {install.disk}) && ")
        assert 'debconf-set partman-auto/disk "$disk"' in early
        assert 'debconf-set grub-installer/bootdev "$disk"' in early
    elif install.disk:
        assert values["partman-auto/disk"] == values["grub-installer/bootdev"] == install.disk
        assert install.disk.startswith("/dev/") and "partman/early_command" not in values
    else:
        assert "list-devices disk" in values["partman/early_command"]
    # The commented install step is exactly what the late command carries.
    text = artifact.content.decode()
    block = text[text.index("# The install step") : text.index("# The late command")].splitlines()[1:-1]
    commented = "".join(line.removeprefix("#").removeprefix(" ") + "\n" for line in block)
    assert commented == _preseed_install_sh(values["preseed/late_command"])


@pytest.mark.parametrize("present", [True, False], ids=["link", "no-link"])
def test_a_stable_link_is_resolved_before_partitioning(present: bool, tmp_path: Path) -> None:
    """partman/early_command runs in the installer: it resolves the link to the kernel
    device and gives it to partman and grub-installer (debconf-set, a logging stand-in
    here); a link that does not exist fails the command before anything is partitioned.
    /dev is a private copy: one block device (vdb) and the udev link to it."""
    host, _, artifact = _case("variants", "deb-bypath")
    assert host.install.disk is not None and host.install.disk_is_link
    early = debconf_values(_write(artifact, tmp_path), tmp_path / "debconf")["partman/early_command"]
    dev = tmp_path / "dev"
    link = dev / host.install.disk.removeprefix("/dev/")
    link.parent.mkdir(parents=True)
    os.mknod(dev / "vdb", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(dev / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    if present:
        link.symlink_to("../../vdb")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "debconf-set").write_text(
        f'#!/bin/sh\nprintf "%s %s\\n" "$1" "$2" >>{tmp_path}/debconf-set.log\n'
    )
    (stubs / "debconf-set").chmod(0o755)
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'mount --bind {dev} /dev && sh -c "$1"',
            "-",
            early,
        ],
        env={"PATH": f"{stubs}:/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    log = tmp_path / "debconf-set.log"
    if present:
        assert result.returncode == 0, result.stderr
        assert log.read_text() == "partman-auto/disk /dev/vdb\ngrub-installer/bootdev /dev/vdb\n"
    else:
        assert result.returncode != 0 and not log.exists()


# --- autoinstall --------------------------------------------------------------------


def _autoinstall(artifact: Artifact) -> dict[str, object]:
    text = artifact.content.decode()
    assert text.splitlines()[0] == "#cloud-config"
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(("name", "host_name"), _only("ubuntu"), ids=_ids(_only("ubuntu")))
def test_autoinstall_has_subiquitys_shape_and_reads_back(name: str, host_name: str) -> None:
    host, _, artifact = _case(name, host_name)
    data = _autoinstall(artifact)
    jsonschema.validate(data, AUTOINSTALL_SCHEMA)
    config = data["autoinstall"]
    assert isinstance(config, dict)
    install = host.install
    assert config["version"] == 1
    assert config["timezone"] == install.timezone
    assert config["user-data"] == {"hostname": host.name, "users": []}
    assert "identity" not in config and "network" not in config
    layout = config["storage"]["layout"]
    assert layout == ({"name": "lvm", "match": {"path": install.disk}} if install.disk else {"name": "lvm"})
    if install.mirror:
        assert config["apt"] == {"primary": [{"arches": ["default"], "uri": install.mirror}]}
    else:
        assert "apt" not in config
    commands = config["late-commands"]
    assert all(isinstance(c, str) for c in commands)
    assert [c.split(" -- ")[0] for c in commands[1:]] == ["curtin in-target --target=/target"] * 2


# --- the installers' commands, run ---------------------------------------------------


def _installer_commands(host: HostPlan, artifact: Artifact, work: Path) -> list[tuple[str, str]]:
    """(kind, script) the installer runs, kind "chroot" or "installer", and the scripts only read."""
    distro = host.install.distro
    if distro == "el9":
        _, scripts = kickstart_scripts(_write(artifact, work))
        return [("chroot", scripts["post"])]
    if distro == "debian12":
        values = debconf_values(_write(artifact, work), work / "debconf")
        return [("installer", values["preseed/late_command"])]
    data = _autoinstall(artifact)
    config = data["autoinstall"]
    assert isinstance(config, dict)
    return [("installer", c) for c in config["late-commands"]]


def _target_paths(command: str, root: Path) -> str:
    """Subiquity's /target mount point, moved to `root` (never inside base64: no [A-Za-z0-9+/] before)."""
    return re.sub(r"(?<![A-Za-z0-9+/])/target(?=[/\s]|$)", str(root), command)


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("name", "host_name"), CASES, ids=IDS)
def test_installer_commands_install_the_bundle(name: str, host_name: str, tmp_path: Path) -> None:
    host, artifacts, artifact = _case(name, host_name)
    distro = host.install.distro
    target = Target(tmp_path / "target")
    package = host.resolver.package if host.resolver else None
    target.prepare(distro, (package,) if package else ())
    for kind, command in _installer_commands(host, artifact, tmp_path):
        if kind == "chroot":
            target.add(command, chrooted=True)
        else:
            target.add(_target_paths(command, target.root))
    result = target.run()
    assert result.returncode == 0, target.log("run.log") + result.stderr
    root = target.root

    # The bundle is bootstrap.sh and rootfs/ of the build, byte for byte, with modes.
    prefix = f"{layout.host_dir(host.name)}/"
    expected = {a.path.removeprefix(prefix): (a.content, a.mode) for a in host_members(host.name, artifacts)}
    assert layout.BOOTSTRAP in expected
    assert _tree(root / from_root(layout.BUNDLE_DIR)) == expected
    # ... and the offline bootstrap installed the rootfs.
    for rel, (content, mode) in expected.items():
        if rel.startswith(f"{layout.ROOTFS}/"):
            installed = root / rel.removeprefix(f"{layout.ROOTFS}/")
            assert (installed.read_bytes(), stat.S_IMODE(installed.stat().st_mode)) == (content, mode), rel

    units = root / from_root(layout.UNIT_DIR)
    assert (units / layout.FIRSTBOOT_UNIT_NAME).is_file()
    assert (units / "multi-user.target.wants" / layout.FIRSTBOOT_UNIT_NAME).is_symlink()
    assert (target.base / "verify.log").exists() and target.log("verify.log") == ""
    stubs = (
        (root / "var/log/kvmnet-stubs.log").read_text()
        if (root / "var/log/kvmnet-stubs.log").exists()
        else ""
    )
    nm = [units / "multi-user.target.wants/NetworkManager.service"]
    nm.append(units / "network-online.target.wants/NetworkManager-wait-online.service")
    interfaces = root / "etc/network/interfaces"
    netplan = root / "etc/netplan/00-installer-config.yaml"
    if not host.interfaces:
        # No network in the profile: what the installer configured stays in charge.
        if distro == "el9":
            assert all(link.is_symlink() for link in nm)
        elif distro == "debian12":
            assert interfaces.read_text() == "auto ens1\niface ens1 inet dhcp\n"
        else:
            assert netplan.exists() and not (root / from_root(layout.CLOUD_NETWORK_OFF)).exists()
    elif distro == "el9":
        assert not any(link.exists() or link.is_symlink() for link in nm)
    elif distro == "debian12":
        kept = root / from_root(layout.INSTALLER_NETWORK) / "interfaces"
        assert kept.read_text() == "auto ens1\niface ens1 inet dhcp\n"
        lines = interfaces.read_text().splitlines()
        assert [line for line in lines if not line.startswith("#")] == ["auto lo", "iface lo inet loopback"]
    else:
        assert not netplan.exists()
        assert (root / from_root(layout.INSTALLER_NETWORK) / "00-installer-config.yaml").exists()
        cloud_cfg = (root / from_root(layout.CLOUD_NETWORK_OFF)).read_text()
        assert yaml.safe_load(cloud_cfg) == {"network": {"config": "disabled"}}
    # A host with nameservers resolves through systemd-resolved from the first boot on.
    resolv = root / from_root(layout.RESOLV_CONF)
    if host.resolver:
        assert os.readlink(resolv) == host.resolver.stub
        assert (units / "multi-user.target.wants" / layout.RESOLVED_UNIT).is_symlink()
    else:
        assert resolv.read_text() == INSTALLER_RESOLV_CONF
    if host.interfaces:
        assert (units / "multi-user.target.wants/systemd-networkd.service").is_symlink()
    if distro == "el9":
        assert f"restorecon -R /etc {layout.STATE_DIR}\n" in stubs
    # The bootstrap, run with the chroot as its root, brings the kernel arguments to the
    # boot loader; update-grub's stand-in reads them from the GRUB drop-in.
    grub = [line for line in stubs.splitlines() if line.startswith("update-grub")]
    if host.kernel.cmdline and distro != "el9":
        assert grub and set(grub) == {f"update-grub {' '.join(host.kernel.cmdline)}"}
    else:
        assert grub == []
    assert not target.canary_fired()


def test_the_canary_would_fire(tmp_path: Path) -> None:
    """The canary is live: a profile value that reached a shell unquoted would be caught."""
    target = Target(tmp_path / "target")
    target.prepare("debian12")
    target.add("echo http://m.example/;kvmnet-canary;")
    assert target.run().returncode == 0
    assert target.canary_fired()


def test_the_hostile_profile_stays_hostile() -> None:
    plan, _ = BUILDS["hostile"]
    values = [v for h in plan.hosts for v in (h.install.mirror, h.install.epel, h.install.timezone) if v]
    values += [arg for h in plan.hosts for arg in h.kernel.cmdline]
    joined = "".join(values)
    for char in "._~:/%+-,=@":
        assert char in joined, char
    assert sum("kvmnet-canary" in v for v in values) >= 6


# --- shellcheck ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "host_name"), CASES, ids=IDS)
def test_scripts_pass_shellcheck(name: str, host_name: str, tmp_path: Path) -> None:
    host, _, artifact = _case(name, host_name)
    distro = host.install.distro
    scripts: dict[str, str] = {}
    if distro == "el9":
        _, found = kickstart_scripts(_write(artifact, tmp_path))
        scripts = {f"%{kind}": body for kind, body in found.items()}
        scripts["install.sh"] = heredoc(
            found["post"], f"cat >{layout.INSTALL_STEP} <<'KVMNET_INSTALL'", "KVMNET_INSTALL"
        )
    elif distro == "debian12":
        values = debconf_values(_write(artifact, tmp_path), tmp_path / "debconf")
        scripts = {
            key: values[key] for key in ("preseed/late_command", "partman/early_command") if key in values
        }
        scripts["install.sh"] = _preseed_install_sh(values["preseed/late_command"])
    else:
        config = _autoinstall(artifact)["autoinstall"]
        assert isinstance(config, dict)
        scripts = {f"late-commands[{i}]": c for i, c in enumerate(config["late-commands"])}
        scripts["install.sh"] = heredoc(
            config["late-commands"][0],
            f"cat >/target{layout.INSTALL_STEP} <<'KVMNET_INSTALL'",
            "KVMNET_INSTALL",
        )
    assert len(scripts) >= 2
    findings = "".join(shellcheck(text, label) for label, text in scripts.items())
    assert findings == ""


# --- refusals -----------------------------------------------------------------------

REFUSED = [
    ("mirror", '"http://m.example/$(kvmnet-canary)"', "install.mirror"),
    ("mirror", '"http://m.example/`kvmnet-canary`"', "install.mirror"),
    ("mirror", "\"http://m.example/'kvmnet-canary'\"", "install.mirror"),
    ("mirror", '"http://m.example/ kvmnet-canary"', "install.mirror"),
    ("mirror", '"http://m.example/debian?x=1"', "install.mirror"),
    ("mirror", '"http://m.example/debian#x"', "install.mirror"),
    ("epel", '"http://e.example/\\\\x"', "install.epel"),
    ("epel", '"ftp://e.example/"', "install.epel"),
    ("timezone", '"Europe/Berlin;kvmnet-canary"', "install.timezone"),
    ("timezone", '"../../etc/passwd"', "install.timezone"),
    ("disk", '"sda;kvmnet-canary"', "install.disk"),
    ("disk", '"/dev/sda"', "install.disk"),
    ("disk", "sda1", "install.disk"),
    ("disk", "nvme0n1p2", "install.disk"),
    ("disk", "mmcblk0p1", "install.disk"),
    ("disk", "/dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part1", "install.disk"),
    ("disk", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part2", "install.disk"),
    ("disk", "/dev/disk/by-uuid/0b8f7c1e-6c1a-4c55-9d9c-1e2f3a4b5c6d", "install.disk"),
    ("disk", "/dev/disk/by-label/root", "install.disk"),
    ("disk", '"/dev/disk/by-id/a;kvmnet-canary"', "install.disk"),
]


@pytest.mark.parametrize(
    ("key", "value", "path"), REFUSED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(REFUSED)]
)
def test_refused_values_are_located(key: str, value: str, path: str, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(f"hosts:\n  hv1:\n    distro: el9\n    install:\n      {key}: {value}\n")
    result = kvmnet("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^p\.yaml:5:\d+: hosts\.hv1\.{re.escape(path)}: ", result.stderr, re.MULTILINE), (
        result.stderr
    )


@pytest.mark.parametrize(
    ("disk", "reason"),
    [
        ("sda1", "'sda1' is a partition"),
        ("nvme0n1p2", "'nvme0n1p2' is a partition"),
        ("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part1", "is a partition"),
        ("/dev/disk/by-uuid/0b8f7c1e", "by-uuid, by-label, by-partuuid and by-partlabel name filesystems"),
        ("md0", "'md0' is not a disk"),
    ],
)
def test_a_partition_is_refused_saying_what_is_valid(disk: str, reason: str, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(f"hosts:\n  hv1:\n    install:\n      disk: {disk}\n")
    result = kvmnet("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    valid = "use a whole disk by kernel name (sda, vda, xvda, nvme0n1, mmcblk0) or by a stable link"
    assert f"p.yaml:4:13: hosts.hv1.install.disk: {disk!r}"[
        : len("p.yaml:4:13: hosts.hv1.install.disk: ")
    ] in (result.stderr)
    assert reason in result.stderr and valid in result.stderr, result.stderr


def test_whole_disks_are_accepted_as_device_paths() -> None:
    for disk, path in [
        ("sda", "/dev/sda"),
        ("vdb", "/dev/vdb"),
        ("xvda", "/dev/xvda"),
        ("nvme0n1", "/dev/nvme0n1"),
        ("mmcblk0", "/dev/mmcblk0"),
        ("/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S467NX0M123456", None),
        ("/dev/disk/by-path/pci-0000:01:00.0-nvme-1", None),
    ]:
        plan, _ = _from_text(f"hosts:\n  hv1:\n    install: {{disk: '{disk}'}}\n")
        (host,) = plan.hosts
        assert host.install.disk == (path or disk)
        assert host.install.disk_is_link == (path is None)


def test_an_ubuntu_host_refuses_a_stable_link(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "hosts:\n  kvm1:\n    distro: ubuntu2404\n    install:\n      disk: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4\n"
    )
    result = kvmnet("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        r"^p\.yaml:5:13: hosts\.kvm1\.install\.disk: .*by kernel name", result.stderr, re.MULTILINE
    ), result.stderr


@pytest.mark.parametrize("arg", ['a"b', "a'b", "a;b", "$(x)", "a b", "a\\b", "`x`"])
def test_refused_kernel_arguments_are_located(arg: str, tmp_path: Path) -> None:
    quoted = yaml.safe_dump(arg, default_style='"').strip()
    (tmp_path / "p.yaml").write_text(f"hosts:\n  hv1:\n    kernel:\n      cmdline: [{quoted}]\n")
    result = kvmnet("validate", "p.yaml", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^p\.yaml:4:\d+: hosts\.hv1\.kernel\.cmdline\[0\]: ", result.stderr, re.MULTILINE), (
        result.stderr
    )


#: One host per installer, each given a rootfs file that gzip cannot shrink, so that no
#: bundle fits in one exec argument (131071 bytes).
LARGE = """
hosts:
  deb-large: {distro: debian12}
  ubu-large: {distro: ubuntu2404, network: {ethernets: {ens1: {dhcp4: true}}}}
  el-large: {distro: el9}
"""


def _large() -> tuple[Plan, list[Artifact]]:
    plan, artifacts = _from_text(LARGE)
    noise = base64.b64encode(random.Random(0).randbytes(120_000)).decode()  # gzip cannot shrink it
    text = "\n".join(noise[i : i + 60] for i in range(0, len(noise), 60))
    scripts = {layout.bootstrap(h.name) for h in plan.hosts}
    rest = [a for a in artifacts if "/pxe/" not in a.path and a.path not in scripts]
    rest += [Artifact.text(layout.rootfs_file(h.name, f"{layout.ETC_DIR}/noise"), text) for h in plan.hosts]
    rest += DELIVERY["bootstrap"].render(plan, rest)  # which knows the noise as part of the build
    return plan, [*rest, *pxe.render(plan, rest)]


def test_a_bundle_too_large_to_embed_is_fetched_from_beside_the_answer_file(tmp_path: Path) -> None:
    plan, artifacts = _large()
    made = {a.path: a for a in artifacts}
    for host in plan.hosts:
        answer = made[layout.pxe_answer(host.name, host.install.distro)]
        text = answer.content.decode()
        bundle = tarball(host.name, artifacts)
        assert len(bundle) > 131072, host.name
        if host.install.distro == "el9":
            # Anaconda runs %post from a file: the kickstart still embeds the bundle.
            assert layout.pxe_bundle(host.name) not in made
            assert base64.b64encode(bundle[:57]).decode() in text
            continue
        # Written beside the answer file, byte for byte the bundle, its sha256 pinned.
        assert made[layout.pxe_bundle(host.name)].content == bundle
        assert text.count(hashlib.sha256(bundle).hexdigest()) >= 2
        assert base64.b64encode(bundle[:57]).decode() not in text
        if host.install.distro == "debian12":
            path = _write(answer, tmp_path)
            check = debconf_check(path, tmp_path / "debconf-check")
            assert check.returncode == 0 and check.stdout == check.stderr == "", check.stderr
            late = debconf_values(path, tmp_path / "debconf")["preseed/late_command"]
            assert late.lstrip().startswith("url=$(debconf-get preseed/url); base=${url%/*};")
            assert len(late) < 131072
            assert shellcheck(late, "late_command") == ""
        else:
            data = _autoinstall(answer)
            jsonschema.validate(data, AUTOINSTALL_SCHEMA)
            config = data["autoinstall"]
            assert isinstance(config, dict)
            assert all(len(c.encode()) < 131072 for c in config["late-commands"])
            assert (
                "".join(shellcheck(c, f"late-commands[{i}]") for i, c in enumerate(config["late-commands"]))
                == ""
            )


@pytest.mark.parametrize("tampered", [False, True], ids=["built", "tampered"])
@pytest.mark.parametrize("host_name", ["deb-large", "ubu-large"])
def test_a_fetched_bundle_installs_only_with_its_checksum(
    host_name: str, tampered: bool, tmp_path: Path
) -> None:
    """The installer's own commands fetch the bundle from a real HTTP server on loopback,
    from beside the answer file's URL (preseed/url; ds=nocloud-net;s= on /proc/cmdline)."""
    plan, artifacts = _large()
    host = next(h for h in plan.hosts if h.name == host_name)
    made = {a.path: a for a in artifacts}
    answer = made[layout.pxe_answer(host.name, host.install.distro)]
    built = made[layout.pxe_bundle(host.name)].content
    www = tmp_path / "www"
    for artifact in (answer, made[layout.pxe_bundle(host.name)]):
        (www / artifact.path).parent.mkdir(parents=True, exist_ok=True)
        (www / artifact.path).write_bytes(artifact.content)
    served = built
    if tampered:
        # A well-formed bundle with one more file: only the checksum tells it apart.
        extra = Artifact.text(layout.rootfs_file(host.name, "/etc/cron.d/planted"), "* * * * * root sh\n")
        served = tarball(host.name, [*artifacts, extra])
        (www / layout.pxe_bundle(host.name)).write_bytes(served)
    target = Target(tmp_path / "target")
    target.prepare(host.install.distro)
    with serve(www) as base:
        cmdline = tmp_path / "cmdline"
        seed = f"{base}/{layout.pxe_dir(host.name)}/"
        cmdline.write_text(f"BOOT_IMAGE=/casper/vmlinuz autoinstall ds=nocloud-net;s={seed} ---\n")
        for kind, command in _installer_commands(host, answer, tmp_path):
            assert kind == "installer"
            target.add(_target_paths(command, target.root).replace("/proc/cmdline", str(cmdline)))
        result = target.run(preseed_url=f"{base}/{answer.path}")
    log = target.log("run.log")
    bundle_dir = target.root / from_root(layout.BUNDLE_DIR)
    if tampered:
        assert result.returncode != 0, log
        wanted = hashlib.sha256(built).hexdigest()
        got = hashlib.sha256(served).hexdigest()
        assert f"has sha256 {got}, not {wanted} as built: not installing it" in log, log
        assert not bundle_dir.exists() and not (target.root / "etc/cron.d/planted").exists()
        return
    assert result.returncode == 0, log + result.stderr
    prefix = f"{layout.host_dir(host.name)}/"
    expected = {a.path.removeprefix(prefix): (a.content, a.mode) for a in host_members(host.name, artifacts)}
    assert _tree(bundle_dir) == expected
    assert not (target.root / from_root(layout.FETCHED_BUNDLE)).exists()
    units = target.root / from_root(layout.UNIT_DIR)
    assert (units / "multi-user.target.wants" / layout.FIRSTBOOT_UNIT_NAME).is_symlink()
    assert not target.canary_fired()


def test_a_fetch_without_the_answer_files_url_fails_saying_so(tmp_path: Path) -> None:
    plan, artifacts = _large()
    for host in plan.hosts:
        if host.install.distro == "el9":
            continue
        answer = next(a for a in artifacts if a.path == layout.pxe_answer(host.name, host.install.distro))
        target = Target(tmp_path / host.name)
        target.prepare(host.install.distro)
        cmdline = tmp_path / f"{host.name}-cmdline"
        cmdline.write_text("BOOT_IMAGE=/casper/vmlinuz autoinstall ---\n")
        for _, command in _installer_commands(host, answer, tmp_path / host.name):
            target.add(_target_paths(command, target.root).replace("/proc/cmdline", str(cmdline)))
        assert target.run(preseed_url="").returncode != 0
        reason = "no preseed/url" if host.install.distro == "debian12" else "no ds=nocloud;s=<URL>"
        assert f"kvmnet: {reason}" in target.log("run.log"), target.log("run.log")


def _vlans_bridges_vxlans(count: int, distro: str | None = None) -> str:
    """A plain netplan host of `count` VLANs, bridges and VXLANs each (distro default: Debian 12)."""
    lines = ["hosts:", "  big:", *([f"    distro: {distro}"] if distro else [])]
    lines += ["    network:", "      ethernets: {eno1: {addresses: [192.0.2.10/24]}}"]
    lines.append("      vlans:")
    lines += [f"        vl{i}: {{id: {i}, link: eno1}}" for i in range(1, count + 1)]
    lines.append("      bridges:")
    lines += [f"        br{i}: {{interfaces: [vl{i}]}}" for i in range(1, count + 1)]
    lines.append("      tunnels:")
    lines += [
        f"        vx{i}: {{mode: vxlan, id: {i}, link: eno1, local: 192.0.2.10, remote: 192.0.2.{20 + i % 200}}}"
        for i in range(1, count + 1)
    ]
    return "\n".join(lines) + "\n"


def test_a_3000_vlan_debian_host_builds(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(_vlans_bridges_vxlans(3000))
    result = kvmnet("build", "p.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    preseed = out / layout.pxe_answer("big", "debian12")
    bundle = (out / layout.pxe_bundle("big")).read_bytes()
    check = debconf_check(preseed, tmp_path / "debconf-check")
    assert check.returncode == 0 and check.stdout == check.stderr == "", check.stderr
    assert hashlib.sha256(bundle).hexdigest() in preseed.read_text()
    manifest = json.loads((out / layout.MANIFEST).read_text())
    assert layout.pxe_bundle("big") in json.dumps(manifest)
    # The bundle is the host's bootstrap.sh and rootfs/ (3000 x 3 netdevs and more).
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        names = tar.getnames()
    assert layout.BOOTSTRAP in names and sum(n.endswith(".netdev") for n in names) == 9000


def test_a_3000_vlan_el9_host_embeds_its_bundle_in_the_kickstart(tmp_path: Path) -> None:
    """Anaconda writes %post to a file: no exec limit, so the 1 MB bundle stays inline and
    ksvalidator still reads the kickstart."""
    (tmp_path / "p.yaml").write_text(_vlans_bridges_vxlans(3000, "el9"))
    result = kvmnet("build", "p.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "out"
    assert not (out / layout.pxe_bundle("big")).exists()
    kickstart = out / layout.pxe_answer("big", "el9")
    assert kickstart.stat().st_size > 1_000_000
    check = subprocess.run(
        [str(BIN / "ksvalidator"), "-v", "RHEL9", str(kickstart)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and "warning" not in check.stdout.lower(), check.stdout + check.stderr


# --- without a bootstrap, determinism ------------------------------------------------


def test_without_a_bootstrap_nothing_runs_it(tmp_path: Path) -> None:
    plan, artifacts = BUILDS["bonded"]
    vehicles = tuple(f"{layout.pxe_dir(h.name)}/" for h in plan.hosts)
    scripts = {layout.bootstrap(h.name) for h in plan.hosts}
    rest = [a for a in artifacts if a.path not in scripts and not a.path.startswith(vehicles)]
    (made,) = pxe.render(plan, rest)
    text = made.content.decode()
    assert f"{layout.BUNDLED_BOOTSTRAP} --offline" not in text and layout.FIRSTBOOT_UNIT_NAME not in text
    path = _write(made, tmp_path)
    result = subprocess.run(
        [str(BIN / "ksvalidator"), "-v", "RHEL9", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_building_twice_gives_the_same_bytes() -> None:
    for name, (plan, artifacts) in BUILDS.items():
        again = pxe.render(plan, [a for a in artifacts if "/pxe/" not in a.path])
        assert again == [a for a in artifacts if "/pxe/" in a.path], name
    assert _from_text(HOSTILE) == BUILDS["hostile"]
