"""The check library the generated suites import (generator/checks/kvmnet_checks.py), unit by unit.

Its readers take what `ip -j`, `tc`, `bridge -j` and `ethtool` print; here they get text
written by hand in those tools' formats (iproute2 6.1, ethtool 6.1 as on Debian 12), through a
stand-in for testinfra's `host`. Whether the checks agree with a real machine is
tests/test_verify_live.py and tests/test_lab.py.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from generator.checks import kvmnet_checks as checks
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
