"""generator/layout.py and the tree the build writes cannot drift apart.

- For every bundled profile, the paths the layout module gives for the plan's machines
  are exactly the files of the built manifest, apart from the content of directories
  the layout names (a host's rootfs/, an image element), and the top of the tree is the
  layout's.
- Every rootfs file falls under one of the bootstrap's patterns, so the bootstrap knows
  what to apply for each file a renderer writes.
- DESIGN.md's tree, spelled out once: other tools rely on these paths, so changing one
  must be deliberate.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from generator import layout, renderers
from generator.pipeline import artifacts_for, plan_profile
from generator.plan.types import Kind, Plan
from generator.renderers import DELIVERY, RENDERERS, ROOTFS_RENDERERS, ArtifactOrderError
from generator.renderers.bootstrap import PATHS

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
SEED_ISO = frozenset({"seed-iso"})


def given(plan: Plan) -> tuple[set[str], set[str]]:
    """The files the layout module names for `plan` (built with --seed-iso), and the
    directories whose content is a renderer's own."""
    files = {layout.MANIFEST, layout.INVENTORY, layout.VAGRANTFILE, *layout.CHECKS_COMMON}
    directories = set()
    for host in plan.hosts:
        name = host.name
        files |= {layout.bootstrap(name), layout.pxe_answer(name, host.install.distro)}
        files |= {layout.suite("host", name), layout.expected_state("host", name)}
        seed = layout.vagrant_seed(name)
        files |= {seed.user_data, seed.meta_data, seed.network_config, seed.image}
        files |= {
            layout.libvirt_network(name, i.netdev_name) for i in host.interfaces if i.kind is Kind.BRIDGE
        }
        on_host = {layout.HOST_MODULES}
        for iface in (*host.interfaces, *host.tap_ports):
            on_host.add(layout.networkd_file(iface.id, "network"))
            if iface.kind.is_netdev:
                on_host.add(layout.networkd_file(iface.id, "netdev"))
            if iface.link is not None:
                on_host.add(layout.networkd_file(iface.id, "link"))
        service = [t for t in host.tc if t.engine == "service"]
        on_host |= {layout.tc_batch(t.device) for t in service} | ({layout.TC_UNIT} if service else set())
        if host.kernel.sysctls:
            on_host.add(layout.HOST_SYSCTL)
        if host.kernel.bridge_sysctls_reapplied:
            on_host.add(layout.HOST_BR_NETFILTER_RULE)
        if host.kernel.cmdline:
            on_host.add(layout.KERNEL_CMDLINE)
            if host.install.distro != "el9":  # EL9 takes kernel arguments through grubby
                on_host.add(layout.HOST_GRUB)
        files |= {layout.rootfs_file(name, path) for path in on_host}
        directories.add(layout.element_dir(name, "host"))
    if plan.boot is not None:
        files |= {layout.PXE_DNSMASQ, layout.PXE_SERVICE, layout.pxe_http(layout.BOOT_SCRIPT)}
        for entry in plan.boot.entries:
            files.add(layout.pxe_http(layout.boot_script(entry.mac)))
            if entry.method == "installer":
                distro = next(h.install.distro for h in plan.hosts if h.name == entry.host)
                answers = layout.pxe_http(layout.boot_host_dir(entry.host))
                files.add(f"{answers}{layout.ANSWER_FILES[distro]}")
                if distro.startswith("ubuntu"):
                    files |= {f"{answers}user-data", f"{answers}meta-data"}
    for guest in plan.guests:
        name = guest.name
        seed = layout.guest_seed(name)
        files |= {layout.domain_xml(name), seed.user_data, seed.meta_data, seed.network_config, seed.image}
        files |= {layout.suite("guest", name), layout.expected_state("guest", name)}
        directories.add(layout.element_dir(name, "guest"))
    return files, directories


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_layout_names_every_file_of_the_manifest(profile: Path) -> None:
    planned = plan_profile(profile)
    artifacts = artifacts_for(planned, SEED_ISO)
    (listing,) = (a for a in artifacts if a.path == layout.MANIFEST)
    built = {str(f["path"]) for f in json.loads(listing.content)["files"]} | {layout.MANIFEST}
    assert built == {a.path for a in artifacts}
    files, directories = given(planned.plan)
    assert files - built == set(), "the layout names files the build does not write"
    rest = built - files
    assert {p for p in rest if not p.startswith(tuple(f"{d}/" for d in directories))} == set(), (
        "the build writes files the layout does not know"
    )
    assert all(any(p.startswith(f"{d}/") for p in rest) for d in directories), "an empty element"
    assert {p.split("/", 1)[0] for p in built} <= layout.TOP_LEVEL


def test_the_bundled_profiles_use_the_whole_top_level() -> None:
    used = {a.path.split("/", 1)[0] for p in PROFILES for a in artifacts_for(plan_profile(p))}
    assert used == layout.TOP_LEVEL


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_the_bootstrap_knows_every_rootfs_file(profile: Path) -> None:
    """Each file a renderer puts in rootfs/ matches a pattern by which the bootstrap
    decides what to apply (bash's `[[ == ]]`: `*` matches `/` too, as in fnmatch)."""
    planned = plan_profile(profile)
    artifacts = artifacts_for(planned)
    for host in planned.plan.hosts:
        prefix = f"{layout.rootfs_dir(host.name)}/"
        rootfs = [a.path.removeprefix(prefix) for a in artifacts if a.path.startswith(prefix)]
        assert rootfs
        unknown = [p for p in rootfs if not any(fnmatch.fnmatchcase(p, g) for g in PATHS.patterns())]
        assert unknown == [], f"{host.name}: the bootstrap applies none of these"
        (script,) = (a.content.decode() for a in artifacts if a.path == layout.bootstrap(host.name))
        assert all(pattern in script for pattern in PATHS.patterns())


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_only_the_rootfs_renderers_write_rootfs(profile: Path) -> None:
    """The vehicles are handed the files of the renderers they name (ROOTFS_RENDERERS for
    bootstrap.sh and the bundle): a rootfs file from any other renderer would be left out
    of the bootstrap's checksums and of every bundle."""
    plan = plan_profile(profile).plan
    prefixes = tuple(f"{layout.rootfs_dir(h.name)}/" for h in plan.hosts)
    made = {name: [a.path for a in render(plan)] for name, render in RENDERERS.items()}
    assert any(p.startswith(prefixes) for name in ROOTFS_RENDERERS for p in made[name])
    stray = [
        (name, p)
        for name, paths in made.items()
        if name not in ROOTFS_RENDERERS
        for p in paths
        if p.startswith(prefixes)
    ]
    assert stray == []


def test_a_vehicle_before_what_it_carries_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # pxe and images before bootstrap, which they carry
    reordered = {
        **{k: v for k, v in DELIVERY.items() if k != "bootstrap"},
        "bootstrap": DELIVERY["bootstrap"],
    }
    monkeypatch.setattr(renderers, "DELIVERY", reordered)
    with pytest.raises(ArtifactOrderError, match="runs before bootstrap"):
        renderers.render_all(plan_profile(REPO / "profiles/minimal.yaml").plan)


def test_the_output_tree_is_designs() -> None:
    """DESIGN.md "The output tree", with the machine paths the hosts' files land at."""
    assert [
        layout.MANIFEST,
        layout.INVENTORY,
        layout.bootstrap("hv1"),
        layout.rootfs_file("hv1", layout.networkd_file("eno1", "network")),
        layout.rootfs_file("hv1", layout.tc_batch("eno1")),
        layout.pxe_answer("hv1", "el9"),
        layout.libvirt_network("hv1", "br0"),
        layout.domain_xml("web1"),
        layout.guest_seed("web1").user_data,
        layout.guest_seed("web1").image,
        layout.suite("host", "hv-1"),
        layout.expected_state("guest", "web-1"),
        layout.element_dir("web1", "guest"),
        layout.VAGRANTFILE,
        layout.vagrant_seed("hv1").image,
    ] == [
        "manifest.json",
        "inventory.yaml",
        "hosts/hv1/bootstrap.sh",
        "hosts/hv1/rootfs/etc/systemd/network/10-kvmnet-eno1.network",
        "hosts/hv1/rootfs/etc/kvmnet/tc/eno1.tc",
        "hosts/hv1/pxe/kickstart.cfg",
        "hosts/hv1/libvirt/networks/br0.xml",
        "guests/web1/domain.xml",
        "guests/web1/nocloud/user-data",
        "guests/web1/seed.iso",
        "tests/test_host_hv_1.py",
        "tests/guest_web_1.json",
        "images/dib/web1/elements/kvmnet-guest",
        "vagrant/Vagrantfile",
        "vagrant/hosts/hv1/seed.iso",
    ]
    assert (layout.STATE_DIR, layout.BUNDLED_BOOTSTRAP, layout.REBOOT_MARKER) == (
        "/var/lib/kvmnet",
        "/var/lib/kvmnet/bundle/bootstrap.sh",
        "/var/lib/kvmnet/reboot-required",
    )


@pytest.mark.parametrize("name", ["hv1", "hv-1", "web2"])
def test_names_read_back(name: str) -> None:
    for role in ("host", "guest"):
        assert layout.suite_for_state(layout.expected_state(role, name)) == layout.suite(role, name)
    assert layout.host_of(layout.bootstrap(name)) == name
    assert layout.host_of(layout.rootfs_file(name, layout.HOST_SYSCTL)) == name
    assert layout.host_of(layout.domain_xml(name)) is None
    assert layout.tc_instance(layout.tc_unit(name)) == name


def test_what_is_not_an_expected_state_has_no_suite() -> None:
    for path in (layout.CHECKS_LIBRARY, "tests/report.json", "tests/host_.json", "other/host_hv1.json"):
        assert layout.suite_for_state(path) is None, path


def test_machine_paths_are_absolute_and_plain() -> None:
    """Absolute (rootfs_file refuses others), and free of what the bootstrap's single
    quotes or a shell word would have to escape."""
    paths = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and v.startswith("/")]
    assert len(paths) > 15
    for path in paths:
        assert all(c.isalnum() or c in "/._-@" for c in path), path
    with pytest.raises(ValueError, match="absolute"):
        layout.rootfs_file("hv1", "etc/x")
