"""The generated bootstrap.sh, run for real.

- shellcheck passes on every generated script;
- against a throw-away root (`--root`): the first run installs exactly the host's rootfs
  files with their modes, the second changes nothing, a changed profile changes only the
  affected files (previous versions in the backup), a dry run prints exactly the actions
  a real run takes, a rootfs/ that is not the build's is refused;
- safe apply, live: a simulated host (network namespace, real systemd-networkd 252 on a
  private D-Bus) gets a change that cuts its probe off and is rolled back, even when the
  bootstrap itself is killed half-way; a good change, including a netdev whose definition
  changed (deleted and recreated), is kept.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator import layout
from generator.layout import from_root
from generator.pipeline import build
from tests.support.networkd import Lab, run, wait_for

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
STATE = from_root(layout.STATE_DIR)
#: Unit enablement the bootstrap may make: a kvmnet-tc@ instance wanted by something.
WANTS_TC_UNIT = (
    rf"{re.escape(from_root(layout.UNIT_DIR))}/[^/]+\.wants/"
    rf"{re.escape(layout.TC_UNIT_PREFIX)}[^/]+{re.escape(layout.TC_UNIT_SUFFIX)}"
)


def built(profile: Path, out: Path) -> Path:
    build(profile, out)
    return out


def hosts_of(out: Path) -> list[str]:
    return sorted(p.name for p in (out / layout.HOSTS).iterdir())


def bootstrap(out: Path, host: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(out / layout.bootstrap(host)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tree(root: Path, *, skip_state: bool = True) -> dict[str, tuple[str, int, bytes | str, int, int]]:
    """Every entry under root: (kind, mode, content or link target, inode, mtime_ns)."""
    out: dict[str, tuple[str, int, bytes | str, int, int]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if skip_state and rel.startswith(STATE):
            continue
        info = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", 0, os.readlink(path), info.st_ino, info.st_mtime_ns)
        elif path.is_file():
            out[rel] = ("file", info.st_mode & 0o7777, path.read_bytes(), info.st_ino, info.st_mtime_ns)
    return out


def rootfs(out: Path, host: str) -> dict[str, tuple[int, bytes]]:
    base = out / layout.rootfs_dir(host)
    return {
        p.relative_to(base).as_posix(): (p.stat().st_mode & 0o7777, p.read_bytes())
        for p in base.rglob("*")
        if p.is_file()
    }


CASES = [pytest.param(p, id=p.stem) for p in PROFILES]


@pytest.mark.parametrize("profile", CASES)
def test_shellcheck_passes(profile: Path, tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck)")
    out = built(profile, tmp_path / "out")
    scripts = [str(out / layout.bootstrap(h)) for h in hosts_of(out)]
    result = subprocess.run(
        ["shellcheck", "--severity=style", *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("profile", CASES)
def test_first_run_installs_exactly_the_rootfs_and_second_changes_nothing(
    profile: Path, tmp_path: Path
) -> None:
    out = built(profile, tmp_path / "out")
    for host in hosts_of(out):
        root = tmp_path / f"root-{host}"
        root.mkdir()
        first = bootstrap(out, host, "--root", str(root))
        assert first.returncode == 0, first.stdout + first.stderr
        installed = tree(root)
        files = {p: (v[1], v[2]) for p, v in installed.items() if v[0] == "file"}
        assert files == rootfs(out, host)
        # Besides the files, only unit enablement: symlinks in *.wants/ to kvmnet's units.
        for path, (kind, _, target, _, _) in installed.items():
            if kind == "link":
                assert re.fullmatch(WANTS_TC_UNIT, path), path
                assert target == layout.TC_UNIT
        second = bootstrap(out, host, "--root", str(root))
        assert second.returncode == 0, second.stdout + second.stderr
        assert f"{host}: no changes" in second.stdout
        assert tree(root) == installed  # same content, modes, inodes and times


RESOLVED_UNIT_FILE = (
    "[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)


def resolved_root(root: Path, *, installed: bool) -> Path:
    """A root with the installer's resolv.conf, and systemd-resolved's files if `installed`."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/resolv.conf").write_text("nameserver 198.51.100.53\n")
    if installed:
        (root / "lib/systemd/system").mkdir(parents=True)
        (root / "lib/systemd/system" / layout.RESOLVED_UNIT).write_text(RESOLVED_UNIT_FILE)
    return root


def test_host_with_nameservers_uses_systemd_resolved(tmp_path: Path) -> None:
    """default.yaml's hv1 has nameservers: resolved is enabled and resolv.conf points at
    its stub; the installer's file is kept in the backup; a second run changes nothing."""
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    root = resolved_root(tmp_path / "root", installed=True)
    first = bootstrap(out, "hv1", "--root", str(root))
    assert first.returncode == 0, first.stdout + first.stderr
    resolv = root / from_root(layout.RESOLV_CONF)
    assert os.readlink(resolv) == "../run/systemd/resolve/stub-resolv.conf"
    wants = root / from_root(layout.UNIT_DIR) / "multi-user.target.wants" / layout.RESOLVED_UNIT
    assert wants.is_symlink()
    (kept,) = (root / STATE / "backup").glob("*/resolv.conf")
    assert kept.read_text() == "nameserver 198.51.100.53\n"
    before = tree(root)
    second = bootstrap(out, "hv1", "--root", str(root))
    assert "hv1: no changes" in second.stdout, second.stdout + second.stderr
    assert tree(root) == before


def test_resolved_missing_from_another_root_is_said_not_guessed(tmp_path: Path) -> None:
    """Packages are installed on / only: for another root the run says what to install and
    leaves resolv.conf as it is (pointing it at a stub no resolver serves would cut DNS)."""
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    root = resolved_root(tmp_path / "root", installed=False)
    result = bootstrap(out, "hv1", "--root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "install systemd-resolved there" in result.stdout
    assert (root / "etc/resolv.conf").read_text() == "nameserver 198.51.100.53\n"


def test_host_without_nameservers_keeps_its_resolver(tmp_path: Path) -> None:
    out = built(REPO / "profiles" / "minimal.yaml", tmp_path / "out")
    root = resolved_root(tmp_path / "root", installed=True)
    result = bootstrap(out, "hv1", "--root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (root / "etc/resolv.conf").is_symlink()
    assert (root / "etc/resolv.conf").read_text() == "nameserver 198.51.100.53\n"
    assert "resolved" not in result.stdout


def test_changed_profile_changes_only_the_affected_files(tmp_path: Path) -> None:
    v1 = built(REPO / "profiles" / "default.yaml", tmp_path / "v1")
    changed = (REPO / "profiles" / "default.yaml").read_text().replace("rate: 200Mbit", "rate: 300Mbit")
    changed = changed.replace("net.core.netdev_max_backlog: 30000", "net.core.netdev_max_backlog: 40000")
    (tmp_path / "v2.yaml").write_text(changed)
    v2 = built(tmp_path / "v2.yaml", tmp_path / "v2")
    root = tmp_path / "root"
    root.mkdir()
    assert bootstrap(v1, "hv1", "--root", str(root)).returncode == 0
    before = tree(root)
    old, new = rootfs(v1, "hv1"), rootfs(v2, "hv1")
    expected = {p for p in new if old.get(p) != new[p]}
    assert expected == {from_root(layout.tc_batch("eno2")), from_root(layout.HOST_SYSCTL)}
    result = bootstrap(v2, "hv1", "--root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    after = tree(root)
    touched = {p for p in after if after[p] != before.get(p)}
    assert touched == expected
    assert {p: (v[1], v[2]) for p, v in after.items() if v[0] == "file"} == new
    backup = sorted((root / STATE / "backup").iterdir())[-1]  # the newest
    for path in expected:
        assert (backup / "files" / path).read_bytes() == old[path][1]


def test_removed_tc_file_is_removed_and_its_unit_disabled(tmp_path: Path) -> None:
    v1 = built(REPO / "profiles" / "default.yaml", tmp_path / "v1")
    text = (REPO / "profiles" / "default.yaml").read_text()
    without = text.replace(
        "      eno2:\n        shape: {kind: tbf, rate: 200Mbit, burst: 256KiB, latency: 50ms}\n", ""
    )
    assert without != text
    (tmp_path / "v2.yaml").write_text(without)
    v2 = built(tmp_path / "v2.yaml", tmp_path / "v2")
    root = tmp_path / "root"
    root.mkdir()
    assert bootstrap(v1, "hv1", "--root", str(root)).returncode == 0
    wants = (
        root
        / from_root(layout.UNIT_DIR)
        / "sys-subsystem-net-devices-eno2.device.wants"
        / layout.tc_unit("eno2")
    )
    assert wants.is_symlink()
    result = bootstrap(v2, "hv1", "--root", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    batch = from_root(layout.tc_batch("eno2"))
    assert not (root / batch).exists()
    assert not wants.is_symlink()
    backup = sorted((root / STATE / "backup").iterdir())[-1]
    assert (backup / "files" / batch).read_bytes() == rootfs(v1, "hv1")[batch][1]


def test_a_second_run_waits_for_the_first(tmp_path: Path) -> None:
    """Two bootstraps never work on one root at once: while another holds the lock (here
    flock(1) for 3 s, as a first run would), a run waits, then does its work."""
    if shutil.which("flock") is None:
        pytest.fail("flock is not installed (Debian package util-linux)")
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    root = tmp_path / "root"
    (root / STATE).mkdir(parents=True)
    lock = str(root / STATE / "lock")
    holder = subprocess.Popen(["flock", lock, "sleep", "3"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", lock, "true"], check=False).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)  # until the holder has it
        started = time.monotonic()
        second = bootstrap(out, "hv1", "--root", str(root))
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=10)
    assert second.returncode == 0, second.stderr
    assert "waiting for another kvmnet bootstrap on this root" in second.stdout, second.stdout
    assert waited >= 1.0, waited  # the holder had ~3 s left when it started
    assert tree(root)  # and then it installed


def test_dry_run_prints_exactly_what_a_run_does(tmp_path: Path) -> None:
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    root = tmp_path / "root"
    root.mkdir()
    dry = bootstrap(out, "hv1", "--root", str(root), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert list(root.iterdir()) == []  # nothing at all, not even the state directory
    real = bootstrap(out, "hv1", "--root", str(root))
    assert real.returncode == 0, real.stderr

    def actions(text: str, prefix: str) -> list[str]:
        return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]

    planned = actions(dry.stdout, "kvmnet-bootstrap: would: ")
    done = [
        line.removeprefix("kvmnet-bootstrap: ")
        for line in real.stdout.splitlines()
        if line.removeprefix("kvmnet-bootstrap: ") in planned
    ]
    assert planned and done == planned
    assert len(planned) == len(rootfs(out, "hv1")) + 2  # every file, and the two tc units enabled


def test_source_that_is_not_the_build_is_refused(tmp_path: Path) -> None:
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    victim = out / layout.rootfs_file("hv1", layout.HOST_SYSCTL)
    victim.write_text(victim.read_text() + "kernel.panic = 1\n")
    (out / layout.rootfs_file("hv1", "/etc/stray.conf")).write_text("x\n")
    root = tmp_path / "root"
    root.mkdir()
    result = bootstrap(out, "hv1", "--root", str(root))
    assert result.returncode == 3
    assert "90-kvmnet.conf differs from the build" in result.stderr
    assert "stray.conf is not part of the build" in result.stderr
    assert list(root.iterdir()) == []


def test_usage_errors(tmp_path: Path) -> None:
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    for args in (["--frobnicate"], ["--rollback-after", "2"], ["--root"]):
        result = bootstrap(out, "hv1", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "usage: bootstrap.sh" in result.stderr or "--rollback-after" in result.stderr


# --- safe apply, live -----------------------------------------------------------------------

SAFE = """
hosts:
  hv1:
    bootstrap: {rollback-after: 8s}
    network:
      ethernets:
        # Matched by name: the simulated NICs are veths, which have no permanent MAC.
        eno1:
          addresses: [ADDRESSES]
          routes: [{to: default, via: 192.0.2.1}]
        eno2: {}
      bridges:
        br0:
          interfaces: [eno2]
          parameters: {stp: STP, forward-delay: 4}
"""


def safe_profile(tmp_path: Path, name: str, addresses: str, stp: str = "false") -> Path:
    out = tmp_path / name
    (tmp_path / f"{name}.yaml").write_text(SAFE.replace("ADDRESSES", addresses).replace("STP", stp))
    return built(tmp_path / f"{name}.yaml", out)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[object, str]]:
    from tests.support.hostsim import HostSim

    if os.geteuid() != 0:
        pytest.skip("needs root: network and mount namespaces")
    for tool in ("dbus-daemon", "nsenter", "ping", "setsid"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")
    lab = Lab(tmp_path / "lab")
    sim = None
    try:
        ns = lab.namespace("safe")
        gateway = lab.namespace("safe-gw")
        lab.veth(ns, "eno1", mac="52:54:00:5a:fe:01", peer_ns=gateway, peer_name="gw0")
        lab.veth(ns, "eno2", mac="52:54:00:5a:fe:02", peer_ns=gateway, peer_name="gw1")
        run("ip", "-n", gateway, "address", "add", "192.0.2.1/24", "dev", "gw0")
        sim = HostSim(ns, tmp_path / "sim", "safe-apply")
        yield sim, gateway
    finally:
        if sim is not None:
            sim.close()
        lab.close()


def addresses(sim: object, dev: str) -> set[str]:
    from tests.support.hostsim import HostSim

    assert isinstance(sim, HostSim)
    result = run("ip", "-n", sim.ns, "-o", "-4", "address", "show", "dev", dev, check=False)
    return set(re.findall(r"inet (\S+)", result.stdout))


def test_safe_apply_rolls_back_what_cuts_the_probe_and_keeps_what_does_not(
    host: tuple[object, str], tmp_path: Path
) -> None:
    from tests.support.hostsim import HostSim

    sim, _ = host
    assert isinstance(sim, HostSim)
    good = safe_profile(tmp_path, "good", "192.0.2.10/24")
    cut = safe_profile(tmp_path, "cut", "198.51.100.10/24")
    better = safe_profile(tmp_path, "better", "192.0.2.10/24, 192.0.2.11/24", stp="true")
    script = f"/{layout.bootstrap('hv1')}"

    # Install as an installer would, then boot: networkd starts on the installed files.
    first = sim.run(f"{good}{script}", "--offline")
    assert first.returncode == 0, first.stdout + first.stderr
    sim.start_networkd()
    assert wait_for(lambda: addresses(sim, "eno1") == {"192.0.2.10/24"}, 15), sim.networkd_log()
    assert run("ip", "netns", "exec", sim.ns, "ping", "-c1", "-W1", "192.0.2.1", check=False).returncode == 0
    installed = sim.file(layout.networkd_file("eno1", "network"))

    # 1. A change that cuts the probe off: rolled back, by the script itself (exit 4).
    started = time.monotonic()
    result = sim.run(f"{cut}{script}", "--online", timeout=60)
    assert result.returncode == 4, result.stdout + result.stderr
    assert time.monotonic() - started < 8 + 10
    assert "network change rolled back" in result.stderr
    assert sim.file(layout.networkd_file("eno1", "network")) == installed
    assert wait_for(lambda: addresses(sim, "eno1") == {"192.0.2.10/24"}, 10), sim.networkd_log()
    assert sim.file(f"/{STATE}/rolled-back") is not None

    # 2. The same change, and the bootstrap dies (as with the SSH session it cut):
    #    the guard, in a session of its own, rolls back at its deadline.
    process = sim.popen(f"{cut}{script}", "--online")
    assert wait_for(lambda: addresses(sim, "eno1") == {"198.51.100.10/24"}, 15)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)
    killed = time.monotonic()
    assert wait_for(lambda: addresses(sim, "eno1") == {"192.0.2.10/24"}, 8 + 10), sim.networkd_log()
    assert time.monotonic() - killed < 8 + 10
    assert sim.file(layout.networkd_file("eno1", "network")) == installed
    assert run("ip", "netns", "exec", sim.ns, "ping", "-c1", "-W1", "192.0.2.1", check=False).returncode == 0

    # 3. A good change is kept: a second address, and br0's .netdev changed (STP on), so
    #    the bridge is deleted and recreated and its port joins it again.
    stp = run("ip", "-n", sim.ns, "-j", "-d", "link", "show", "br0").stdout
    assert '"stp_state":0' in stp.replace(" ", "")
    # A reboot flagged earlier (e.g. by the installer's offline run) that has happened:
    # this profile adds no kernel arguments, so the running kernel has them all.
    marker = Path(f"/proc/{sim.keeper.pid}/root") / from_root(layout.REBOOT_MARKER)
    marker.write_text("2026-01-01T00:00:00Z\n")
    result = sim.run(f"{better}{script}", "--online", timeout=60)
    assert not marker.exists()
    assert "reboot-required cleared" in result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "network change kept" in result.stdout
    assert "ip link delete dev br0" in result.stdout
    assert addresses(sim, "eno1") == {"192.0.2.10/24", "192.0.2.11/24"}

    def recreated() -> bool:
        details = run("ip", "-n", sim.ns, "-j", "-d", "link", "show", "br0", check=False).stdout.replace(
            " ", ""
        )
        port = run("ip", "-n", sim.ns, "-j", "link", "show", "eno2", check=False).stdout.replace(" ", "")
        return '"stp_state":1' in details and '"master":"br0"' in port

    assert wait_for(recreated, 15), sim.networkd_log()
    # Nothing rolls it back later: the guard saw the confirmation and left.
    time.sleep(9)
    assert addresses(sim, "eno1") == {"192.0.2.10/24", "192.0.2.11/24"}


# --- host users (hosts.<host>.users) --------------------------------------------------


def _account_root(root: Path) -> Path:
    """A throw-away root with only root's account and a libvirt group (as libvirt's
    package would leave it): what useradd --root, usermod --root and chpasswd --root edit."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nlibvirt:x:990:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\nlibvirt:!::\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).chmod(0o600)
    return root


def test_users_are_made_with_keys_sudo_rule_and_password_then_left_alone(tmp_path: Path) -> None:
    profile = tmp_path / "users.yaml"
    profile.write_text(
        "hosts:\n"
        "  hv1:\n"
        "    users:\n"
        "      - name: ops\n"
        "        ssh-authorized-keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsKey ops@site']\n"
        "        sudo: true\n"
        "        groups: [libvirt, wheel]\n"
        "      - name: admin\n"
        "        passwd: $6$saltsalt$hashhashhashhash\n"
        "        shell: /bin/sh\n"
    )
    out = built(profile, tmp_path / "out")
    root = _account_root(tmp_path / "root")
    first = bootstrap(out, "hv1", "--root", str(root))
    assert first.returncode == 0, first.stdout + first.stderr
    passwd = (root / "etc/passwd").read_text().splitlines()
    assert "ops:x:1000:1000::/home/ops:/bin/bash" in passwd
    # gid 1001 went to wheel, made for ops (the profile's order) before admin's own group
    assert "admin:x:1001:1002::/home/admin:/bin/sh" in passwd
    group = (root / "etc/group").read_text().splitlines()
    assert "libvirt:x:990:ops" in group
    assert any(line.startswith("wheel:x:") and line.endswith(":ops") for line in group)  # made, then joined
    shadow = {
        line.split(":")[0]: line.split(":")[1] for line in (root / "etc/shadow").read_text().splitlines()
    }
    assert shadow["admin"] == "$6$saltsalt$hashhashhashhash"
    assert shadow["root"] == "*"  # root stays as it was: not listed
    assert shadow["ops"].startswith("!")  # no password asked for: locked
    assert "$6$saltsalt" not in first.stdout + first.stderr  # the hash is never printed
    keys = root / "home/ops/.ssh/authorized_keys"
    assert keys.read_text().splitlines()[1:] == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsKey ops@site"]
    assert (keys.stat().st_mode & 0o777, keys.stat().st_uid, keys.stat().st_gid) == (0o600, 1000, 1000)
    assert (keys.parent.stat().st_mode & 0o777, keys.parent.stat().st_uid) == (0o700, 1000)
    rule = root / "etc/sudoers.d/90-kvmnet-ops"
    assert rule.read_text().splitlines()[1:] == ["ops ALL=(ALL) NOPASSWD:ALL"]
    assert rule.stat().st_mode & 0o777 == 0o440
    assert not (root / "etc/sudoers.d/90-kvmnet-admin").exists()
    again = bootstrap(out, "hv1", "--root", str(root))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "hv1: no changes" in again.stdout, again.stdout
    # A key edited by hand is put back (the file is kvmnet's); nothing else is touched.
    keys.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStranger x\n")
    fixed = bootstrap(out, "hv1", "--root", str(root))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "write_owned" in fixed.stdout and "useradd" not in fixed.stdout, fixed.stdout
    assert "AAAAIOpsKey" in keys.read_text() and "Stranger" not in keys.read_text()


def test_dry_run_says_which_users_it_would_make(tmp_path: Path) -> None:
    out = built(REPO / "profiles" / "default.yaml", tmp_path / "out")
    root = _account_root(tmp_path / "root")
    dry = bootstrap(out, "hv1", "--root", str(root), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"would: useradd --root {root} --create-home --user-group --shell /bin/bash ops" in dry.stdout
    assert "ops" not in (root / "etc/passwd").read_text()
