"""cloud-init NoCloud seeds, read by their consumers: Debian 12's cloud-init 22.4 and the
programs the seed's files end up in on the guest.

For every guest of every bundled profile (profiles/*.yaml), with expected values from the plan:

- user-data passes `cloud-init schema --config-file` with no deprecation, and the check can
  fail (a wrong type for a known key is reported);
- kvmnet's own guard against unknown top-level keys: every generated key is in cloud-init's
  schema, `CLOUD_CONFIG_KEYS` is exactly the top-level properties of the installed
  schema-cloud-config-v1.json, and a typo'd key (`packges`) is refused with a located error
  suggesting `packages`, where `cloud-init schema` calls the same document valid;
- network-config is accepted by netplan 0.106 `generate` and by cloud-init's own converter to
  networkd (what a Debian guest runs): per NIC one .network matching the planned MAC with the
  planned MTU; dhcp6 off when IPv6 is; NICs after the first are optional;
- write_files: the .link files are picked by the real udev (`net_setup_link`) without a
  warning and carry the planned CombinedChannels=/RxBufferSize=; the tuning script passes
  shellcheck and, run against NICs with the planned MACs, calls ethtool exactly as planned;
  the unit passes `systemd-analyze verify` with no output; the IPv6 sysctl drop-in exists
  exactly when IPv6 is off, holds only the disable_ipv6 lines and is accepted by sysctl;
  nothing kvmnet writes is used from bootcmd, which cloud-init runs before write_files;
- user-data is 0600 in the output tree and holds password hashes only; meta-data has
  local-hostname and an instance-id that follows the seed's content and nothing else.

What udev lets us observe on a veth (this machine has no virtio-net): which .link it applies,
every parse complaint, and its attempt at RxBufferSize= (veth has no ring parameters, so udev
logs "Could not set ring buffer"). CombinedChannels= cannot be observed: veth has rx/tx
channels, no combined ones, and udev 252 clamps a requested count to the device's maximum
(here 0) and so silently sets nothing. The value is checked in the file and through the
tuning script's ethtool calls instead.

Extra cloud-config keeps YAML types and refuses plain passwords (tests at the end of this module).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator import layout
from generator.errors import PlanError
from generator.layout import GUEST_SYSCTL as SYSCTL
from generator.layout import NIC_TUNING_SCRIPT as CHANNELS_SCRIPT
from generator.layout import NIC_TUNING_UNIT as CHANNELS_UNIT
from generator.model.cloudinit import CLOUD_CONFIG_KEYS
from generator.model.frozen import frozen_dict
from generator.pipeline import Planned, artifacts_for, build, plan_profile
from generator.plan.types import GuestNic, GuestPlan
from generator.renderers.artifact import MODE_SECRET
from generator.renderers.cloudinit import files_for
from tests.support import networkd_ini as ini
from tests.support import udev
from tests.support.cli import kvmnet
from tests.support.kernel_gaps import kernel_gap
from tests.support.netplan import Netplan
from tests.support.netplan import fetch as fetch_netplan
from tests.support.networkd import Lab, run
from tests.support.pxe import shellcheck

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
NOCLOUD = ("user-data", "meta-data", "network-config")
TIMEOUT = 60
#: crypt(3) hashes as cloud-init and shadow take them: $id$[params$]salt$hash.
CRYPT = re.compile(r"\$(1|5|6|y|gy|2[aby]|7)\$[./A-Za-z0-9$=,+-]{8,}")
DISABLE_IPV6 = ("net.ipv6.conf.all.disable_ipv6 = 1", "net.ipv6.conf.default.disable_ipv6 = 1")

#: One host with one bridge and one guest; `{cloud_config}` is the guest's extra cloud-config.
SMALL = """\
hosts:
  kvm1:
    network:
      ethernets:
        eno1: {{}}
      bridges:
        br0:
          interfaces: [eno1]
          dhcp4: true
guests:
  vm1:
    host: kvm1
    interfaces:
      - bridge: br0
    cloud-config:
{cloud_config}
"""


# --- the plan and what kvmnet renders from it --------------------------------------------


@functools.cache
def planned(profile: Path) -> Planned:
    return plan_profile(profile)


def guest_plan(profile: Path, guest: str) -> GuestPlan:
    return next(g for g in planned(profile).plan.guests if g.name == guest)


@functools.cache
def seed(profile: Path, guest: str) -> Mapping[str, bytes]:
    """The guest's NoCloud files by name, as `kvmnet build` renders them."""
    prefix = f"{layout.guest_seed(guest).nocloud_dir}/"
    found = {
        a.path.removeprefix(prefix): a.content
        for a in artifacts_for(planned(profile))
        if a.path.startswith(prefix)
    }
    assert sorted(found) == sorted(NOCLOUD)
    return found


def user_data(profile: Path, guest: str) -> dict[str, Any]:
    text = seed(profile, guest)["user-data"].decode()
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def written(profile: Path, guest: str) -> dict[str, dict[str, Any]]:
    """user-data's write_files entries by path."""
    entries = user_data(profile, guest).get("write_files", [])
    by_path = {e["path"]: e for e in entries}
    assert len(by_path) == len(entries), "a path is written twice"
    return by_path


def link_path(nic: GuestNic) -> str:
    return layout.guest_link(nic.name)


def tuned(nic: GuestNic) -> bool:
    return nic.channels is not None or nic.rx_ring is not None


def effective_lines(text: str) -> list[str]:
    """Lines that are not blank or comments (sysctl.d(5) comments start with # or ;)."""
    return [line.strip() for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;"]


def small_profile(tmp_path: Path, cloud_config: str) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(cloud_config=textwrap.indent(textwrap.dedent(cloud_config), " " * 6)))
    return path


GUESTS = [pytest.param(p, g.name, id=f"{p.stem}/{g.name}") for p in PROFILES for g in planned(p).plan.guests]
TUNED = [
    pytest.param(p, g.name, id=f"{p.stem}/{g.name}")
    for p in PROFILES
    for g in planned(p).plan.guests
    if any(tuned(n) for n in g.nics)
]
TUNED_NICS = [
    pytest.param(p, g.name, n.index, id=f"{p.stem}/{g.name}/{n.name}")
    for p in PROFILES
    for g in planned(p).plan.guests
    for n in g.nics
    if tuned(n)
]
WITH_GUESTS = [p for p in PROFILES if planned(p).plan.guests]
IPV6_OFF = [
    pytest.param(p, g.name, id=f"{p.stem}/{g.name}")
    for p in PROFILES
    for g in planned(p).plan.guests
    if g.ipv6 == "disabled"
]


@pytest.mark.consumer
def test_bundled_profiles_cover_the_cases() -> None:
    """Guard: the parametrized tests below must not go empty or miss a branch of the renderer."""
    guests = [g for p in PROFILES for g in planned(p).plan.guests]
    nics = [n for g in guests for n in g.nics]
    assert GUESTS and TUNED and TUNED_NICS and IPV6_OFF
    assert {g.ipv6 for g in guests} == {"enabled", "disabled"}
    assert any(len(g.nics) > 1 for g in guests), "no guest with a second (optional) NIC"
    assert any(n.rx_ring is not None for n in nics) and any(
        n.channels is not None and n.rx_ring is None for n in nics
    )
    assert any(not tuned(n) for n in nics), "no NIC without tuning (e.g. e1000e)"
    assert any(
        n.channels is not None and n.queues is not None and n.channels < min(n.queues, g.vcpus)
        for g in guests
        for n in g.nics
    ), "no NIC whose channels are capped below min(queues, vCPUs) (channels:)"
    assert any(u.passwd for g in guests for u in g.users) and any(
        not u.passwd for g in guests for u in g.users
    )
    assert any(g.cloud_config for g in guests), "no guest with extra cloud-config"


# --- consumers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cloud_init() -> str:
    """Debian's cloud-init. No cloud-init, no pass: deps/apt-test.txt lists it."""
    found = shutil.which("cloud-init")
    if found is None:
        pytest.fail("cloud-init is not installed (apt-get install cloud-init; deps/apt-test.txt lists it)")
    return found


@functools.cache
def cloud_init_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def schema_check(binary: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="session")
def schema_keys(cloud_init: str) -> frozenset[str]:
    """Top-level keys of the installed schema-cloud-config-v1.json, through its allOf and $defs."""
    listing = subprocess.run(["dpkg", "-L", "cloud-init"], capture_output=True, text=True, check=True).stdout
    files = [line for line in listing.splitlines() if line.endswith("/schema-cloud-config-v1.json")]
    assert len(files) == 1, f"cloud-init's package lists {files or 'no'} schema-cloud-config-v1.json"
    schema = json.loads(Path(files[0]).read_text())
    keys: set[str] = set()

    def walk(node: Mapping[str, Any], seen: frozenset[str]) -> None:
        if ref := node.get("$ref"):
            assert ref.startswith("#/$defs/") and ref not in seen, ref
            walk(schema["$defs"][ref.removeprefix("#/$defs/")], seen | {ref})
        for branch in node.get("allOf", ()):
            walk(branch, seen)
        keys.update(node.get("properties", {}))

    walk(schema, frozenset())
    assert len(keys) > 50, f"only {len(keys)} keys found: is the schema's layout still allOf/$defs?"
    return frozenset(keys)


@pytest.fixture(scope="session")
def netplan() -> Netplan:
    """netplan 0.106 from Debian's archive, unpacked once. No netplan, no pass: CI needs it."""
    try:
        return fetch_netplan()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not fetch Debian's netplan.io 0.106 with apt: {exc}")


@pytest.fixture(scope="session")
def udevadm() -> udev.Udevadm:
    """Debian's udevadm, unpacked once. No udevadm, no pass: CI needs it."""
    try:
        return udev.fetch()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not fetch Debian's udev with apt: {exc}")


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Network namespaces of one test, removed when it ends, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and mounts")
    bench = Lab(tmp_path_factory.mktemp("ci"))
    try:
        yield bench
    finally:
        bench.close()


# --- user-data against cloud-init's schema -----------------------------------------------


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_user_data_passes_cloud_init_schema(
    profile: Path, guest: str, cloud_init: str, tmp_path: Path
) -> None:
    path = tmp_path / "user-data"
    path.write_bytes(seed(profile, guest)["user-data"])
    result = schema_check(cloud_init, path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Exactly the verdict: no "Cloud config schema deprecations:" either.
    assert output.strip() == f"Valid cloud-config: {path}", output


@pytest.mark.consumer
def test_cloud_init_schema_can_fail(cloud_init: str, tmp_path: Path) -> None:
    """The check above is real: a wrong type for a key cloud-init knows is reported invalid."""
    profile, guest = GUESTS[0].values
    assert isinstance(profile, Path) and isinstance(guest, str)
    data = user_data(profile, guest)
    assert isinstance(data["preserve_hostname"], bool)
    wrong = str(data["preserve_hostname"]).lower()
    data["preserve_hostname"] = wrong
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\n" + yaml.safe_dump(data))
    result = schema_check(cloud_init, path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Valid cloud-config" not in output
    assert f"preserve_hostname: '{wrong}' is not of type 'boolean'" in output, output


# --- top-level keys: kvmnet's own check --------------------------------------------------


@pytest.mark.consumer
def test_cloud_config_keys_are_the_installed_schema(cloud_init: str, schema_keys: frozenset[str]) -> None:
    """CLOUD_CONFIG_KEYS is exactly what the installed cloud-init knows: an upgrade that adds or
    drops a key fails here, not silently on a guest."""
    version = cloud_init_version(cloud_init)
    assert sorted(schema_keys - CLOUD_CONFIG_KEYS) == [], f"{version} knows keys kvmnet refuses"
    assert sorted(CLOUD_CONFIG_KEYS - schema_keys) == [], f"kvmnet accepts keys {version} does not know"


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_user_data_keys_are_in_the_schema(profile: Path, guest: str, schema_keys: frozenset[str]) -> None:
    keys = set(user_data(profile, guest))
    assert keys, "an empty user-data"
    assert sorted(keys - schema_keys) == []


@pytest.mark.consumer
def test_typo_key_is_refused_with_location(tmp_path: Path) -> None:
    path = small_profile(tmp_path, "packges: [htop]\ntimezone: Etc/UTC\n")
    text = path.read_text()
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "packges:" in row)
    column = text.splitlines()[line - 1].index("packges") + 1
    with pytest.raises(PlanError) as caught:
        plan_profile(path)
    [problem] = caught.value.diagnostics
    assert problem.path == ("guests", "vm1", "cloud-config", "packges")
    assert problem.location is not None
    assert (problem.location.file, problem.location.line, problem.location.column) == (
        str(path),
        line,
        column,
    )
    assert "did you mean 'packages'?" in problem.message
    # What the user sees: `file:line:col: key.path: message`.
    result = kvmnet("validate", str(path))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"{path}:{line}:{column}: guests.vm1.cloud-config.packges: "), (
        result.stderr
    )
    assert "did you mean 'packages'?" in result.stderr.splitlines()[0]


@pytest.mark.consumer
def test_cloud_init_lets_the_typo_through(cloud_init: str, tmp_path: Path) -> None:
    """Why kvmnet checks keys itself: cloud-init 22.4 calls the same document with `packges` valid."""
    path = small_profile(tmp_path, "packages: [htop]\n")
    [content] = [
        a.content for a in artifacts_for(plan_profile(path)) if a.path == layout.guest_seed("vm1").user_data
    ]
    right = content.decode()
    assert "\npackages:\n- htop\n" in right
    typo = tmp_path / "user-data"
    typo.write_text(right.replace("\npackages:\n", "\npackges:\n"))
    result = schema_check(cloud_init, typo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == f"Valid cloud-config: {typo}"


# --- network-config ----------------------------------------------------------------------


def network_config(profile: Path, guest: str) -> dict[str, Any]:
    data = yaml.safe_load(seed(profile, guest)["network-config"])
    assert isinstance(data, dict)
    return data


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_network_config_is_the_plan(profile: Path, guest: str) -> None:
    plan = guest_plan(profile, guest)
    data = network_config(profile, guest)
    assert data["version"] == 2
    assert list(data["ethernets"]) == [n.name for n in plan.nics]
    for nic in plan.nics:
        entry = data["ethernets"][nic.name]
        assert entry["match"] == {"macaddress": nic.mac}
        assert entry["set-name"] == nic.name
        assert entry["mtu"] == nic.mtu
        assert entry["dhcp4"] is nic.dhcp4
        if plan.ipv6 == "disabled":
            assert entry["dhcp6"] is False
        else:
            assert "dhcp6" not in entry and "accept-ra" not in entry
        # A NIC listed but missing would hold the boot: only the first one is waited for.
        assert entry.get("optional", False) is (nic.index > 0)


def networkd_units(directory: Path) -> list[ini.Unit]:
    return [ini.unit(ini.Kind.NETWORK, f.read_text(), str(f)) for f in sorted(directory.glob("*.network"))]


def match_macs(unit: ini.Unit) -> set[object]:
    [match] = unit.named("Match")
    found: set[object] = set()
    for key in ("MACAddress", "PermanentMACAddress"):
        value = match.get(key)
        if isinstance(value, tuple):
            found.update(value)
    return found


def unit_for(units: list[ini.Unit], nic: GuestNic) -> ini.Unit:
    matching = [u for u in units if nic.mac in match_macs(u)]
    assert len(matching) == 1, f"{len(matching)} .network files match {nic.mac}: {[u.label for u in units]}"
    return matching[0]


def link_value(unit: ini.Unit, key: str) -> object:
    values = [s.get(key) for s in unit.named("Link") if s.get(key) is not None]
    return values[-1] if values else None


@pytest.mark.netplan
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_network_config_netplan(profile: Path, guest: str, netplan: Netplan, tmp_path: Path) -> None:
    """netplan 0.106 `generate` takes network-config (netplan v2 under `network:`)."""
    plan = guest_plan(profile, guest)
    result = netplan.run(yaml.safe_dump({"network": network_config(profile, guest)}), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
    units = networkd_units(tmp_path / "run/systemd/network")
    assert len(units) == len(plan.nics)
    for nic in plan.nics:
        unit = unit_for(units, nic)
        assert link_value(unit, "MTUBytes") == nic.mtu, unit.label
        assert link_value(unit, "RequiredForOnline") == (False if nic.optional else None), unit.label
        if plan.ipv6 == "disabled":
            [network] = unit.named("Network")
            assert network.get("IPv6AcceptRA") is False, unit.label


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_network_config_cloud_init_networkd(
    profile: Path, guest: str, cloud_init: str, tmp_path: Path
) -> None:
    """What the guest runs: cloud-init's own conversion of network-config to networkd files."""
    plan = guest_plan(profile, guest)
    source = tmp_path / "network-config"
    source.write_bytes(seed(profile, guest)["network-config"])
    out = tmp_path / "out"
    result = subprocess.run(
        [
            *(cloud_init, "devel", "net-convert", "-p", str(source), "-k", "yaml"),
            *("-d", str(out), "-D", "debian", "-O", "networkd"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not re.search(r"WARN|ERROR|Traceback", output), output
    units = networkd_units(out / "etc/systemd/network")
    assert len(units) == len(plan.nics), [u.label for u in units]
    for nic in plan.nics:
        unit = unit_for(units, nic)
        [match] = unit.named("Match")
        assert match.get("Name") == (nic.name,), unit.label
        assert link_value(unit, "MTUBytes") == nic.mtu, unit.label
        # Every planned route arrives, and nothing else (cloud-init 22.4 reads only to and via).
        routes = {(r.get("Destination"), r.get("Gateway")) for r in unit.named("Route")}
        assert routes == {(r.destination, r.gateway) for r in nic.routes}, unit.label


# --- write_files: .link files ------------------------------------------------------------


@functools.cache
def debian_default_link(root: Path) -> ini.Section:
    [link] = ini.unit(ini.Kind.LINK, (root / "lib/systemd/network/99-default.link").read_text()).named("Link")
    return link


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_link_files_are_the_plan(profile: Path, guest: str, udevadm: udev.Udevadm) -> None:
    """One .link per tuned NIC, matched by MAC, with the planned counts and Debian's own naming
    and MAC policies (only the first matching .link applies, so ours must carry them)."""
    plan = guest_plan(profile, guest)
    files = written(profile, guest)
    links = {path for path in files if path.endswith(".link")}
    assert links == {link_path(n) for n in plan.nics if tuned(n)}
    default = debian_default_link(udevadm.root)
    for nic in (n for n in plan.nics if tuned(n)):
        entry = files[link_path(nic)]
        assert entry["permissions"] == "0644"
        unit = ini.unit(ini.Kind.LINK, entry["content"], entry["path"])
        [match] = unit.named("Match")
        assert match.entries == (("MACAddress", (nic.mac,)),)
        [section] = unit.named("Link")
        expected = {
            **{key: default.get(key) for key in ("NamePolicy", "AlternativeNamesPolicy", "MACAddressPolicy")},
            **({"CombinedChannels": str(nic.channels)} if nic.channels is not None else {}),
            **({"RxBufferSize": str(nic.rx_ring)} if nic.rx_ring is not None else {}),
        }
        assert dict(section.entries) == expected


@pytest.mark.networkd
@pytest.mark.parametrize(("profile", "guest", "index"), TUNED_NICS)
def test_link_file_in_udev(
    profile: Path, guest: str, index: int, scratch: Lab, udevadm: udev.Udevadm, tmp_path: Path
) -> None:
    """udev picks the NIC's .link among all of the guest's, without a complaint, and tries the ring."""
    nic = guest_plan(profile, guest).nics[index]
    files = written(profile, guest)
    links = {Path(p).name: e["content"].encode() for p, e in files.items() if p.endswith(".link")}
    assert {str(Path(link_path(nic)).parent)} == {udev.LINK_DIR}
    ns = scratch.namespace(f"ci-{guest}-{nic.name}")
    scratch.veth(ns, "kn-nic0", mac=nic.mac, peer_ns=ns, peer_name="kn-peer0", peer_up=False)
    setup = udevadm.net_setup_link(ns, "kn-nic0", links, tmp_path / "link")
    log = "\n".join(setup.log)
    assert setup.returncode == 0, log
    assert setup.syntax_warnings() == [], log
    assert {f"{udev.LINK_DIR}/{name}" for name in links} <= setup.parsed(), log
    assert setup.properties.get("ID_NET_LINK_FILE") == link_path(nic), log
    assert setup.properties.get("ID_NET_NAME") == "kn-nic0", log  # NamePolicy=keep
    # veth has no ring parameters: udev's attempt shows, and only where a ring is planned.
    tried_ring = any("Could not set ring buffer" in line for line in setup.log)
    assert tried_ring is (nic.rx_ring is not None), log


@pytest.mark.networkd
def test_udev_complaints_are_seen(scratch: Lab, udevadm: udev.Udevadm, tmp_path: Path) -> None:
    """The check above can fail: a misspelt key in one of our .link files is reported."""
    profile, guest, index = TUNED_NICS[0].values
    assert isinstance(profile, Path) and isinstance(guest, str) and isinstance(index, int)
    nic = guest_plan(profile, guest).nics[index]
    content = written(profile, guest)[link_path(nic)]["content"].replace(
        "CombinedChannels=", "CombinedChanels="
    )
    assert "CombinedChanels=" in content
    ns = scratch.namespace("ci-typo")
    scratch.veth(ns, "kn-nic0", mac=nic.mac, peer_ns=ns, peer_name="kn-peer0", peer_up=False)
    setup = udevadm.net_setup_link(
        ns, "kn-nic0", {Path(link_path(nic)).name: content.encode()}, tmp_path / "l"
    )
    assert any("CombinedChanels" in line for line in setup.syntax_warnings()), "\n".join(setup.log)


# --- write_files: the tuning script and its unit -----------------------------------------


def tuning_files(profile: Path, guest: str) -> tuple[str, str]:
    files = written(profile, guest)
    script, unit = files[CHANNELS_SCRIPT], files[CHANNELS_UNIT]
    assert (script["permissions"], unit["permissions"]) == ("0755", "0644")
    return script["content"], unit["content"]


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_tuning_files_only_where_tuned(profile: Path, guest: str) -> None:
    plan = guest_plan(profile, guest)
    files = written(profile, guest)
    has = {CHANNELS_SCRIPT in files, CHANNELS_UNIT in files}
    assert has == {any(tuned(n) for n in plan.nics)}


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), TUNED)
def test_tuning_script_shellcheck(profile: Path, guest: str) -> None:
    script, _ = tuning_files(profile, guest)
    assert script.startswith("#!/bin/sh\n")
    assert shellcheck(script, CHANNELS_SCRIPT) == ""


#: ethtool as the script sees it: `-l DEV` / `-g DEV` print the current settings kept in
#: $KVMNET_ETHTOOL_STATE/DEV.l and .g (none: nothing printed); every other call is logged
#: and exits $KVMNET_ETHTOOL_EXIT.
ETHTOOL_STUB = """#!/bin/sh
case "$1" in
-l) cat "$KVMNET_ETHTOOL_STATE/$2.l" 2>/dev/null; exit 0 ;;
-g) cat "$KVMNET_ETHTOOL_STATE/$2.g" 2>/dev/null; exit 0 ;;
esac
echo "$*" >>"$KVMNET_ETHTOOL_LOG"
exit "${KVMNET_ETHTOOL_EXIT:-0}"
"""


@pytest.mark.networkd
@pytest.mark.parametrize(("profile", "guest"), TUNED)
def test_tuning_script_runs(profile: Path, guest: str, scratch: Lab, tmp_path: Path) -> None:
    """Against NICs with the planned MACs (and names), the script asks ethtool for exactly the
    planned channels and rings; a failing ethtool makes it fail; without ethtool it steps aside."""
    plan = guest_plan(profile, guest)
    script_text, _ = tuning_files(profile, guest)
    script = tmp_path / "kvmnet-nic-tuning"
    script.write_text(script_text)
    ns = scratch.namespace(f"ci-tune-{guest}")
    for nic in plan.nics:  # untuned NICs too: the script must leave them alone
        scratch.veth(ns, nic.name, mac=nic.mac, peer_ns=ns, peer_name=f"kn-peer{nic.index}", peer_up=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", "sed", "head"):  # what the script runs besides ethtool
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    log = tmp_path / "ethtool.log"
    state = tmp_path / "state"
    state.mkdir()

    def run_script(exit_code: int | None) -> subprocess.CompletedProcess[str]:
        if exit_code is not None:
            (bin_dir / "ethtool").write_text(ETHTOOL_STUB)
            (bin_dir / "ethtool").chmod(0o755)
        else:
            (bin_dir / "ethtool").unlink(missing_ok=True)
        log.write_text("")
        env = [
            f"PATH={bin_dir}",
            f"KVMNET_ETHTOOL_LOG={log}",
            f"KVMNET_ETHTOOL_EXIT={exit_code or 0}",
            f"KVMNET_ETHTOOL_STATE={state}",
        ]
        return run("ip", "netns", "exec", ns, "env", "-i", *env, "/bin/sh", str(script), check=False)

    expected = []
    for nic in plan.nics:
        if nic.channels is not None:
            expected.append(f"-L {nic.name} combined {nic.channels}")
        if nic.rx_ring is not None:
            expected.append(f"-G {nic.name} rx {nic.rx_ring}")
    done = run_script(0)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert log.read_text().splitlines() == expected

    failed = run_script(1)
    # A failed channel count fails the unit; a ring virtio-net cannot resize (before Linux
    # 6.0) is said and not fatal: the guest's suite reports the ring it found.
    channels = any(nic.channels is not None for nic in plan.nics)
    assert failed.returncode == (1 if channels else 0), failed.stderr
    assert log.read_text().splitlines() == expected  # it goes on after a failure
    if any(nic.rx_ring is not None for nic in plan.nics):
        assert "RX ring left at" in failed.stderr, failed.stderr

    # Already as planned: nothing is set (ethtool exits 80 when asked for what is there,
    # which failed the unit on every boot after the first).
    for nic in plan.nics:
        current = "Current hardware settings:\n"
        (state / f"{nic.name}.l").write_text(f"{current}Combined:\t{nic.channels or 1}\n")
        (state / f"{nic.name}.g").write_text(f"{current}RX:\t\t{nic.rx_ring or 256}\n")
    same = run_script(80)
    assert (same.returncode, same.stderr) == (0, ""), same.stderr
    assert log.read_text() == ""
    for path in state.iterdir():
        path.unlink()

    absent = run_script(None)
    assert absent.returncode == 0, absent.stderr
    assert "ethtool is not installed" in absent.stderr
    assert log.read_text() == ""


VERIFY = """
set -eu
dir=$(dirname "$1")
mount -t tmpfs -o mode=0755 tmpfs "$dir"
cp "$2" "$1"
chmod 0755 "$1"
exec systemd-analyze verify "$3"
"""


def verify_unit(unit_text: str, script_text: str, tmp_path: Path) -> str:
    """`systemd-analyze verify` on the unit, its ExecStart= in place in a private mount namespace
    (verify checks that the command exists; the host's own directory is not touched)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a private mount namespace for the unit's ExecStart=")
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (package systemd)")
    unit = tmp_path / Path(CHANNELS_UNIT).name
    unit.write_text(unit_text)
    script = tmp_path / "script"
    script.write_text(script_text)
    result = subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private", "sh", "-c", VERIFY, "sh"),
            *(CHANNELS_SCRIPT, str(script), str(unit)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    # verify exits 0 on unknown keys and the like: any output at all is a finding.
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), TUNED)
def test_tuning_unit_verifies(profile: Path, guest: str, tmp_path: Path) -> None:
    script, unit = tuning_files(profile, guest)
    assert f"ExecStart={CHANNELS_SCRIPT}\n" in unit
    assert verify_unit(unit, script, tmp_path) == "exit 0\n"


@pytest.mark.consumer
def test_unit_verify_can_fail(tmp_path: Path) -> None:
    """The check above can fail: an unknown key is printed (while verify still exits 0)."""
    profile, guest = TUNED[0].values
    assert isinstance(profile, Path) and isinstance(guest, str)
    script, unit = tuning_files(profile, guest)
    report = verify_unit(unit.replace("RemainAfterExit=", "RemainAfterExt="), script, tmp_path)
    assert "Unknown key 'RemainAfterExt'" in report, report


# --- write_files: IPv6 off, and what runs when -------------------------------------------


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_ipv6_sysctl_drop_in(profile: Path, guest: str) -> None:
    plan = guest_plan(profile, guest)
    data = user_data(profile, guest)
    files = written(profile, guest)
    if plan.ipv6 == "disabled":
        entry = files[SYSCTL]
        assert entry["permissions"] == "0644"
        lines = [re.sub(r"\s*=\s*", " = ", line) for line in effective_lines(entry["content"])]
        assert lines == list(DISABLE_IPV6)
        assert ["sysctl", "--system"] in data["runcmd"]
    else:
        assert SYSCTL not in files
        assert "disable_ipv6" not in seed(profile, guest)["user-data"].decode()


@pytest.mark.networkd
@pytest.mark.parametrize(("profile", "guest"), IPV6_OFF)
def test_ipv6_sysctl_applies(profile: Path, guest: str, scratch: Lab, tmp_path: Path) -> None:
    """sysctl(8) takes the drop-in as written (in a scratch network namespace: the keys are per
    namespace) and IPv6 is then off there."""
    if not Path("/proc/sys/net/ipv6").is_dir():
        kernel_gap("this kernel has no IPv6")
    drop_in = tmp_path / Path(SYSCTL).name
    drop_in.write_text(written(profile, guest)[SYSCTL]["content"])
    host_before = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text()
    ns = scratch.namespace(f"ci-sysctl-{guest}")
    applied = run("ip", "netns", "exec", ns, "sysctl", "-p", str(drop_in), check=False)
    assert (applied.returncode, applied.stderr) == (0, ""), applied.stderr
    for scope in ("all", "default"):
        value = run("ip", "netns", "exec", ns, "cat", f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6")
        assert value.stdout.strip() == "1", scope
    assert Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text() == host_before


def commands(data: Mapping[str, Any], key: str) -> list[str]:
    return [c if isinstance(c, str) else shlex.join(c) for c in data.get(key, [])]


@pytest.mark.consumer
def test_cloud_init_runs_bootcmd_before_write_files() -> None:
    """The fact the next test rests on, read from Debian's cloud.cfg: bootcmd runs before
    write_files (same stage), runcmd after it (a later stage)."""
    config = yaml.safe_load(Path("/etc/cloud/cloud.cfg").read_text())
    order = [
        str(m).replace("-", "_")
        for stage in ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")
        for m in config[stage]
    ]
    assert order.index("bootcmd") < order.index("write_files") < order.index("runcmd")


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_bootcmd_needs_no_written_file(profile: Path, guest: str) -> None:
    """Whatever uses a file from write_files runs from runcmd, never from bootcmd."""
    data = user_data(profile, guest)
    files = written(profile, guest)
    names = set(files) | {Path(p).name for p in files}
    for command in commands(data, "bootcmd"):
        assert not any(name in command for name in names), command
    runcmd = commands(data, "runcmd")
    if SYSCTL in files:
        assert "sysctl --system" in runcmd
    if CHANNELS_UNIT in files:
        enable = f"systemctl enable --now {Path(CHANNELS_UNIT).name}"
        assert runcmd.index("systemctl daemon-reload") < runcmd.index(enable)
        assert "udevadm trigger --action=add --subsystem-match=net" in runcmd


# --- secrets and meta-data ---------------------------------------------------------------


@pytest.mark.consumer
@pytest.mark.parametrize("profile", WITH_GUESTS, ids=[p.stem for p in WITH_GUESTS])
def test_user_data_is_private_in_the_output_tree(profile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = os.umask(0)  # modes must be set, not left to the caller's umask
    try:
        build(profile, out, planned=planned(profile))
    finally:
        os.umask(old)
    guests = planned(profile).plan.guests
    assert guests
    for guest in guests:
        user = out / layout.guest_seed(guest.name).user_data
        assert user.stat().st_mode & 0o7777 == MODE_SECRET
        assert user.read_bytes() == seed(profile, guest.name)["user-data"]


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_user_data_holds_hashes_only(profile: Path, guest: str) -> None:
    plan = guest_plan(profile, guest)
    data = user_data(profile, guest)
    assert "password" not in data and "chpasswd" not in data
    users = data.get("users", [])
    assert [u["name"] for u in users] == [u.name for u in plan.users]
    for entry, user in zip(users, plan.users, strict=True):
        assert not {"passwd", "plain_text_passwd"} & set(entry), entry["name"]
        if user.passwd:
            assert CRYPT.fullmatch(entry["hashed_passwd"]) and entry["hashed_passwd"] == user.passwd
            assert entry["lock_passwd"] is False
        else:
            assert "hashed_passwd" not in entry and entry["lock_passwd"] is True


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_meta_data(profile: Path, guest: str) -> None:
    plan = guest_plan(profile, guest)
    data = yaml.safe_load(seed(profile, guest)["meta-data"])
    assert set(data) == {"instance-id", "local-hostname"}
    assert data["local-hostname"] == plan.hostname
    assert isinstance(data["instance-id"], str) and re.fullmatch(r"[A-Za-z0-9._-]+", data["instance-id"])


def rendered(guest: GuestPlan) -> tuple[str, str, str]:
    """(user-data, network-config, instance-id) for a plan."""
    files = {Path(a.path).name: a.content.decode() for a in files_for(guest)}
    instance = yaml.safe_load(files["meta-data"])["instance-id"]
    assert isinstance(instance, str)
    return files["user-data"], files["network-config"], instance


@pytest.mark.consumer
@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_instance_id_is_the_guests_identity_not_its_seeds(profile: Path, guest: str) -> None:
    """The instance-id names the guest (host and name), so a profile change does not make
    cloud-init take it for a new machine: it once was a hash of the seed, and any change
    regenerated the guest's SSH host keys and re-ran users and runcmd on its next boot."""
    plan = guest_plan(profile, guest)
    user, network, instance = rendered(plan)
    assert rendered(plan) == (user, network, instance)
    assert instance == f"iid-kvmnet-{plan.uuid}"

    extra = frozen_dict({**plan.cloud_config, "final_message": "kvmnet test"})
    changes = {
        "domain": replace(plan, memory_kib=plan.memory_kib * 2, disk_size=plan.disk_size + 2**30),
        "user-data": replace(plan, cloud_config=extra),
        "hostname": replace(plan, hostname=plan.hostname + "x"),
    }
    if plan.nics:
        first = plan.nics[0]
        changes["network-config"] = replace(plan, nics=(replace(first, mtu=first.mtu - 1), *plan.nics[1:]))
    for what, changed in changes.items():
        assert rendered(changed)[2] == instance, f"{what} changed the instance-id"
    # another guest, or the same name on another host, is another instance
    assert rendered(replace(plan, name=plan.name + "x"))[2] != instance
    assert rendered(replace(plan, host=plan.host + "x"))[2] != instance


# --- extra cloud-config: YAML types kept, plain passwords refused ----------------------------


@pytest.mark.consumer
def test_extra_cloud_config_keeps_yaml_types(cloud_init: str, tmp_path: Path) -> None:
    path = small_profile(tmp_path, "package_update: true\nssh_pwauth: false\n")
    [content] = [
        a.content for a in artifacts_for(plan_profile(path)) if a.path == layout.guest_seed("vm1").user_data
    ]
    target = tmp_path / "user-data"
    target.write_bytes(content)
    result = schema_check(cloud_init, target)
    assert result.returncode == 0, result.stdout + result.stderr
    data = yaml.safe_load(content)
    assert data["package_update"] is True and data["ssh_pwauth"] is False


@pytest.mark.consumer
def test_plain_password_in_extra_cloud_config_is_refused(tmp_path: Path) -> None:
    path = small_profile(tmp_path, "password: hunter2\n")
    with pytest.raises(PlanError):
        plan_profile(path)
