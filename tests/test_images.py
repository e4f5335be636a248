"""Golden-image elements and `kvmnet image`, checked by their consumers.

Default suite:
- `dib-lint` (diskimage-builder's own linter) passes on every generated element, run on
  a copy outside this repository's git (it skips ignored files), and is shown to have
  checked each file; a broken copy makes it fail (negative control);
- every hook is named, moded and written as diskimage-builder runs it (dib-run-parts'
  name rule, `#!/bin/bash`, `set -eu -o pipefail`, DIB_DEBUG_TRACE), modes come through
  the writer, shellcheck passes on hooks and shims;
- the guest element carries exactly kvmnet's own `write_files` of the guest's user-data,
  the host element exactly the host's bundle (the PXE bytes); output is deterministic;
- sealing runs in cleanup.d, which diskimage-builder's own script runs after finalise.d;
- `kvmnet image`: clean errors for a bad --machine/--role/--mirror, the mirror read from
  sample apt sources (one-line and deb822), device-mapper detection, --dry-run.

`-m vm`: the VM tier's guest, host and Vagrant images really built by `kvmnet image`
(through tests/support/images.py, which the VM and Vagrant tiers share, so each is built
once), inspected offline: files and modes, enabled units, GRUB arguments, the vagrant
user, empty machine-id, no SSH host keys, cloud-init clean.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from generator import layout
from generator.image import dib, mirror, shims
from generator.layout import from_root
from generator.pipeline import artifacts_for, build, plan_profile
from generator.renderers import Artifact
from generator.renderers.bundle import tarball
from generator.resources import templates_dir
from generator.templating import GENERATED
from tests.support import images as image_support
from tests.support.cli import kvmnet

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
BIN = Path(sys.executable).parent
#: dib-run-parts runs only names of this form (a dot, e.g. `50-x.sh`, is skipped silently).
HOOK_NAME = re.compile(r"^[0-9]{2}-[A-Za-z0-9_-]+$")
HOOK_DIRS = {"install.d", "post-install.d", "finalise.d", "cleanup.d"}

#: A guest with extra write_files of its own: they belong to the instance, not the image.
EXTRA_FILES = """
hosts:
  hv1:
    network:
      ethernets: {eno1: {}}
      bridges: {br0: {interfaces: [eno1]}}
guests:
  g1:
    host: hv1
    vcpus: 4
    ipv6: disabled
    interfaces:
      - {bridge: br0, queues: 2, rx-ring: 512}
    cloud-config:
      write_files:
        - {path: /etc/instance-only, content: "mine\\n"}
"""


def _elements(artifacts: list[Artifact]) -> dict[str, list[Artifact]]:
    """Each element directory (`images/dib/<machine>/elements/<element>`) and its files."""
    found: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        parts = artifact.path.split("/")
        if parts[:2] == ["images", "dib"]:
            found.setdefault("/".join(parts[:5]), []).append(artifact)
    return found


def _all_elements() -> dict[str, list[Artifact]]:
    found: dict[str, list[Artifact]] = {}
    for profile in PROFILES:
        for element, files in _elements(list(artifacts_for(plan_profile(profile)))).items():
            found[f"{profile.stem}:{element}"] = files
    return found


ELEMENTS = _all_elements()


def _write_elements(root: Path, files: list[Artifact], element_base: str) -> Path:
    """One element's files under `root/elements/<element>/`, with their modes."""
    name = element_base.rsplit("/", 1)[1]
    for artifact in files:
        target = root / "elements" / name / artifact.path.removeprefix(element_base + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(artifact.content)
        target.chmod(artifact.mode)
    return root / "elements"


def _dib_lint(root: Path) -> subprocess.CompletedProcess[str]:
    # A git repository of its own, with nothing ignored: dib-lint asks git which files to
    # skip, and this repository's .gitignore would hide output/.
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "lib").mkdir(exist_ok=True)
    return subprocess.run(
        [str(BIN / "dib-lint")],
        cwd=root,
        env={
            **os.environ,
            "ELEMENTS_DIR": "elements",
            "LIB_DIR": "lib",
            "PATH": f"{BIN}:{os.environ['PATH']}",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.consumer
def test_every_profile_machine_has_its_element() -> None:
    for profile in PROFILES:
        plan = plan_profile(profile).plan
        paths = {a.path for a in artifacts_for(plan_profile(profile))}
        for host in plan.hosts:
            assert f"{layout.element_dir(host.name, 'host')}/README.rst" in paths
        for guest in plan.guests:
            assert f"{layout.element_dir(guest.name, 'guest')}/README.rst" in paths


#: Host elements with the post-install.d hook that gives the build its resolver back once
#: systemd-resolved is installed: the hosts with nameservers, default.yaml's hv1 and hv2.
RESOLVER_HOSTS = 2


@pytest.mark.consumer
def test_dib_lint_passes_and_checks_every_file(tmp_path: Path) -> None:
    """All elements of all bundled profiles: dib-lint names each file it checked."""
    checked_total = 0
    for index, (name, files) in enumerate(sorted(ELEMENTS.items())):
        root = tmp_path / str(index)
        base = name.split(":", 1)[1]
        _write_elements(root, files, base)
        result = _dib_lint(root)
        assert result.returncode == 0 and "PASS" in result.stdout, f"{name}:\n{result.stdout}{result.stderr}"
        element = base.rsplit("/", 1)[1]
        seen = set(re.findall(r"^(?:Checking|Parsing) +(elements/\S+)$", result.stdout, re.M))
        expected = {f"elements/{element}/{a.path.removeprefix(base + '/')}" for a in files}
        expected -= {f"elements/{element}/README.rst"}  # dib-lint checks .rst for tabs only, silently
        assert expected <= seen, f"{name}: dib-lint did not check {sorted(expected - seen)}"
        assert "Skipping" not in result.stdout
        checked_total += len(seen)
    # every file but README.rst, in every element: six, and a host's cloud.cfg and
    # first-boot unit; and the
    # resolver hook of each host with nameservers (default.yaml's hv1 and hv2)
    hosts = sum(1 for name in ELEMENTS if name.endswith("/kvmnet-host"))
    assert checked_total == 6 * len(ELEMENTS) + 2 * hosts + RESOLVER_HOSTS


@pytest.mark.consumer
def test_dib_lint_fails_on_a_broken_element(tmp_path: Path) -> None:
    """Negative control: the same lint on a hook without pipefail and an executable
    environment file fails, naming both."""
    name, files = next((n, f) for n, f in sorted(ELEMENTS.items()) if n.endswith("kvmnet-guest"))
    base = name.split(":", 1)[1]
    elements = _write_elements(tmp_path, files, base)
    hook = elements / "kvmnet-guest/install.d/60-kvmnet-guest"
    hook.write_text(hook.read_text().replace("set -o pipefail\n", ""))
    env_file = elements / "kvmnet-guest/environment.d/10-kvmnet-guest"
    env_file.chmod(0o755)
    result = _dib_lint(tmp_path)
    assert result.returncode != 0
    assert f"{hook.relative_to(tmp_path)} is not set -o pipefail" in result.stdout
    assert (
        f"Environment file {env_file.relative_to(tmp_path)} should not be marked as executable"
        in result.stdout
    )


@pytest.mark.consumer
@pytest.mark.parametrize("name", sorted(ELEMENTS))
def test_element_structure(name: str) -> None:
    files = ELEMENTS[name]
    base = name.split(":", 1)[1]
    element = base.rsplit("/", 1)[1]
    rel = {a.path.removeprefix(base + "/"): a for a in files}
    data = (
        "kvmnet-guest-files/files.tar.gz" if element == "kvmnet-guest" else "kvmnet-host-bundle/bundle.tar.gz"
    )
    hook = "install.d/60-kvmnet-guest" if element == "kvmnet-guest" else "finalise.d/60-kvmnet-host"
    host_only = (
        {"kvmnet-host-bundle/cloud.cfg", "kvmnet-host-bundle/firstboot.service"}
        if element == "kvmnet-host"
        else set()
    )
    if element == "kvmnet-host" and name.startswith("default:"):  # hosts with nameservers
        host_only.add("post-install.d/10-kvmnet-host-resolver")
    assert set(rel) == {
        "README.rst",
        "element-deps",
        "package-installs.yaml",
        f"environment.d/10-{element}",
        f"cleanup.d/99-{element}-seal",
        data,
        hook,
        *host_only,
    }
    assert rel["element-deps"].content.decode().split() == [
        "cloud-init",
        "cloud-init-datasources",
        "package-installs",
    ]
    packages = yaml.safe_load(rel["package-installs.yaml"].content)
    assert "ethtool" in packages
    for path, artifact in rel.items():
        text_head = artifact.content[:2]
        if path.split("/")[0] in HOOK_DIRS:
            assert HOOK_NAME.match(path.split("/")[1]), path
            assert artifact.mode == 0o755, path
            text = artifact.content.decode()
            assert text.startswith("#!/bin/bash\n"), path
            assert re.search(r"^set -eu$", text, re.M) and re.search(r"^set -o pipefail$", text, re.M), path
            assert 'if [ "${DIB_DEBUG_TRACE:-0}" -gt 0 ]; then\n    set -x\nfi' in text, path
            assert GENERATED in text
        else:
            assert artifact.mode == 0o644, path
            assert text_head != b"#!", path
    assert b"NoCloud" in rel[f"environment.d/10-{element}"].content


@pytest.mark.consumer
def test_modes_come_through_the_writer(tmp_path: Path) -> None:
    built = build(REPO / "profiles/tuned.yaml", tmp_path / "out")
    assert built.changes
    elements = tmp_path / "out" / layout.element_dir("tune1", "host")
    assert stat.S_IMODE((elements / "finalise.d/60-kvmnet-host").stat().st_mode) == 0o755
    assert stat.S_IMODE((elements / "cleanup.d/99-kvmnet-host-seal").stat().st_mode) == 0o755
    assert stat.S_IMODE((elements / "environment.d/10-kvmnet-host").stat().st_mode) == 0o644
    assert stat.S_IMODE((elements / "kvmnet-host-bundle/bundle.tar.gz").stat().st_mode) == 0o644


def _members(data: bytes) -> dict[str, tuple[int, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        out: dict[str, tuple[int, bytes]] = {}
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name] = (member.mode, handle.read())
        return out


@pytest.mark.consumer
def test_guest_element_carries_the_seeds_own_files(tmp_path: Path) -> None:
    """Byte for byte kvmnet's write_files of the seed; the profile's own extra files stay
    in the seed only."""
    profile = tmp_path / "p.yaml"
    profile.write_text(EXTRA_FILES)
    artifacts = {a.path: a for a in artifacts_for(plan_profile(profile))}
    seed = yaml.safe_load(artifacts[layout.guest_seed("g1").user_data].content)
    ours = {
        f["path"].lstrip("/"): (int(f["permissions"], 8), f["content"].encode())
        for f in seed["write_files"]
        if f["path"] != "/etc/instance-only"
    }
    element = layout.element_dir("g1", "guest")
    members = _members(artifacts[f"{element}/kvmnet-guest-files/files.tar.gz"].content)
    assert members == ours
    assert {
        from_root(layout.GUEST_SYSCTL),
        from_root(layout.guest_link("eth0")),
        from_root(layout.NIC_TUNING_SCRIPT),
        from_root(layout.NIC_TUNING_UNIT),
    } == set(members)
    assert members[from_root(layout.NIC_TUNING_SCRIPT)][0] == 0o755
    hook = artifacts[f"{element}/install.d/60-kvmnet-guest"].content.decode()
    assert "systemctl enable systemd-networkd.service" in hook
    assert f"systemctl enable {layout.NIC_TUNING_UNIT_NAME}" in hook


def test_every_guest_element_carries_the_plans_files() -> None:
    """For every guest of the bundled profiles, user-data writes the plan's files first
    (GuestPlan.files, in order, with their modes), and the guest element's tarball holds
    exactly those, with the same bytes."""
    seen = 0
    for profile in PROFILES:
        planned = plan_profile(profile)
        artifacts = {a.path: a for a in artifacts_for(planned)}
        for guest in planned.plan.guests:
            seed = yaml.safe_load(artifacts[layout.guest_seed(guest.name).user_data].content)
            written = seed.get("write_files", [])[: len(guest.files)]
            assert [(w["path"], int(w["permissions"], 8)) for w in written] == [
                (f.path, f.mode) for f in guest.files
            ]
            element = layout.element_dir(guest.name, "guest")
            members = _members(artifacts[f"{element}/kvmnet-guest-files/files.tar.gz"].content)
            assert members == {
                from_root(w["path"]): (int(w["permissions"], 8), w["content"].encode()) for w in written
            }
            seen += len(members)
    assert seen, "no bundled guest has files: the test checks nothing"


@pytest.mark.consumer
def test_host_element_carries_the_pxe_bundle() -> None:
    planned = plan_profile(REPO / "profiles/tuned.yaml")
    artifacts = list(artifacts_for(planned))
    by_path = {a.path: a for a in artifacts}
    carried = by_path[f"{layout.element_dir('tune1', 'host')}/kvmnet-host-bundle/bundle.tar.gz"].content
    assert carried == tarball("tune1", artifacts)
    members = _members(carried)
    rootfs = {
        a.path.removeprefix(f"{layout.host_dir('tune1')}/"): (a.mode, a.content)
        for a in artifacts
        if a.path.startswith(f"{layout.rootfs_dir('tune1')}/")
    }
    assert rootfs and {k: v for k, v in members.items() if k.startswith(f"{layout.ROOTFS}/")} == rootfs
    assert members[layout.BOOTSTRAP] == (0o755, by_path[layout.bootstrap("tune1")].content)


#: Debian's cloud-init 22.4 reading /etc/cloud/cloud.cfg and cloud.cfg.d of argv[1] as it does
#: at boot (util.read_conf_with_confd), then deciding the network as
#: `stages.Init._find_networking_config` does, for a NoCloud seed that has a network-config.
CLOUD_INIT_READS_CONFIG = """
import json, sys
from cloudinit import sources, util
from cloudinit.sources.DataSourceNoCloud import DataSourceNoCloud
from cloudinit.stages import Init
cfg = util.read_conf_with_confd(sys.argv[1] + "/cloud.cfg")
class Seeded:
    network_config = {"version": 2, "ethernets": {"mgmt": {"dhcp4": True}}}
    network_config_sources = DataSourceNoCloud.network_config_sources
init = Init(ds_deps=[])
init._cfg = cfg
init.datasource = Seeded()
config, source = init._find_networking_config()
print(json.dumps({"datasource_list": cfg.get("datasource_list"), "network": config, "source": str(source)}))
"""


def _cloud_init_reads(etc_cloud: Path) -> dict[str, object]:
    if shutil.which("cloud-init") is None:
        pytest.fail("cloud-init is needed (apt-get install cloud-init; deps/apt-test.txt lists it)")
    seen = subprocess.run(
        ["/usr/bin/python3", "-c", CLOUD_INIT_READS_CONFIG, str(etc_cloud)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    data = json.loads(seen.stdout)
    assert isinstance(data, dict)
    return data


@pytest.mark.consumer
def test_host_image_cloud_init_is_nocloud_only_and_leaves_the_network(tmp_path: Path) -> None:
    """The host element's cloud.cfg.d file, beside the one diskimage-builder's
    cloud-init-datasources element writes (`[NoCloud, None]`), read by Debian's cloud-init:
    NoCloud only, and no network config even when a seed brings one (kvmnet's networkd
    files own the NICs). The control, without it: `None` listed, the seed's network used."""
    planned = plan_profile(REPO / "profiles/tuned.yaml")
    by_path = {a.path: a for a in artifacts_for(planned)}
    element = layout.element_dir("tune1", "host")
    ours = by_path[f"{element}/kvmnet-host-bundle/cloud.cfg"].content
    finalise = by_path[f"{element}/finalise.d/60-kvmnet-host"].content.decode()
    assert f"/tmp/in_target.d/kvmnet-host-bundle/cloud.cfg {layout.CLOUD_HOST_IMAGE}" in finalise
    etc = tmp_path / "etc-cloud"
    shutil.copytree("/etc/cloud", etc, ignore=shutil.ignore_patterns("*.d", "templates"))
    (etc / "cloud.cfg.d").mkdir()
    # What diskimage-builder's cloud-init-datasources element writes for NoCloud.
    (etc / "cloud.cfg.d/91-dib-cloud-init-datasources.cfg").write_text(
        "datasource_list: [  NoCloud, None ]\n"
    )
    control = _cloud_init_reads(etc)
    assert control["datasource_list"] == ["NoCloud", "None"]
    assert control["network"] == {"version": 2, "ethernets": {"mgmt": {"dhcp4": True}}}
    (etc / "cloud.cfg.d" / layout.CLOUD_HOST_IMAGE.rsplit("/", 1)[1]).write_bytes(ours)
    seen = _cloud_init_reads(etc)
    assert seen == {"datasource_list": ["NoCloud"], "network": None, "source": "system_cfg"}


@pytest.mark.consumer
def test_output_is_deterministic() -> None:
    for profile in (REPO / "profiles/guests.yaml", REPO / "profiles/tuned.yaml"):
        first = [a for a in artifacts_for(plan_profile(profile)) if a.path.startswith("images/")]
        second = [a for a in artifacts_for(plan_profile(profile)) if a.path.startswith("images/")]
        assert first and first == second


@pytest.mark.consumer
def test_sealing_runs_in_the_last_phase() -> None:
    """cleanup.d comes after finalise.d in diskimage-builder's own script, and the seal
    hook does all three things, on the target root."""
    lib = next(Path(sys.prefix).glob("lib/python3*/site-packages/diskimage_builder/lib"))
    steps = [line.strip() for line in (lib / "disk-image-create").read_text().splitlines()]
    assert steps.index("run_d_in_target finalise") + 1 == steps.index("finalise_base")
    functions = (lib / "img-functions").read_text()
    body = functions[functions.index("function finalise_base () {") :].splitlines()[1]
    assert body.strip() == "TARGET_ROOT=$TMP_MOUNT_PATH run_d cleanup"
    for name, files in ELEMENTS.items():
        seal = next(a for a in files if "/cleanup.d/" in a.path).content.decode()
        assert 'chroot "$TARGET_ROOT" cloud-init clean' in seal, name
        assert 'truncate -s 0 "$TARGET_ROOT/etc/machine-id"' in seal, name
        assert "-name 'ssh_host_*' -type f -delete" in seal, name


@pytest.mark.consumer
def test_shellcheck_passes_on_hooks_and_shims(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck)")
    scripts: list[str] = []
    for index, (_, files) in enumerate(sorted(ELEMENTS.items())):
        for artifact in files:
            if artifact.mode == 0o755:
                path = tmp_path / str(index) / artifact.path.rsplit("/", 1)[1]
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(artifact.content)
                scripts.append(str(path))
    shims.write(tmp_path / "shims", shims.SHIMS)
    scripts += [str(tmp_path / "shims" / name) for name in shims.SHIMS]
    result = subprocess.run(
        ["shellcheck", "--severity=style", *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
    assert len(scripts) == 2 * len(ELEMENTS) + RESOLVER_HOSTS + len(shims.SHIMS)


# --- the mirror, device-mapper, the command -------------------------------------------


def _apt(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "etc/apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.consumer
def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    root = _apt(
        tmp_path,
        {
            "sources.list": "# a comment\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main\n"
            "deb http://mirror.example/debian-security bookworm-security main  # trailing\n",
        },
    )
    found = mirror.find("bookworm", root)
    assert found.main == "http://mirror.example/debian"
    assert found.security == "http://mirror.example/debian-security"
    assert found.origin == f"{root}/etc/apt/sources.list:3"


@pytest.mark.consumer
def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    root = _apt(
        tmp_path,
        {
            "sources.list.d/a-off.sources": "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
            "Components: main\nEnabled: no\n",
            "sources.list.d/b.sources": "# snapshot\nTypes: deb deb-src\nURIs: https://deb.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n"
            " .\n -----END PGP PUBLIC KEY BLOCK-----\n\nTypes: deb\nURIs: https://deb.example/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n",
            "sources.list.d/c.list.disabled": "deb http://ignored.example/debian bookworm main\n",
            "sources.list.d/d.list": "deb http://other.example/node nodistro main\n",
        },
    )
    found = mirror.find("bookworm", root)
    assert (found.main, found.security) == (
        "https://deb.example/debian",
        "https://deb.example/debian-security",
    )
    assert [p.name for p in mirror.source_files(root)] == ["a-off.sources", "b.sources", "d.list"]


@pytest.mark.consumer
def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    root = _apt(tmp_path, {"sources.list": "deb http://archive.example/ubuntu jammy main\n"})
    with pytest.raises(
        mirror.MirrorError,
        match=r"no Debian mirror for bookworm in the apt sources .*sources.list.*--mirror URL",
    ):
        mirror.find("bookworm", root)


@pytest.mark.consumer
def test_this_machines_mirror_is_found() -> None:
    """The real /etc/apt of this machine (the mirror the image builds use)."""
    found = mirror.find("bookworm")
    assert found.main.startswith(mirror.SCHEMES)


@pytest.mark.consumer
def test_device_mapper_detection(tmp_path: Path) -> None:
    devices = "Character devices:\n  1 mem\n 10 misc\n\nBlock devices:\n  7 loop\n  8 sd\n"
    (tmp_path / "devices").write_text(devices)
    assert not shims.has_device_mapper(tmp_path)
    (tmp_path / "devices").write_text(devices + "253 device-mapper\n")
    assert shims.has_device_mapper(tmp_path)
    # As root, a real sudo would reset PATH and hide the kpartx/dmsetup shims.
    assert shims.Needs(device_mapper=False, sudo=True).shims == ("kpartx", "dmsetup", "sudo")
    assert shims.Needs(device_mapper=True, sudo=False).shims == ("sudo",)
    assert shims.Needs(device_mapper=True, sudo=True).shims == ()
    assert shims.Needs(device_mapper=False, sudo=True, root=False).shims == ("kpartx", "dmsetup")
    assert "run as root" in shims.Needs(device_mapper=False, sudo=True, root=False).problem()
    assert "install sudo" in shims.Needs(device_mapper=True, sudo=False, root=False).problem()
    assert shims.Needs(device_mapper=True, sudo=True, root=False).problem() == ""


@pytest.mark.consumer
def test_shims_ship_as_templates(tmp_path: Path) -> None:
    written = shims.write(tmp_path, shims.SHIMS)
    for name in shims.SHIMS:
        assert (templates_dir() / f"images/shims/{name}.j2").is_file()
        assert os.access(written / name, os.X_OK)
    done = subprocess.run(
        [str(written / "sudo"), "-E", "--", "echo", "ran"], capture_output=True, text=True, check=False
    )
    assert done.stdout == "ran\n"


@pytest.mark.consumer
def test_bad_machine_and_role_are_clean_errors() -> None:
    result = kvmnet("image", "profiles/guests.yaml", "--role", "guest", "--machine", "nope", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "kvmnet image: profiles/guests.yaml has no guest named 'nope' (guests: app1, edge1, legacy1)",
        "kvmnet: 1 problem; nothing was written",
    ]
    result = kvmnet("image", "profiles/guests.yaml", "--role", "guest", "--dry-run")
    assert result.returncode == 2
    assert "has 3 guests (app1, edge1, legacy1): pick one with --machine" in result.stderr
    result = kvmnet("image", "profiles/guests.yaml", "--role", "vm", "--dry-run")
    assert result.returncode == 2 and "invalid choice: 'vm'" in result.stderr
    result = kvmnet("image", "profiles/minimal.yaml", "--role", "guest", "--dry-run")
    assert result.returncode == 2 and "has 0 guests (none)" in result.stderr
    result = kvmnet(
        "image", "profiles/guests.yaml", "--role", "host", "--machine", "kvm2", "--mirror", "deb.example"
    )
    assert result.returncode == 2 and "--mirror deb.example: give an http://" in result.stderr
    result = kvmnet("image", "profiles/bonded.yaml", "--role", "host", "--dry-run")
    assert result.returncode == 2
    assert "host hv-bond is installed as el9; kvmnet image builds debian12 images only" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.consumer
def test_bad_profile_is_located(tmp_path: Path) -> None:
    profile = tmp_path / "bad.yaml"
    profile.write_text("hosts:\n  hv1:\n    netwrk: {}\n")
    result = kvmnet("image", str(profile), "--role", "host", "--dry-run")
    assert result.returncode == 1
    assert f"{profile}:3:5:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.consumer
def test_dry_run_shows_the_build(tmp_path: Path) -> None:
    key = tmp_path / "vagrant.pub"
    key.write_text("ssh-rsa AAAA vagrant\n")
    result = kvmnet(
        "image", "profiles/tuned.yaml", "--role", "host", "--mirror", "http://mirror.example/debian/",
        "--vagrant-key", str(key), "-o", str(tmp_path / "h.qcow2"), "--dry-run",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "DIB_DISTRIBUTION_MIRROR=http://mirror.example/debian" in lines
    assert "DIB_RELEASE=bookworm" in lines
    assert f"DIB_DEV_USER_AUTHORIZED_KEYS={key}" in lines
    assert "DIB_DEV_USER_USERNAME=vagrant" in lines
    assert any(line.startswith("DIB_IMAGE_CACHE=") for line in lines)
    assert any(line.startswith("DIB_LOCKFILES=") for line in lines)
    elements = re.escape(layout.elements_dir("tune1"))
    assert any(re.match(rf"ELEMENTS_PATH=\S+/{elements}$", line) for line in lines)
    assert lines[-1] == (
        f"disk-image-create -t qcow2 -o {tmp_path / 'h'} vm debian-minimal cloud-init "
        "cloud-init-datasources openssh-server kvmnet-host devuser"
    )
    assert not (tmp_path / "h.qcow2").exists()


@pytest.mark.consumer
def test_phases_are_read_from_dib_output() -> None:
    phases = dib.Phases()
    lines = [
        "2026-01-01 00:00:00.000 | Building elements: base vm",
        "2026-01-01 00:00:00.000 | Running hooks from /tmp/dib_build.x/hooks/root.d",
        "2026-01-01 00:00:00.000 | dib-run-parts Running /tmp/dib_build.x/hooks/root.d/08-debootstrap",
        "2026-01-01 00:00:00.000 | dib-run-parts Running /tmp/in_target.d/install.d/60-kvmnet-guest",
        "2026-01-01 00:00:00.000 | Converting image using qemu-img convert",
    ]
    started = [phases.feed(line) for line in lines]
    assert started == ["elements", "root.d", None, "install.d", "qemu-img convert"]
    assert [name for name, _ in phases.durations(time.monotonic())] == [
        "elements",
        "root.d",
        "install.d",
        "qemu-img convert",
    ]


@pytest.mark.consumer
def test_failed_build_leaves_no_image(tmp_path: Path) -> None:
    """A disk-image-create that fails after writing part of an image: the tail of its log,
    exit 1, nothing at -o."""
    fake = tmp_path / "bin/disk-image-create"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'out=$4\necho "Running hooks from /tmp/dib_build.x/hooks/root.d"\n'
        'echo partial >"$out.qcow2"\necho "E: Failed getting release file" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    target = tmp_path / "img.qcow2"
    rec = dib.recipe(
        "guest", tmp_path, mirror.Mirrors("http://m.example/debian", None, "test"), tmp_path / "c", None
    )
    result = dib.run(rec, target, str(fake), 60, lambda _n, _t: None)
    assert not result.ok and result.reason == "disk-image-create exited with 1"
    assert result.tail[-1] == "E: Failed getting release file"
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".img")] == []
    assert result.log.read_text().endswith("E: Failed getting release file\n")


@pytest.mark.consumer
def test_real_failed_build_is_reported_and_leaves_nothing(tmp_path: Path) -> None:
    """The real disk-image-create against a mirror that does not answer (a closed port on
    loopback): debootstrap fails in root.d; exit 1, DIB's own error in the tail, no image."""
    lacking = image_support.missing()
    if lacking:
        pytest.fail(f"this machine lacks {', '.join(lacking)} (see docs/images.md)")
    target = tmp_path / "fail.qcow2"
    result = kvmnet(
        "image", "profiles/guests.yaml", "--role", "guest", "--machine", "edge1", "-o", str(target),
        "--mirror", "http://127.0.0.1:9/debian", "--cache", str(tmp_path / "cache"),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "E: Failed getting release file http://127.0.0.1:9/debian/dists/bookworm/Release" in result.stderr
    assert result.stderr.splitlines()[-2:] == [
        f"kvmnet image: build failed: disk-image-create exited with 1; no image was written to {target}",
        "kvmnet: 1 problem",
    ]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "fail.qcow2.log"]


# --- -m vm: real builds, inspected offline ------------------------------------------------

#: The VM tier's own machines (tests/test_vm.py, tests/test_vagrant.py): the images are
#: built once per content and shared, so a CI run builds each of them once.
GUEST_PROFILE, GUEST = REPO / "tests/vm/guest.yaml", "vm1"
HOST_PROFILE, HOST = REPO / "profiles/default.yaml", "hv1"
VAGRANT_PROFILE, VAGRANT_GUEST = REPO / "profiles/default.yaml", "web1"


@contextmanager
def _mounted(image: Path, scratch: Path) -> Iterator[Path]:
    """The image's root file system, read-only: qcow2 -> raw, a loop device whose
    partitions partx adds (the loop driver's own: no device-mapper here, and `losetup -P`
    finds none in this container), mounted ro."""
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
    )
    assert '"format": "qcow2"' in info.stdout
    raw = scratch / "image.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True, timeout=300)
    loop = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", str(raw)], capture_output=True, text=True, check=True
    ).stdout.strip()
    mnt = scratch / "root"
    mnt.mkdir()
    made: list[Path] = []
    try:
        # A loop device freed by another build may still list the old partition: update it.
        if subprocess.run(["partx", "-a", loop], capture_output=True, check=False).returncode != 0:
            subprocess.run(["partx", "-u", loop], check=True)
        name = loop.rsplit("/", 1)[1]
        parts = sorted(Path("/sys/block", name).glob(f"{name}p*"))
        assert parts, f"no partitions on {loop}"
        node = Path("/dev", parts[-1].name)
        if not node.exists():  # no udev: the node from the kernel's numbers
            major, minor = (parts[-1] / "dev").read_text().strip().split(":")
            os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(int(major), int(minor)))
            made.append(node)
        subprocess.run(["mount", "-o", "ro", str(node), str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["partx", "-d", loop], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
        for node in made:
            node.unlink(missing_ok=True)
        raw.unlink()


def _sealed(root: Path) -> None:
    assert (root / "etc/machine-id").read_bytes() == b""
    assert sorted((root / "etc/ssh").glob("ssh_host_*")) == []
    assert not (root / "var/lib/cloud/instance").exists()
    assert not (root / "var/lib/cloud/instances").exists()
    datasources = (root / "etc/cloud/cloud.cfg.d/91-dib-cloud-init-datasources.cfg").read_text()
    assert yaml.safe_load(datasources) == {"datasource_list": ["NoCloud", "None"]}  # DataSourceNone
    assert (root / "usr/sbin/sshd").exists() and (root / "usr/bin/cloud-init").exists()


@pytest.mark.vm
def test_guest_image_is_built_and_sealed(tmp_path: Path) -> None:
    started = time.monotonic()
    image = image_support.guest_image(GUEST_PROFILE, GUEST)
    print(f"guest image {image.name}: {time.monotonic() - started:.0f} s")
    artifacts = {a.path: a for a in artifacts_for(plan_profile(GUEST_PROFILE))}
    element = layout.element_dir(GUEST, "guest")
    members = _members(artifacts[f"{element}/kvmnet-guest-files/files.tar.gz"].content)
    assert members, "the VM tier's guest has tuned NICs: its element carries files"
    with _mounted(image, tmp_path) as root:
        for path, (mode, content) in members.items():
            assert (root / path).read_bytes() == content, path
            assert stat.S_IMODE((root / path).stat().st_mode) == mode, path
        wants = root / from_root(layout.UNIT_DIR) / "multi-user.target.wants"
        assert (wants / "systemd-networkd.service").is_symlink()
        assert (wants / layout.NIC_TUNING_UNIT_NAME).is_symlink() == (
            from_root(layout.NIC_TUNING_UNIT) in members
        )
        assert (root / "usr/sbin/ethtool").exists()
        _sealed(root)


@pytest.mark.vm
def test_host_image_is_built_and_sealed(tmp_path: Path) -> None:
    started = time.monotonic()
    image = image_support.host_image(HOST_PROFILE, HOST)
    print(f"host image {image.name}: {time.monotonic() - started:.0f} s")
    planned = plan_profile(HOST_PROFILE)
    artifacts = list(artifacts_for(planned))
    host = next(h for h in planned.plan.hosts if h.name == HOST)
    prefix = f"{layout.rootfs_dir(HOST)}/"
    with _mounted(image, tmp_path) as root:
        rootfs = [a for a in artifacts if a.path.startswith(prefix)]
        assert rootfs
        for artifact in rootfs:
            path = root / artifact.path.removeprefix(prefix)
            assert path.read_bytes() == artifact.content, artifact.path
            assert stat.S_IMODE(path.stat().st_mode) == artifact.mode, artifact.path
        assert (root / from_root(layout.BUNDLED_BOOTSTRAP)).is_file()
        assert (root / from_root(layout.STATE_DIR) / "installed").read_text().split() == sorted(
            a.path.removeprefix(prefix) for a in rootfs
        )
        assert not (root / from_root(layout.REBOOT_MARKER)).exists()
        units = root / from_root(layout.UNIT_DIR)
        assert (units / "multi-user.target.wants/systemd-networkd.service").is_symlink()
        for unit in (t.unit for t in host.tc if t.engine == "service"):
            # kvmnet-tc@ instances are WantedBy their device.
            device = layout.tc_instance(unit)
            wants = units / f"sys-subsystem-net-devices-{device}.device.wants/{unit}"
            assert wants.is_symlink(), unit
        grub = (root / "boot/grub/grub.cfg").read_text()
        linux = [line.split() for line in grub.splitlines() if line.strip().startswith("linux")]
        assert linux
        for line in linux:
            assert set(host.kernel.cmdline) <= set(line), line
        _sealed(root)


@pytest.mark.vm
def test_vagrant_image_has_the_vagrant_user(tmp_path: Path) -> None:
    """--vagrant: DIB's devuser with Vagrant's insecure key and password-less sudo, and
    the image still sealed."""
    key = dib.vagrant_key()
    if key is None:
        pytest.fail("Vagrant's insecure key is not installed (Debian package vagrant)")
    started = time.monotonic()
    image = image_support.vagrant_image(VAGRANT_PROFILE, VAGRANT_GUEST)
    print(f"vagrant image {image.name}: {time.monotonic() - started:.0f} s")
    with _mounted(image, tmp_path) as root:
        users = {
            line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
        }
        assert users["vagrant"][6] == "/bin/bash"
        assert (root / "home/vagrant/.ssh/authorized_keys").read_text().split() == key.read_text().split()
        assert (root / "etc/sudoers.d/vagrant").read_text() == "vagrant ALL=(ALL) NOPASSWD:ALL\n"
        assert (root / "usr/bin/sudo").exists()
        _sealed(root)
