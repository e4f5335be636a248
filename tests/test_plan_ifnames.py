"""The one name each device has (issue 13): networkd's files, the expected state, the lab and
the Vagrantfile agree, and the name the plan makes up for a NIC matched by a glob is one the
glob really selects.

Selection is judged here as systemd 252 does it (net_condition_test_strv: fnmatch(3) without
flags, a leading `!` inverting), independently of generator/plan/ifnames.py.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
from pathlib import Path

import pytest

from generator import layout
from generator.lab.layout import make_layout
from generator.lab.names import Names
from generator.model.types import interface_name_problem
from generator.plan.ifnames import made_up
from generator.plan.types import Kind, Plan
from generator.renderers import render_all
from tests.test_plan import plan_of


def systemd_selects(pattern: str, name: str) -> bool:
    if pattern.startswith("!"):
        return not fnmatch.fnmatchcase(name, pattern[1:])
    return fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("en*", "en"),
        ("eth?", "eth0"),
        ("en[o]1", "eno1"),
        # The case: `kvmnet lab` refused it and the Vagrantfile named the NIC eno1,
        # which [!o] excludes.
        ("en[!o]1", "en01"),
        ("enp[0-9]s0", "enp0s0"),
        ("enp[3-5]s*", "enp3s"),
        ("[]a]b", "ab"),  # a ']' first in a set is a member
        ("*", "x"),  # "" and "0" cannot be names
        ("?", "a"),  # nor can digits alone
        ("[0-9]*", "0x"),
        ("!en*", "nic0"),  # inverted: any name the rest does not select
        ("*.100", "0.100"),
        ("[!a-zA-Z0-9_.-]", None),  # only characters no interface name of kvmnet's has
        ("x" * 16, None),  # longer than IFNAMSIZ - 1
        ("-*", None),  # a name cannot start with '-'
        ("[", None),  # a '[' without ']' is itself, which no name has
        ("!nic*", None),
    ],
)
def test_a_made_up_name_is_one_the_glob_selects(pattern: str, name: str | None) -> None:
    assert made_up(pattern) == name
    if name is not None:
        assert systemd_selects(pattern, name)
        assert interface_name_problem(name) is None


def test_a_made_up_name_avoids_what_is_not_usable() -> None:
    assert made_up("eth?", lambda n: n not in {"eth0", "eth1"}) == "eth2"
    assert made_up("eth?", lambda n: not n[-1].isdigit()) == "etha"
    assert made_up("eth*", lambda n: n != "eth") == "eth0"
    assert made_up("eth0", lambda n: n != "eth0") is None


HOST = """
hosts:
  hv1:
    network:
      ethernets:
{ethernets}
      bridges:
        br0: {{interfaces: [{port}]}}
"""


def concrete(plan: Plan, ident: str) -> str | None:
    return plan.hosts[0].get(ident).concrete_name


def test_nics_are_named_apart_from_each_other_guest_taps_and_libvirt() -> None:
    text = HOST.format(
        ethernets="""\
        a: {match: {name: "eno?"}}
        b: {match: {name: "eno0*"}}
        c: {match: {name: "kt?"}}
        d: {match: {name: "br?"}}
        e: {match: {macaddress: "52:54:00:00:00:01"}, set-name: lan0}
        f: {match: {name: "lan*"}}""",
        port="a",
    )
    plan = plan_of(text + "guests:\n  g1: {host: hv1, interfaces: [{bridge: br0, target: kt0}]}\n")
    # "eno0" is b's pattern's, and b's "eno0" a's: each takes a name only its own selects.
    assert (concrete(plan, "a"), concrete(plan, "b")) == ("eno1", "eno00")
    assert concrete(plan, "c") == "kt1"  # kt0 is the guest's tap
    assert concrete(plan, "d") == "br1"  # br0 is the bridge
    assert concrete(plan, "e") == "lan0"  # its set-name
    assert concrete(plan, "f") == "lan"
    assert concrete(plan, "br0") == "br0"
    assert plan.warnings == ()


def test_a_nic_no_name_will_do_for_is_warned_about() -> None:
    text = HOST.format(
        ethernets="""\
        a: {match: {name: "vnet*"}}
        a-very-long-nic-id: {match: {macaddress: "52:54:00:00:00:01"}}""",
        port="a",
    )
    plan = plan_of(text)
    assert (concrete(plan, "a"), concrete(plan, "a-very-long-nic-id")) == (None, None)
    assert [(w.path, w.message) for w in plan.warnings] == [
        (
            ("hosts", "hv1", "network", "ethernets", "a", "match", "name"),
            "`kvmnet lab` and the Vagrantfile cannot name this NIC: no name that 'vnet*' selects is free "
            "on host hv1 (a valid interface name that no other device has or selects by its [Match], no "
            "guest's tap has, and that does not start like libvirt's own taps: vnet, vif, macvtap, macvlan)",
        ),
        (
            ("hosts", "hv1", "network", "ethernets", "a-very-long-nic-id"),
            "`kvmnet lab` and the Vagrantfile name a NIC matched by MAC alone by its id, which cannot be "
            "its name here (interface name 'a-very-long-nic-id' is 18 bytes; Linux allows at most 15 "
            "(IFNAMSIZ - 1)); give it set-name",
        ),
    ]


# --- every consumer names every NIC the same -------------------------------------------

NAMED = HOST.format(
    ethernets="""\
        uplink: {match: {name: "en[!o]1"}, addresses: [192.0.2.1/24]}
        jumbo: {match: {name: "eth*"}, mtu: 9000}
        bymac: {match: {macaddress: "52:54:00:12:34:01"}}
        renamed: {match: {macaddress: "52:54:00:12:34:02"}, set-name: lan0}
        renamedglob: {match: {name: "wl*"}, set-name: wan0}
        both: {match: {name: "en?2", macaddress: "52:54:00:12:34:03"}}
        eno1: {}""",
    port="jumbo",
)


def _ini(text: bytes) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text.decode())
    return parser


def _selects(section: configparser.SectionProxy, name_key: str, name: str | None, mac: str | None) -> bool:
    """A [Match] section selecting a device: every condition given holds (systemd.network(5))."""
    pattern = section.get(name_key)
    wanted = section.get("PermanentMACAddress")
    if pattern is not None and (name is None or not systemd_selects(pattern, name)):
        return False
    return wanted is None or wanted == mac


def test_networkd_expected_state_lab_and_vagrant_name_every_nic_the_same(tmp_path: Path) -> None:
    plan = plan_of(NAMED)
    # only that 'wl*' does not say which udev property to match its rename by (plan/naming.py)
    assert [w.path[-1] for w in plan.warnings] == ["renamedglob"]
    files = {a.path: a.content for a in render_all(plan)}
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    host = plan.hosts[0]
    directory = layout.rootfs_file(host.name, layout.NETWORKD_DIR) + "/"
    networks = sorted(p for p in files if p.startswith(directory) and p.endswith(".network"))
    expected = {e["id"]: e for e in json.loads(files[layout.expected_state("host", host.name)])["links"]}
    lab = {n.name: n for n in make_layout(Names("names"), plan, tmp_path).host(host.name).nics}
    vagrantfile = files["vagrant/Vagrantfile"].decode()
    vagrant_nics = {
        ident: (mac, network)
        for ident, mac, network in re.findall(
            rf"# \S+ \(hosts\.{host.name}\.network: ([\w.-]+)\)\n\s+node\.vm\.network :private_network,\n"
            r"\s+mac: '([0-9a-f:]+)',\n\s+libvirt__network_name: '([^']+)'",
            vagrantfile,
        )
    }
    vagrant_names = dict(re.findall(r"Name=%s\\n' (\S+) (\S+) >", vagrantfile))
    nics = [i for i in host.interfaces if i.kind is Kind.ETHERNET]
    assert {n.concrete_name for n in nics} == {"en01", "eth", "bymac", "lan0", "wan0", "en02", "eno1"}
    assert len(lab) == len(vagrant_nics) == len(nics)
    for nic in nics:
        name = nic.concrete_name
        assert name is not None
        # The lab: a veth of that name, with the MAC the profile matches, on the wire of that name.
        assert lab[name].mac == nic.match.mac and lab[name].wire == name, nic.id
        # The Vagrantfile: the VM's NIC on the same wire, named so by Vagrant's .link or by
        # kvmnet's own (set-name on a NIC matched by MAC alone: its .link selects it by MAC).
        mac, network = vagrant_nics[nic.id]
        assert network == f"kvmnet-{name}", nic.id
        if mac in vagrant_names:
            vm_name = vagrant_names[mac]
        else:
            links = [
                _ini(files[p])
                for p in sorted(files)
                if p.startswith(directory) and p.endswith(".link")
                and _selects(_ini(files[p])["Match"], "OriginalName", None, mac)
            ]  # fmt: skip
            vm_name = links[0]["Link"].get("Name") if links else None
        assert vm_name == name, nic.id
        # networkd: the first .network (in file name order) selecting the device, in the lab
        # and in the VM, is its own, and it selects it by that name.
        for device_mac in {nic.match.mac, mac}:
            first = next(p for p in networks if _selects(_ini(files[p])["Match"], "Name", name, device_mac))
            assert first == f"{directory}10-kvmnet-{nic.id}.network", (nic.id, device_mac)
        # The expected state: its name, or a [Match] that selects it and no other NIC.
        entry = expected[nic.id]
        if entry["name"] is not None:
            assert entry["name"] == name, nic.id
        else:
            match = entry["match"]
            chosen = [
                other.id
                for other in nics
                if systemd_selects(match.get("name", "*"), other.concrete_name or "")
                and match.get("mac", other.match.mac) == other.match.mac
            ]
            assert chosen == [nic.id], nic.id
