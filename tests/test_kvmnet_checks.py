"""The check library the generated suites import (generator/checks/kvmnet_checks.py), unit by unit.

Its readers take what `ip -j`, `tc`, `bridge -j` and `ethtool` print; here they get text
written by hand in those tools' formats (iproute2 6.1, ethtool 6.1 as on Debian 12), through a
stand-in for testinfra's `host`. Whether the checks agree with a real machine is
tests/test_verify_live.py and tests/test_lab.py.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator.checks import kvmnet_checks as checks
from generator.plan.types import ETHTOOL_FEATURES as OFFLOAD_FEATURES
from generator.renderers.checks import library
from generator.templating import GENERATED

SOURCE = Path(checks.__file__)


@dataclass
class _Result:
    rc: int
    stdout: str
    stderr: str = ""


@dataclass
class _File:
    exists: bool


class _Host:
    """testinfra's `host`, answering each command line (without the PATH prefix) from a table."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.ran: list[str] = []

    def run(self, command: str, *args: str) -> _Result:
        line = (command % args if args else command).removeprefix(checks.SBIN)
        self.ran.append(line)
        if line in self.answers:
            return _Result(0, self.answers[line])
        return _Result(1, "", f"{line}: not answered")

    def file(self, path: str) -> _File:
        return _File(f"cat {path}" in self.answers)


def _machine(**answers: object) -> checks.Machine:
    """A machine whose `ip -j`/`bridge -j` listings are the given data, other commands as text."""
    commands = {
        "ip -j -d link show": "links",
        "ip -j address show": "addresses",
        "bridge -j vlan show": "bridge_vlans",
    }
    table = {line: json.dumps(answers.pop(key)) for line, key in commands.items() if key in answers}
    table.update({line: str(text) for line, text in answers.items()})
    return checks.Machine(_Host(table))


# --- the library ships on its own ------------------------------------------------------


def test_imports_only_the_standard_library_and_pytest() -> None:
    """Target machines have Python, pytest and testinfra, not kvmnet or its dependencies."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported, "found no imports: the check looked at nothing"
    tops = {name.split(".")[0] for name in imported}
    assert tops - set(sys.stdlib_module_names) == {"pytest"}


def test_build_copies_the_module_verbatim_under_the_header() -> None:
    assert library() == f"# {GENERATED}\n\n" + SOURCE.read_text(encoding="utf-8")


# --- rates, VLAN spans, addresses --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bits"),
    [("2Gbit", 2_000_000_000), ("1.5Mbit", 1_500_000), ("10Kbit", 10_000), ("800bit", 800)],
)
def test_parse_rate_reads_tcs_si_units(text: str, bits: int) -> None:
    assert checks.parse_rate(text) == bits


@pytest.mark.parametrize("text", ["2GiB", "2Gbps", "rate", ""])
def test_parse_rate_refuses_what_tc_does_not_print(text: str) -> None:
    with pytest.raises(ValueError, match="not a tc rate"):
        checks.parse_rate(text)


@pytest.mark.parametrize(
    ("bits", "text"),
    [(200_000_000, "200Mbit"), (1_500_000, "1500Kbit"), (10**12, "1Tbit"), (999, "999bit")],
)
def test_rate_text_uses_the_largest_unit_that_divides(bits: int, text: str) -> None:
    assert checks.rate_text(bits) == text


@pytest.mark.parametrize(
    ("text", "bits", "matches"),
    [
        ("2Gbit", 2_000_000_000, True),
        ("1500Mbit", 1_500_000_000, True),
        # 1.5 Gbit is not a whole number of Gbit: tc says 1500Mbit, never 1.5Gbit
        ("1.5Gbit", 1_500_000_000, False),
        # above 1000 units tc truncates: 1234.56789 Mbit prints as 1234Mbit
        ("1234Mbit", 1_234_567_890, True),
        ("999Kbit", 999_500, False),
        ("2Gbit", 1_000_000_000, False),
        ("none", 1, False),
    ],
)
def test_tc_rate_matches(text: str, bits: int, matches: bool) -> None:
    assert checks.tc_rate_matches(text, bits) is matches


def test_spans_and_expand_are_inverse() -> None:
    assert checks.spans({100, 200, 201, 202, 300}) == "100,200-202,300"
    assert checks.spans(set()) == "none"
    assert checks.expand(["100", "200-202", "300"]) == {100, 200, 201, 202, 300}
    assert checks.expand([]) == set()


def test_addresses_are_spelled_one_way() -> None:
    assert checks.address("2001:0db8:0:0::0001/64") == "2001:db8::1/64"
    assert checks.address("10.0.0.5/24") == "10.0.0.5/24"
    assert checks.ip("2001:db8:0::1") == "2001:db8::1"
    assert checks.ip("none") == "none"


# --- reading ip, tc, bridge, ethtool ---------------------------------------------------------

LINKS = [
    {"ifname": "lo", "address": "00:00:00:00:00:00", "mtu": 65536},
    {"ifname": "eno1", "address": "52:54:00:aa:bb:01", "mtu": 9000},
    # a bond port: the bond's MAC is its address, its own is permaddr
    {"ifname": "enp2s0", "address": "52:54:00:aa:bb:01", "permaddr": "52:54:00:aa:bb:02", "mtu": 9000},
    {
        "ifname": "br0",
        "address": "52:54:00:aa:bb:03",
        "mtu": 1500,
        "linkinfo": {"info_kind": "bridge", "info_data": {"stp_state": 0, "vlan_filtering": 0}},
    },
]


def _link(name: str | None, kind: str = "ether", mtu: int = 1500) -> checks.Link:
    return {"id": name or "uplink", "name": name, "kind": kind, "mtu": mtu}


def _matching(match: checks.LinkMatch) -> checks.Link:
    link = _link(None)
    link["match"] = match
    return link


def test_find_a_device_by_name_or_as_networkd_matches_it() -> None:
    machine = _machine(links=LINKS)
    assert machine.find(_link("br0")) == LINKS[3]
    assert machine.find(_link("eth9")) is None
    # en[!o]* leaves eno1 out: one device matches
    assert machine.find(_matching({"name": "en[!o]*"})) == LINKS[2]
    # two devices match en*: networkd would configure both, the check says neither is *the* one
    assert machine.find(_matching({"name": "en*"})) is None
    # a MAC matches the permanent address too (networkd's PermanentMACAddress= sees it)
    assert machine.find(_matching({"mac": "52:54:00:aa:bb:02"})) == LINKS[2]
    assert machine.with_mac("52:54:00:aa:bb:03") == LINKS[3]
    assert machine.with_mac("52:54:00:ff:ff:ff") is None


def test_addresses_global_ones_normalised_and_ipv6_ones() -> None:
    machine = _machine(
        addresses=[
            {
                "ifname": "eno1",
                "addr_info": [
                    {"family": "inet", "local": "10.0.0.5", "prefixlen": 24, "scope": "global"},
                    {"family": "inet6", "local": "2001:db8::5", "prefixlen": 64, "scope": "global"},
                    {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
                ],
            },
            {"ifname": "lo"},
        ]
    )
    assert machine.global_addresses("eno1") == {"10.0.0.5/24", "2001:db8::5/64"}
    assert machine.ipv6_addresses("eno1") == {"2001:db8::5/64", "fe80::1/64"}
    assert machine.global_addresses("lo") == set()
    assert machine.global_addresses("eth9") == set()


TC_CLASSES = """\
class htb 1:1 root leaf 10: prio 0 rate 2Gbit ceil 2Gbit burst 1375b cburst 1375b
class htb 1:2 root prio 0 rate 100Mbit ceil 200Mbit burst 1600b cburst 1600b
"""

TC_INGRESS = """\
filter parent ffff: protocol all pref 49152 matchall chain 0
filter parent ffff: protocol all pref 49152 matchall chain 0 handle 0x1
  not_in_hw
\taction order 1:  police 0x1 rate 2Gbit burst 1Mb mtu 2Kb action drop overhead 0b
\tref 1 bind 1

"""


def test_htb_class_reads_rate_and_ceil_from_tcs_text() -> None:
    machine = _machine(**{"tc class show dev eno1": TC_CLASSES})
    assert machine.htb_class("eno1", "1:2") == {"rate": "100Mbit", "ceil": "200Mbit"}
    assert machine.htb_class("eno1", "1:1") == {"rate": "2Gbit", "ceil": "2Gbit"}
    assert machine.htb_class("eno1", "1:3") == {}


def test_police_rates_come_from_tcs_text() -> None:
    machine = _machine(
        **{"tc filter show dev eno1 ingress": TC_INGRESS, "tc filter show dev br0 ingress": ""}
    )
    assert machine.police_rates("eno1") == [2_000_000_000]
    assert machine.police_rates("br0") == []


def test_policers_read_rate_burst_and_mtu_from_tcs_text() -> None:
    machine = _machine(**{"tc filter show dev eno1 ingress": TC_INGRESS})
    # "2Kb" is what tc prints for the 2040 bytes the kernel sets when no mtu is given
    assert machine.policers("eno1") == [checks.Policer(2_000_000_000, 1024 * 1024, 2048)]
    fixed = TC_INGRESS.replace("mtu 2Kb", "mtu 64Kb")
    assert checks.policers_in(fixed) == [checks.Policer(2_000_000_000, 1024 * 1024, 65536)]
    assert checks.policers_in(TC_INGRESS.replace(" mtu 2Kb", "")) == [
        checks.Policer(2_000_000_000, 1024 * 1024, None)
    ]


@pytest.mark.parametrize(
    ("text", "size"), [("1500b", 1500), ("64Kb", 65536), ("1Mb", 1048576), ("1.5Mb", 1572864)]
)
def test_tc_sizes_are_binary(text: str, size: int) -> None:
    assert checks.parse_size(text) == size


def test_size_text_names_bytes_and_the_binary_unit() -> None:
    assert checks.size_text(65536) == "65536 bytes (64 KiB)"
    assert checks.size_text(1048576) == "1048576 bytes (1 MiB)"
    assert checks.size_text(2040) == "2040 bytes"


def test_a_failing_command_fails_the_check_with_its_exit_and_stderr() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"`tc class show dev eno1` failed \(exit 1\)"):
        _machine().htb_class("eno1", "1:1")


def test_sysctl_normalises_whitespace_and_tells_a_missing_key() -> None:
    machine = _machine(**{"cat /proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t6291456\n"})
    assert machine.sysctl("net.ipv4.tcp_rmem") == "4096 131072 6291456"
    assert machine.sysctl("net.ipv4.tcp_wmem") is None
    # a key with a slash is a path already (a device name may hold a dot: eno1.100)
    machine = _machine(**{"cat /proc/sys/net/ipv6/conf/eno1.100/disable_ipv6": "1\n"})
    assert machine.sysctl("net/ipv6/conf/eno1.100/disable_ipv6") == "1"


# --- checks: what they report --------------------------------------------------------------


def test_link_mtu_names_the_device_and_both_values() -> None:
    machine = _machine(links=LINKS)
    checks.link_mtu(machine, _link("eno1", mtu=9000))
    with pytest.raises(pytest.fail.Exception, match=r"^br0: MTU expected 9000, found 1500$"):
        checks.link_mtu(machine, _link("br0", "bridge", mtu=9000))


def test_a_tap_of_a_stopped_guest_is_skipped_not_failed() -> None:
    machine = _machine(links=LINKS)
    tap = _link("vnet-web1-0", "tap")
    tap["guest"] = "web1"
    with pytest.raises(pytest.skip.Exception, match="the tap of guest web1"):
        checks.link_exists(machine, tap)


def test_vlan_filtering_is_skipped_where_the_kernel_has_none() -> None:
    """iproute2 prints vlan_protocol only for a bridge that can filter VLANs (LINKS' br0 cannot)."""
    machine = _machine(links=LINKS)
    link = _link("br0", "bridge")
    link["bridge"] = {"vlan_filtering": True}
    with pytest.raises(pytest.skip.Exception, match="no bridge VLAN filtering"):
        checks.vlan_filtering(machine, link)


FILTERING = [
    {
        "ifname": "br0",
        "mtu": 1500,
        "linkinfo": {
            "info_kind": "bridge",
            "info_data": {"vlan_filtering": 1, "vlan_protocol": "802.1Q", "vlan_default_pvid": 1},
        },
    },
    {"ifname": "vm0", "mtu": 1500, "master": "br0"},
]


def test_port_vlans_leave_out_the_bridges_own_default_pvid() -> None:
    # The kernel put vm0 in VLAN 1 (br0's default PVID) by itself; kvmnet asked for 100-102 and 200.
    vlans = [
        {"vlan": 1, "flags": ["Egress Untagged"]},
        {"vlan": 100, "vlanEnd": 102},
        {"vlan": 200, "flags": ["PVID", "Egress Untagged"]},
    ]
    link = _link("vm0", "tap")
    link["port_vlans"] = {"vlans": ["100-102", "200"], "pvid": 200, "untagged": ["200"]}
    checks.port_vlans(_machine(links=FILTERING, bridge_vlans=[{"ifname": "vm0", "vlans": vlans}]), link)
    short = [{"vlan": 100, "vlanEnd": 101}, {"vlan": 200, "flags": ["PVID", "Egress Untagged"]}]
    machine = _machine(links=FILTERING, bridge_vlans=[{"ifname": "vm0", "vlans": short}])
    with pytest.raises(pytest.fail.Exception, match=r"^vm0: VLANs expected 100-102,200, found 100-101,200$"):
        checks.port_vlans(machine, link)


ETHTOOL_RINGS = """\
Ring parameters for eth0:
Pre-set maximums:
RX:\t\t1024
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t1024
Current hardware settings:
RX:\t\t512
RX Mini:\tn/a
RX Jumbo:\tn/a
TX:\t\t256
"""


def test_rx_ring_reads_the_current_setting_not_the_maximum() -> None:
    machine = _machine(
        links=[{"ifname": "eth0", "address": "52:54:00:12:34:56", "mtu": 1500}],
        **{
            "readlink /sys/class/net/eth0/device/driver": "../../../../bus/virtio/drivers/virtio_net\n",
            "command -v ethtool": "/usr/sbin/ethtool\n",
            "ethtool -g eth0": ETHTOOL_RINGS,
        },
    )
    nic: checks.Nic = {
        "name": "eth0",
        "mac": "52:54:00:12:34:56",
        "model": "virtio",
        "mtu": 1500,
        "dhcp4": True,
        "ipv6": "enabled",
        "rx_ring": 512,
    }
    checks.nic_rx_ring(machine, nic)
    nic["rx_ring"] = 1024
    with pytest.raises(pytest.fail.Exception, match=r"^eth0: RX ring size expected 1024, found 512$"):
        checks.nic_rx_ring(machine, nic)


# `ethtool -k` (ethtool 6.1) of a NIC as udev left it with TCPSegmentationOffload=no and
# TransmitChecksumOffload=yes: the head of a veth's listing on this machine (a kernel 6.1
# listing has the same lines), with large-receive-offload fixed off as the driver has it.
ETHTOOL_FEATURES = """\
Features for eno1:
rx-checksumming: on
tx-checksumming: on
\ttx-checksum-ipv4: off [fixed]
\ttx-checksum-ip-generic: on
\ttx-checksum-ipv6: off [fixed]
\ttx-checksum-fcoe-crc: off [fixed]
\ttx-checksum-sctp: on
scatter-gather: on
\ttx-scatter-gather: on
\ttx-scatter-gather-fraglist: on
tcp-segmentation-offload: on
\ttx-tcp-segmentation: off
\ttx-tcp-ecn-segmentation: on
\ttx-tcp-mangleid-segmentation: on
\ttx-tcp6-segmentation: on
generic-segmentation-offload: on
generic-receive-offload: off [requested on]
large-receive-offload: off [fixed]
rx-vlan-offload: on
"""


def _offload(setting: str, on: bool) -> checks.Offload:
    return {"setting": setting, "features": list(OFFLOAD_FEATURES[setting]), "on": on}


def test_features_are_read_with_their_fixed_flag() -> None:
    found = checks.features_in(ETHTOOL_FEATURES)
    assert found["rx-checksumming"] == checks.Feature(on=True, fixed=False)
    assert found["tx-checksum-ipv4"] == checks.Feature(on=False, fixed=True)
    assert found["tx-tcp-segmentation"] == checks.Feature(on=False, fixed=False)
    assert found["generic-receive-offload"] == checks.Feature(on=False, fixed=False)
    assert found["large-receive-offload"] == checks.Feature(on=False, fixed=True)
    assert "Features for eno1" not in found and len(found) == 19


def test_offloads_as_the_link_sets_them() -> None:
    found = checks.features_in(ETHTOOL_FEATURES)
    # the tx-checksum-* the driver fixes off do not count: ip-generic and sctp are on
    assert checks.offload_problem(_offload("TransmitChecksumOffload", True), found) is None
    assert checks.offload_problem(_offload("TCPSegmentationOffload", False), found) is None
    assert checks.offload_problem(_offload("LargeReceiveOffload", False), found) is None
    assert checks.offload_problem(_offload("TCP6SegmentationOffload", False), found) == (
        "TCP6SegmentationOffload=no: expected off, found tx-tcp6-segmentation on"
    )
    assert checks.offload_problem(_offload("TransmitChecksumOffload", False), found) == (
        "TransmitChecksumOffload=no: expected off, found tx-checksum-ip-generic on, tx-checksum-sctp on"
    )
    # asked for, refused by the kernel: `off [requested on]`
    assert checks.offload_problem(_offload("GenericReceiveOffload", True), found) == (
        "GenericReceiveOffload=yes: expected on, found generic-receive-offload off"
    )


def test_an_offload_the_driver_fixes_fails_saying_so() -> None:
    found = checks.features_in(ETHTOOL_FEATURES)
    assert checks.offload_problem(_offload("LargeReceiveOffload", True), found) == (
        "LargeReceiveOffload=yes cannot take effect: the driver fixes large-receive-offload off [fixed]"
    )
    assert checks.offload_problem(_offload("LargeReceiveOffload", True), {}) == (
        "LargeReceiveOffload=yes: `ethtool -k` shows none of large-receive-offload"
    )


def test_link_offloads_reads_ethtool_and_names_every_problem() -> None:
    links = [{"ifname": "eno1", "address": "52:54:00:12:34:56", "mtu": 1500}]
    answers = {"command -v ethtool": "/usr/sbin/ethtool\n", "ethtool -k eno1": ETHTOOL_FEATURES}
    link = _link("eno1")
    link["offloads"] = [_offload("TCPSegmentationOffload", False), _offload("ReceiveChecksumOffload", True)]
    checks.link_offloads(_machine(links=links, **answers), link)
    link["offloads"] = [_offload("TCP6SegmentationOffload", False), _offload("LargeReceiveOffload", True)]
    with pytest.raises(pytest.fail.Exception, match=r"^eno1: TCP6SegmentationOffload=no: .*; LargeReceive"):
        checks.link_offloads(_machine(links=links, **answers), link)
    with pytest.raises(pytest.skip.Exception, match="ethtool is not installed"):
        checks.link_offloads(_machine(links=links), link)


# `bridge -j fdb show dev vx100` (iproute2 6.1): two static entries as networkd's
# [BridgeFDB] adds them, and one the bridge learned (as in a namespace here).
FDB = (
    '[{"mac":"00:00:00:00:00:00","dst":"192.0.2.12","flags":["self"],"state":"permanent"},'
    '{"mac":"00:00:00:00:00:00","dst":"192.0.2.13","flags":["self"],"state":"permanent"},'
    '{"mac":"5a:1e:07:3b:9c:01","master":"br-tenant","state":""}]\n'
)


def test_fdb_entries_with_a_destination() -> None:
    assert checks.fdb_in(FDB) == {("00:00:00:00:00:00", "192.0.2.12"), ("00:00:00:00:00:00", "192.0.2.13")}
    assert checks.fdb_in("") == set()


def test_vxlan_fdb_wants_every_planned_peer() -> None:
    links = [{"ifname": "vx100", "mtu": 1450, "linkinfo": {"info_kind": "vxlan"}}]
    link = _link("vx100", "vxlan", mtu=1450)
    link["fdb"] = [{"mac": "00:00:00:00:00:00", "dst": "192.0.2.12"}]
    checks.vxlan_fdb(_machine(links=links, **{"bridge -j fdb show dev vx100": FDB}), link)
    link["fdb"].append({"mac": "00:00:00:00:00:00", "dst": "192.0.2.14"})
    with pytest.raises(
        pytest.fail.Exception,
        match=r"^vx100: FDB entries expected 00:00:00:00:00:00 dst 192.0.2.12, 00:00:00:00:00:00 dst "
        r"192.0.2.14, found 00:00:00:00:00:00 dst 192.0.2.12, 00:00:00:00:00:00 dst 192.0.2.13$",
    ):
        checks.vxlan_fdb(_machine(links=links, **{"bridge -j fdb show dev vx100": FDB}), link)


def test_vxlan_fdb_of_a_vlan_port_skips_where_the_bridge_cannot_filter() -> None:
    """networkd stops configuring a VLAN-carrying port before its [BridgeFDB]: on a kernel
    whose bridge shows no vlan_protocol the entries cannot be there (a skip with the
    kernel's reason); on one that filters, missing entries still fail."""
    bridge = {"ifname": "br-v", "mtu": 1500, "linkinfo": {"info_kind": "bridge", "info_data": {}}}
    port = {"ifname": "vx100", "mtu": 1450, "master": "br-v", "linkinfo": {"info_kind": "vxlan"}}
    link = _link("vx100", "vxlan", mtu=1450)
    link["fdb"] = [{"mac": "00:00:00:00:00:00", "dst": "192.0.2.12"}]
    link["port_vlans"] = {"vlans": ["10-19"], "pvid": None, "untagged": []}
    none = {"bridge -j fdb show dev vx100": "[]"}
    with pytest.raises(pytest.skip.Exception, match="no bridge VLAN filtering"):
        checks.vxlan_fdb(_machine(links=[bridge, port], **none), link)
    bridge["linkinfo"] = {"info_kind": "bridge", "info_data": {"vlan_protocol": "802.1Q"}}
    with pytest.raises(pytest.fail.Exception, match="FDB entries expected"):
        checks.vxlan_fdb(_machine(links=[bridge, port], **none), link)


# --- routes and DNS --------------------------------------------------------------------------

#: `ip -j -4 route show table all` and `ip -j -6 ...` of iproute2 6.1, captured in a namespace
#: here after: default via 192.0.2.1; 10.0.0.0/8 via 192.0.2.254 metric 200; 10.9.0.0/16 via
#: 192.0.2.254 table 100; blackhole 198.51.100.0/24; IPv6 default via 2001:db8::1.
ROUTES4: list[dict[str, Any]] = [
    {"dst": "10.9.0.0/16", "gateway": "192.0.2.254", "dev": "d0", "table": "100", "flags": []},
    {"dst": "default", "gateway": "192.0.2.1", "dev": "d0", "flags": []},
    {"dst": "10.0.0.0/8", "gateway": "192.0.2.254", "dev": "d0", "metric": 200, "flags": []},
    {
        "dst": "192.0.2.0/24",
        "dev": "d0",
        "protocol": "kernel",
        "scope": "link",
        "prefsrc": "192.0.2.11",
        "flags": [],
    },
    {"type": "blackhole", "dst": "198.51.100.0/24", "flags": []},
    {
        "type": "local",
        "dst": "192.0.2.11",
        "dev": "d0",
        "table": "local",
        "protocol": "kernel",
        "scope": "host",
        "prefsrc": "192.0.2.11",
        "flags": [],
    },
]
ROUTES6: list[dict[str, Any]] = [
    {"dst": "2001:db8::/64", "dev": "d0", "protocol": "kernel", "metric": 256, "flags": [], "pref": "medium"},
    {"dst": "default", "gateway": "2001:db8::1", "dev": "d0", "metric": 1024, "flags": [], "pref": "medium"},
]


def _routed(*, ipv6: bool = True) -> checks.Machine:
    answers = {
        "links": [{"ifname": "d0", "mtu": 1500, "address": "52:54:00:00:00:01"}],
        "ip -j -4 route show table all": json.dumps(ROUTES4),
    }
    if ipv6:
        answers["ip -j -6 route show table all"] = json.dumps(ROUTES6)
        answers["cat /proc/net/if_inet6"] = ""
    return _machine(**answers)


def test_routes_read_ips_json_with_its_defaults_spelled_out() -> None:
    found = checks.routes_in(ROUTES4, 4)
    assert found[0] == checks.KernelRoute("10.9.0.0/16", "192.0.2.254", "d0", 0, "100", "unicast")
    assert found[1] == checks.KernelRoute("0.0.0.0/0", "192.0.2.1", "d0", 0, "main", "unicast")
    assert found[2].metric == 200
    assert found[4] == checks.KernelRoute("198.51.100.0/24", None, None, 0, "main", "blackhole")
    assert found[5].destination == "192.0.2.11/32"  # a host route, printed without /32
    assert checks.routes_in(ROUTES6, 6)[1] == checks.KernelRoute(
        "::/0", "2001:db8::1", "d0", 1024, "main", "unicast"
    )


def test_planned_routes_are_found_by_destination_gateway_metric_table_and_type() -> None:
    machine = _routed()
    link = _link("d0")
    link["routes"] = [
        {"destination": "0.0.0.0/0", "gateway": "192.0.2.1"},
        {"destination": "10.0.0.0/8", "gateway": "192.0.2.254", "metric": 200},
        {"destination": "10.9.0.0/16", "gateway": "192.0.2.254", "table": 100},
        {"destination": "198.51.100.0/24", "type": "blackhole"},
        {"destination": "::/0", "gateway": "2001:db8:0::1"},  # spelled otherwise: same address
    ]
    checks.link_routes(machine, link)


@pytest.mark.parametrize(
    ("route", "said"),
    [
        # the metric differs: the route there is named
        (
            {"destination": "10.0.0.0/8", "gateway": "192.0.2.254", "metric": 100},
            "10.0.0.0/8 via 192.0.2.254 metric 100 (found: 10.0.0.0/8 via 192.0.2.254 dev d0 metric 200)",
        ),
        # in the main table, not table 100
        (
            {"destination": "10.9.0.0/16", "gateway": "192.0.2.254"},
            "10.9.0.0/16 via 192.0.2.254 (found: 10.9.0.0/16 via 192.0.2.254 dev d0 metric 0 table 100)",
        ),
        (
            {"destination": "0.0.0.0/0", "gateway": "192.0.2.2"},
            "0.0.0.0/0 via 192.0.2.2 (found: 0.0.0.0/0 via",
        ),
        ({"destination": "203.0.113.0/24"}, "203.0.113.0/24 (found: no route to it)"),
    ],
)
def test_a_missing_route_is_named_with_what_is_there(route: checks.LinkRoute, said: str) -> None:
    link = _link("d0")
    link["routes"] = [route]
    with pytest.raises(pytest.fail.Exception, match=r"^d0: routes missing: " + re.escape(said)):
        checks.link_routes(_routed(), link)


def test_without_an_ipv6_stack_there_are_no_ipv6_routes_and_ip_6_is_not_run() -> None:
    machine = _routed(ipv6=False)
    assert machine.routes(6) == []
    link = _link("d0")
    link["routes"] = [{"destination": "::/0", "gateway": "2001:db8::1"}]
    with pytest.raises(pytest.fail.Exception, match=r"found: no route to it"):
        checks.link_routes(machine, link)


#: `resolvectl dns eno1` / `resolvectl domain eno1` of systemd 252 (resolvectl.c
#: status_print_strv_ifindex: `Link N (name):`, items wrapped at the terminal's width onto
#: lines indented to "Global: "'s width). The real resolved of tests/test_resolved_real.py
#: printed `Link 2 (eno1): 192.0.2.53` and `Link 2 (eno1): example.net`.
RESOLVECTL_DNS = "Link 2 (eno1): 192.0.2.53 2001:db8::53\n"
RESOLVECTL_WRAPPED = "Link 2 (eno1): 192.0.2.53 192.0.2.54\n        192.0.2.55#dns.example.net\n"
RESOLVECTL_DOMAIN = "Link 2 (eno1): example.net ~corp.example\n"


def test_resolvectl_items_read_one_link_wrapped_or_not() -> None:
    assert checks.resolvectl_items(RESOLVECTL_DNS) == ["192.0.2.53", "2001:db8::53"]
    assert checks.resolvectl_items(RESOLVECTL_WRAPPED) == [
        "192.0.2.53",
        "192.0.2.54",
        "192.0.2.55#dns.example.net",
    ]
    assert checks.resolvectl_items("Link 2 (eno1):\n") == []
    assert checks.resolvectl_items(RESOLVECTL_DOMAIN) == ["example.net", "~corp.example"]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("192.0.2.53", "192.0.2.53"),
        ("192.0.2.53:5353", "192.0.2.53"),
        ("192.0.2.53#dns.example.net", "192.0.2.53"),
        ("2001:db8:0::53", "2001:db8::53"),
        ("[2001:db8::53]:53%eno1#dns.example.net", "2001:db8::53"),
    ],
)
def test_server_address_drops_port_interface_and_name(text: str, address: str) -> None:
    assert checks.server_address(text) == address


def _dns_link() -> checks.Link:
    link = _link("eno1")
    link["dns"] = {"servers": ["192.0.2.53", "2001:db8::53"], "domains": ["example.net", "~corp.example"]}
    return link


def _resolving(query: str | None) -> checks.Machine:
    answers: dict[str, object] = {
        "links": [{"ifname": "eno1", "mtu": 1500, "address": "52:54:00:00:00:01"}],
        "resolvectl dns eno1": RESOLVECTL_DNS,
        "resolvectl domain eno1": RESOLVECTL_DOMAIN,
    }
    if query is not None:
        line = (
            "resolvectl query --interface=eno1 --protocol=dns --cache=no --legend=no --type=SOA example.net"
        )
        answers[line] = query
    return _machine(**answers)


def test_dns_servers_and_domains_are_resolveds_for_the_link() -> None:
    checks.dns_servers(_resolving(None), _dns_link())
    other = _dns_link()
    other["dns"]["servers"] = ["192.0.2.54"]
    with pytest.raises(
        pytest.fail.Exception,
        match=r"^eno1: DNS servers expected \['192.0.2.54'\], found \['192.0.2.53', '2001:db8::53'\]$",
    ):
        checks.dns_servers(_resolving(None), other)


def test_dns_resolves_asks_the_first_search_domains_soa_on_the_link() -> None:
    # resolvectl 252's answer, as tests/test_resolved_real.py's real resolved printed it
    answer = "example.net IN SOA ns1.example.net hostmaster.ns1.example.net 1796319018 1200 180 1209600 600 -- link: eno1\n"
    checks.dns_resolves(_resolving(answer), _dns_link())
    # no answer (the stand-in host exits 1, as resolvectl does): named with the servers asked
    with pytest.raises(
        pytest.fail.Exception, match=r"^eno1: example.net SOA through 192.0.2.53, 2001:db8::53: "
    ):
        checks.dns_resolves(_resolving(None), _dns_link())
    # an answer for another name is no answer
    with pytest.raises(pytest.fail.Exception):
        checks.dns_resolves(
            _resolving("example.org IN SOA ns1.example.org h.example.org 1 2 3 4 5\n"), _dns_link()
        )
    bare = _dns_link()
    bare["dns"]["domains"] = []
    with pytest.raises(pytest.skip.Exception, match="no search domain"):
        checks.dns_resolves(_resolving(None), bare)


def test_resolver_is_active_and_resolv_conf_its_stub() -> None:
    entry: checks.Resolver = {
        "unit": "systemd-resolved.service",
        "resolv_conf": "/etc/resolv.conf",
        "stub": "/run/systemd/resolve/stub-resolv.conf",
    }
    good = _machine(
        **{
            "systemctl is-active systemd-resolved.service": "active\n",
            "readlink -f /etc/resolv.conf": "/run/systemd/resolve/stub-resolv.conf\n",
        }
    )
    checks.resolver(good, entry)
    kept = _machine(
        **{
            "systemctl is-active systemd-resolved.service": "active\n",
            "readlink -f /etc/resolv.conf": "/etc/resolv.conf\n",
        }
    )
    with pytest.raises(
        pytest.fail.Exception,
        match=r"^/etc/resolv.conf: target expected /run/systemd/resolve/stub-resolv.conf, found /etc/resolv.conf$",
    ):
        checks.resolver(kept, entry)
    with pytest.raises(
        pytest.fail.Exception, match=r"^systemd-resolved.service: state expected active, found unknown$"
    ):
        checks.resolver(_machine(), entry)


# --- traffic control: leaves, per-queue qdiscs, the unit ------------------------------------

#: `tc -j qdisc show dev eno1` (iproute2 6.1) after kvmnet's batch on a tbf with a pfifo leaf,
#: and after its unit on a veth with 4 TX queues (mq kept, a pfifo under each; the kernel
#: numbers handles it allocates from 8001:), both as printed here.
TC_TBF_LEAF = (
    '[{"kind":"tbf","handle":"10:","root":true,"refcnt":3,"options":{"rate":12500000,"burst":65525,'
    '"lat":50000}},{"kind":"pfifo","handle":"160:","parent":"10:1","options":{"limit":1000}}]'
)
TC_MQ = (
    '[{"kind":"mq","handle":"80:","root":true,"options":{}},'
    '{"kind":"pfifo","handle":"8005:","parent":"80:4","options":{"limit":1000}},'
    '{"kind":"pfifo","handle":"8003:","parent":"80:2","options":{"limit":1000}},'
    '{"kind":"pfifo","handle":"8002:","parent":"80:1","options":{"limit":1000}},'
    '{"kind":"pfifo","handle":"8004:","parent":"80:3","options":{"limit":1000}},'
    '{"kind":"ingress","handle":"ffff:","parent":"ffff:fff1","options":{}}]'
)
QUEUES_4 = "rx-0\nrx-1\nrx-2\nrx-3\ntx-0\ntx-1\ntx-2\ntx-3\n"
ENO1 = [{"ifname": "eno1", "mtu": 1500}]


def _tc_machine(qdiscs: str, queues: str = "rx-0\ntx-0\n", **more: str) -> checks.Machine:
    return _machine(
        links=ENO1,
        **{"tc -j qdisc show dev eno1": qdiscs, "ls /sys/class/net/eno1/queues": queues, **more},
    )


def _plain(kind: str) -> checks.Qdisc:
    return {
        "device": "eno1",
        "engine": "service",
        "root": {"kind": kind, "handle": "60:", "module": None},
        "per_queue": {"kind": kind, "mq": "80:", "module": None},
        "unit": "kvmnet-tc@eno1.service",
    }


def test_leaf_qdisc_is_checked_by_kind_and_by_the_class_it_hangs_under() -> None:
    leaf: checks.QdiscLeaf = {"kind": "pfifo", "handle": "160:", "module": None, "parent": "10:1"}
    qdisc: checks.Qdisc = {"device": "eno1", "engine": "service", "leaf": leaf}
    checks.leaf_qdisc(_tc_machine(TC_TBF_LEAF), qdisc)
    # The same qdisc grafted by `parent 10:` (the tbf itself) reads back with that parent.
    elsewhere = _tc_machine(TC_TBF_LEAF.replace('"parent":"10:1"', '"parent":"10:"'))
    with pytest.raises(pytest.fail.Exception, match=r"^eno1: qdisc 160: parent expected 10:1, found 10:$"):
        checks.leaf_qdisc(elsewhere, qdisc)
    # The kernel's own FIFO under the shaper (no handle of kvmnet's): the planned leaf is missing.
    kernels = _tc_machine(TC_TBF_LEAF.replace('"handle":"160:"', '"handle":"0:"'))
    with pytest.raises(pytest.fail.Exception, match=r"^eno1: qdisc 160: expected pfifo, found none$"):
        checks.leaf_qdisc(kernels, qdisc)


def test_a_plain_qdisc_on_a_multiqueue_device_is_under_each_tx_queue() -> None:
    machine = _tc_machine(TC_MQ, QUEUES_4)
    checks.root_qdisc(machine, _plain("pfifo"))  # mq 80:, not pfifo 60:
    checks.per_queue_qdiscs(machine, _plain("pfifo"))
    # One queue's child left as something else, and a fifth queue with none.
    one_off = TC_MQ.replace('"kind":"pfifo","handle":"8003:"', '"kind":"pfifo_fast","handle":"0:"')
    five = QUEUES_4 + "tx-4\n"
    with pytest.raises(
        pytest.fail.Exception,
        match=r"^eno1: qdisc under each of 5 TX queues expected pfifo, found 80:2 pfifo_fast, 80:5 none$",
    ):
        checks.per_queue_qdiscs(_tc_machine(one_off, five), _plain("pfifo"))
    # A root pfifo on the multiqueue device (what `qdisc:` did before): the root check fails.
    root = '[{"kind":"pfifo","handle":"60:","root":true,"refcnt":5,"options":{"limit":1000}}]'
    with pytest.raises(pytest.fail.Exception, match=r"^eno1: root qdisc expected mq 80:, found pfifo 60:$"):
        checks.root_qdisc(_tc_machine(root, QUEUES_4), _plain("pfifo"))


def test_a_plain_qdisc_on_a_single_queue_device_is_the_root() -> None:
    root = '[{"kind":"pfifo","handle":"60:","root":true,"refcnt":2,"options":{"limit":1000}}]'
    machine = _tc_machine(root)
    checks.root_qdisc(machine, _plain("pfifo"))
    checks.per_queue_qdiscs(machine, _plain("pfifo"))
    # The device's one queue kept what the kernel gave it: both checks say so.
    kernels = _tc_machine('[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]')
    with pytest.raises(
        pytest.fail.Exception, match=r"^eno1: root qdisc expected pfifo 60:, found noqueue 0:$"
    ):
        checks.root_qdisc(kernels, _plain("pfifo"))
    with pytest.raises(
        pytest.fail.Exception,
        match=r"^eno1: qdisc of its one TX queue \(the root\) expected pfifo, found noqueue$",
    ):
        checks.per_queue_qdiscs(kernels, _plain("pfifo"))


def test_the_tc_unit_must_be_active_not_only_enabled() -> None:
    answers = {
        "command -v systemctl": "/usr/bin/systemctl\n",
        "systemctl is-enabled kvmnet-tc@eno1.service": "enabled\n",
    }
    machine = _machine(**answers, **{"systemctl is-active kvmnet-tc@eno1.service": "active\n"})
    checks.unit_enabled(machine, _plain("pfifo"))
    checks.unit_active(machine, _plain("pfifo"))
    # A batch that failed: enabled still, the oneshot unit `failed` (systemctl exits 3 then).
    failed = checks.Machine(_Host(answers))
    failed.host.answers["systemctl is-active kvmnet-tc@eno1.service"] = "failed\n"
    checks.unit_enabled(failed, _plain("pfifo"))
    with pytest.raises(
        pytest.fail.Exception, match=r"^kvmnet-tc@eno1.service: unit expected active, found failed$"
    ):
        checks.unit_active(failed, _plain("pfifo"))


def test_firewall_opening_asks_firewalld_now_and_permanently() -> None:
    opening: checks.Opening = {"kind": "port", "value": "4789/udp", "name": "4789/udp"}
    both = {
        "systemctl is-active firewalld": "active\n",
        "firewall-cmd --query-port=4789/udp": "yes\n",
        "firewall-cmd --permanent --query-port=4789/udp": "yes\n",
    }
    checks.firewall_opening(_machine(**both), opening)
    runtime_only = {k: v for k, v in both.items() if "--permanent" not in k}
    with pytest.raises(
        pytest.fail.Exception, match=r"^4789/udp: let in \(permanent\) expected yes, found no answer$"
    ):
        checks.firewall_opening(_machine(**runtime_only), opening)
    gre: checks.Opening = {"kind": "protocol", "value": "gre", "name": "gre"}
    with pytest.raises(pytest.fail.Exception, match=r"^gre: let in \(runtime\)"):
        checks.firewall_opening(_machine(**both), gre)
    with pytest.raises(pytest.skip.Exception, match="firewalld is inactive: nothing drops it"):
        checks.firewall_opening(_machine(**{"systemctl is-active firewalld": "inactive\n"}), opening)
