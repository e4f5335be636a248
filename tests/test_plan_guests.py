"""Guest planning: defaults, derived values (MAC, queues, channels, MTU), and warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator import layout
from generator.cli import run
from generator.errors import KvmnetError
from generator.plan.guests import mac_for
from generator.plan.types import (
    IPV6_OFF,
    GuestPlan,
    Kind,
    NicLink,
    NicTuning,
    NicTuningScript,
    NicTuningUnit,
    PortVlans,
    SysctlDropIn,
)
from tests.test_plan import errors_of, plan_of

HOST = """
hosts:
  hv1:
    network:
      ethernets:
        eno1: {mtu: 1500, addresses: [192.0.2.1/24]}
      tunnels:
        vx5: {mode: vxlan, id: 5, link: eno1}
      bridges:
        br-ovl: {interfaces: [vx5], mtu: auto}
        br-jumbo: {mtu: 9000}
"""


def guest(text: str, name: str = "g1") -> GuestPlan:
    return next(g for g in plan_of(HOST + text).guests if g.name == name)


def test_defaults_and_derived_values() -> None:
    g = guest("guests:\n  g1:\n    host: hv1\n    interfaces: [{bridge: br-ovl}]\n")
    assert (g.vcpus, g.memory_kib, g.machine, g.firmware, g.virt_type) == (
        2,
        2 * 1024 * 1024,
        "q35",
        "bios",
        "kvm",
    )
    (nic,) = g.nics
    assert nic.mtu == 1450  # the bridge's MTU, itself the VXLAN's: 1500 - 50
    assert nic.queues == nic.channels == 2  # one queue pair per vCPU
    assert nic.mac == mac_for("hv1", "g1", 0)
    assert nic.dhcp4 is True  # no addresses: DHCP
    assert g.disk_path == "/var/lib/libvirt/images/g1.qcow2"


def test_defaults_guest_merges_under_every_guest() -> None:
    plan = plan_of(
        HOST
        + """
defaults:
  guest: {vcpus: 8, memory: 8GiB, ipv6: disabled}
guests:
  a: {host: hv1}
  b: {host: hv1, vcpus: 2}
"""
    )
    a, b = plan.guests
    assert (a.vcpus, a.memory_kib, a.ipv6) == (8, 8 * 1024 * 1024, "disabled")
    assert (b.vcpus, b.ipv6) == (2, "disabled")


def test_macs_are_stable_and_distinct() -> None:
    macs = {mac_for(h, g, i) for h in ("hv1", "hv2") for g in ("a", "b", "c") for i in range(4)}
    assert len(macs) == 24
    assert all(m.startswith("52:54:00:") for m in macs)
    assert mac_for("hv1", "a", 0) == mac_for("hv1", "a", 0)


def test_channels_are_the_smaller_of_queues_and_vcpus() -> None:
    g = guest(
        "guests:\n  g1:\n    host: hv1\n    vcpus: 8\n    interfaces: [{bridge: br-jumbo, queues: 4}]\n"
    )
    assert (g.nics[0].queues, g.nics[0].channels) == (4, 4)
    assert g.nics[0].mtu == 9000


def test_channels_can_be_capped_below_the_queue_pairs() -> None:
    g = guest(
        "guests:\n  g1:\n    host: hv1\n    vcpus: 8\n"
        "    interfaces: [{bridge: br-jumbo, queues: 4, channels: 1}]\n"
    )
    assert (g.nics[0].queues, g.nics[0].channels) == (4, 1)


def test_more_queues_than_vcpus_is_a_warning_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        HOST
        + "guests:\n  g1:\n    host: hv1\n    vcpus: 2\n    interfaces: [{bridge: br-jumbo, queues: 16}]\n"
    )
    g = guest(text[len(HOST) :])
    assert (g.nics[0].queues, g.nics[0].channels) == (16, 2)
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    assert run(["validate", str(profile)]) == 0
    err = capsys.readouterr().err
    assert f"{profile}:16:45: guests.g1.interfaces[0].queues: warning: 16 queue pairs for 2 vCPUs" in err


def test_second_and_later_nics_are_optional_at_boot() -> None:
    g = guest("guests:\n  g1:\n    host: hv1\n    interfaces: [{bridge: br-ovl}, {bridge: br-jumbo}]\n")
    assert [n.optional for n in g.nics] == [False, True]
    assert [n.name for n in g.nics] == ["eth0", "eth1"]


def test_plaintext_password_is_refused_without_being_echoed() -> None:
    errors = errors_of(
        HOST + "guests:\n  g1:\n    host: hv1\n    users: [{name: ops, passwd: hunter2hunter2}]\n"
    )
    assert len(errors) == 1
    assert "passwd must be a crypt(3) hash" in errors[0]
    assert "hunter2" not in errors[0]


@pytest.mark.parametrize(
    ("interface", "message"),
    [
        ("{bridge: br-ovl, mtu: 1500}", "MTU 1500 is above what br-ovl carries (1450)"),
        ("{bridge: br-nope}", "bridge 'br-nope' does not exist on host hv1 (its bridges: br-jumbo, br-ovl)"),
        ("{network: eno1}", "network (kvmnet defines one per bridge) 'eno1' does not exist on host hv1"),
        ("{bridge: br-ovl, network: br-jumbo}", "give exactly one of bridge:"),
        ("{bridge: br-ovl, queues: 257}", "queues must be 1–256"),
        ("{bridge: br-ovl, model: e1000e, queues: 2}", "queues need a virtio NIC"),
        ("{bridge: br-ovl, rx-ring: 2048}", "rx-ring must be one of 256, 512, 1024"),
        # the default guest has 2 vCPUs: min(queues auto = 2, 2) = 2 channels at most
        (
            "{bridge: br-ovl, channels: 3}",
            "channels must be at most 2, got 3: the guest can use min(queues 2, vCPUs 2)",
        ),
        ("{bridge: br-ovl, queues: 1, channels: 2}", "channels must be at most 1, got 2"),
        ("{bridge: br-ovl, model: e1000e, channels: 1}", "channels need a virtio NIC with queue pairs"),
        ("{bridge: br-ovl, channels: 0}", "channels"),
        ("{bridge: br-ovl, tx-ring: 512}", "honoured only for vhost-user"),
        ("{bridge: br-ovl, target: vnet7}", "libvirt silently replaces"),
        ("{bridge: br-ovl, vlan: 100}", "libvirt 9.0 on hv1 cannot tag a guest's port on a Linux bridge"),
        (
            "{bridge: br-ovl, bandwidth: {inbound: {average: 100kbit}}}",
            "not a whole number of kilobytes per second (12.5)",
        ),
        (
            "{bridge: br-ovl, bandwidth: {inbound: {average: 1Mbit, burst: 1000B}}}",
            "not a whole number of KiB",
        ),
        (
            "{bridge: br-ovl, bandwidth: {inbound: {average: 1Mbit, floor: 1Mbit}}}",
            "floor is honoured by libvirt only",
        ),
        (
            "{bridge: br-ovl, bandwidth: {outbound: {average: 1Mbit, peak: 2Mbit}}}",
            "ignores peak on outbound",
        ),
    ],
)
def test_rules_beyond_libvirts_schema(interface: str, message: str) -> None:
    errors = errors_of(HOST + f"guests:\n  g1:\n    host: hv1\n    interfaces: [{interface}]\n")
    assert any(message in e for e in errors), errors


FILTERING = HOST.replace(
    "br-jumbo: {mtu: 9000}", "br-jumbo: {mtu: 9000, kvmnet: {vlan-filtering: true, default-pvid: none}}"
)


def test_a_newer_libvirt_takes_a_vlan_tag_on_a_vlan_filtering_bridge() -> None:
    text = FILTERING.replace("  hv1:\n", "  hv1:\n    libvirt-version: '11.0'\n")
    plan = plan_of(text + "guests:\n  g1:\n    host: hv1\n    interfaces: [{bridge: br-jumbo, vlan: 100}]\n")
    assert plan.guests[0].nics[0].vlan == 100
    # A bridge that does not filter VLANs forwards every frame whatever the port's VLANs:
    # the tag would look applied and isolate nothing.
    errors = errors_of(
        text + "guests:\n  g1:\n    host: hv1\n    interfaces: [{bridge: br-ovl, vlan: 100}]\n"
    )
    assert errors == [
        "p.yaml:16:41: guests.g1.interfaces[0].vlan: bridge br-ovl does not filter VLANs, so it would "
        "ignore the port's VLAN; set hosts.hv1.network.bridges.br-ovl.kvmnet.vlan-filtering: true"
    ]


def test_an_older_libvirt_gets_the_vlan_on_the_host_port_of_the_guests_tap() -> None:
    # What the refusal of vlan: on libvirt 9.0 advises, done: the tap in kvmnet.ports.
    text = FILTERING.replace(
        "default-pvid: none}", "default-pvid: none, ports: {g1-tap: {pvid: 100, untagged: [100]}}}"
    )
    plan = plan_of(text + "guests:\n  g1: {host: hv1, interfaces: [{bridge: br-jumbo, target: g1-tap}]}\n")
    (tap,) = plan.hosts[0].tap_ports
    assert (tap.id, tap.kind, tap.master, tap.mtu, tap.required_for_online) == (
        "g1-tap",
        Kind.TAP,
        "br-jumbo",
        9000,
        False,
    )
    assert tap.port_vlans == PortVlans(pvid=100, untagged=((100, 100),))
    assert tap.origin == ("hosts", "hv1", "network", "bridges", "br-jumbo", "kvmnet", "ports", "g1-tap")


@pytest.mark.parametrize(
    ("guests", "message"),
    [
        (
            "{}",
            "'g1-tap' is not a port of bridge br-jumbo (ports: none; guest taps on it: none, named by a "
            "guest interface's target:)",
        ),
        (
            "{g1: {host: hv1, interfaces: [{bridge: br-ovl, target: g1-tap}]}}",
            "'g1-tap' is the tap of guests.g1.interfaces[0], which attaches to br-ovl, not br-jumbo",
        ),
        (
            "{g1: {host: hv1, interfaces: [{bridge: br-jumbo, target: g1-tap, vlan: 100}]}}",
            "libvirt 9.0 on hv1 cannot tag a guest's port on a Linux bridge",
        ),
    ],
)
def test_tap_ports_must_be_taps_of_guests_on_that_bridge(guests: str, message: str) -> None:
    text = FILTERING.replace("default-pvid: none}", "default-pvid: none, ports: {g1-tap: {pvid: 100}}}")
    errors = errors_of(text + f"guests: {guests}\n")
    assert any(message in e for e in errors), errors


def test_a_tap_with_vlans_on_the_host_takes_no_vlan_tag_as_well() -> None:
    text = FILTERING.replace(
        "default-pvid: none}", "default-pvid: none, ports: {g1-tap: {pvid: 100}}}"
    ).replace("  hv1:\n", "  hv1:\n    libvirt-version: '11.0'\n")
    errors = errors_of(
        text + "guests: {g1: {host: hv1, interfaces: [{bridge: br-jumbo, target: g1-tap, vlan: 5}]}}\n"
    )
    assert any(
        "tap g1-tap already has its VLANs from hosts.hv1.network.bridges.br-jumbo.kvmnet.ports" in e
        for e in errors
    ), errors


def test_a_tap_cannot_take_a_host_interface_name() -> None:
    errors = errors_of(HOST + "guests: {g1: {host: hv1, interfaces: [{bridge: br-ovl, target: br-jumbo}]}}\n")
    assert any(
        "'br-jumbo' is already the name of bridge br-jumbo on host hv1; libvirt could not create the tap" in e
        for e in errors
    ), errors


def test_duplicate_macs_and_taps_are_refused() -> None:
    with pytest.raises(KvmnetError) as info:
        plan_of(
            HOST
            + """
guests:
  a: {host: hv1, interfaces: [{bridge: br-ovl, mac: "52:54:00:00:00:01", target: tap-a}]}
  b: {host: hv1, interfaces: [{bridge: br-ovl, mac: "52:54:00:00:00:01", target: tap-a}]}
"""
        )
    text = "\n".join(d.format() for d in info.value.diagnostics)
    assert "MAC 52:54:00:00:00:01 is already used by guests.a.interfaces[0]" in text
    assert "tap tap-a is already used on host hv1 by guests.a.interfaces[0]" in text


def test_extra_cloud_config_is_checked() -> None:
    errors = errors_of(
        HOST + "guests:\n  g1:\n    host: hv1\n    cloud-config: {packges: [htop], hostname: x}\n"
    )
    joined = "\n".join(errors)
    assert "'packges' is not a cloud-config key cloud-init 22.4 knows; did you mean 'packages'?" in joined
    assert "hostname is written by kvmnet" in joined


@pytest.mark.parametrize(
    "extra",
    [
        "{password: hunter2hunter2}",
        "{chpasswd: {list: ['root:hunter2hunter2']}}",
        '{chpasswd: {list: "root:hunter2hunter2\\nops:RANDOM"}}',
        "{chpasswd: {users: [{name: root, password: hunter2hunter2, type: text}]}}",
    ],
)
def test_plain_passwords_in_extra_cloud_config_are_refused_without_echo(extra: str) -> None:
    errors = errors_of(HOST + f"guests:\n  g1:\n    host: hv1\n    cloud-config: {extra}\n")
    assert errors and all("plain passwords are refused" in e for e in errors), errors
    assert not any("hunter2" in e for e in errors)


def test_hashed_and_random_passwords_in_extra_cloud_config_pass() -> None:
    digest = (
        "$6$kvmnetsalt$Zr1Z0yB4q4d0ZzE2Xbq9oU4c6m7Y3v9QnQd3F2j0wR1yqHn6C8lJ5tT7uKx0aP2sD4fG6hJ8kL0zX2cV4bN6m."
    )
    g = guest(
        f"guests:\n  g1:\n    host: hv1\n    cloud-config: {{chpasswd: {{list: ['root:{digest}', 'ops:RANDOM']}}}}\n"
    )
    assert "RANDOM" in json.dumps(g.cloud_config)


def test_guest_files_are_decided_in_the_plan() -> None:
    """One typed list of what kvmnet writes into a guest: the sysctl drop-in, a .link file
    per tuned NIC, then the ethtool fallback and its unit (the order user-data writes them)."""
    g = guest(
        """guests:
  g1:
    host: hv1
    vcpus: 4
    ipv6: disabled
    interfaces:
      - {bridge: br-jumbo, model: e1000e}
      - {bridge: br-jumbo, queues: 2}
      - {bridge: br-jumbo, queues: 1, rx-ring: 1024}
"""
    )
    plain, multi, ringed = g.nics
    assert [(f.kind, f.path, f.mode) for f in g.files] == [
        ("sysctl", layout.GUEST_SYSCTL, 0o644),
        ("link", layout.guest_link(multi.name), 0o644),
        ("link", layout.guest_link(ringed.name), 0o644),
        ("nic-tuning-script", layout.NIC_TUNING_SCRIPT, 0o755),
        ("nic-tuning-unit", layout.NIC_TUNING_UNIT, 0o644),
    ]
    sysctl, link1, link2, script, unit = g.files
    assert isinstance(sysctl, SysctlDropIn) and sysctl.sysctls == g.sysctls == IPV6_OFF
    tunings = (NicTuning(multi.mac, 2, None), NicTuning(ringed.mac, 1, 1024))
    assert isinstance(link1, NicLink) and isinstance(link2, NicLink)
    assert (link1.nic, link2.nic) == tunings
    assert isinstance(script, NicTuningScript) and script.nics == tunings
    assert isinstance(unit, NicTuningUnit)
    assert (unit.name, unit.script) == (layout.NIC_TUNING_UNIT_NAME, layout.NIC_TUNING_SCRIPT)
    assert plain.mac not in {t.mac for t in tunings}


def test_an_untuned_guest_gets_no_files() -> None:
    g = guest("guests:\n  g1:\n    host: hv1\n    interfaces: [{bridge: br-jumbo, model: e1000e}]\n")
    assert (g.sysctls, g.files) == ((), ())


def test_extra_cloud_config_in_the_plan_is_frozen() -> None:
    g = guest(
        "guests:\n  g1:\n    host: hv1\n    cloud-config: {write_files: [{path: /x, content: y}], bootcmd: [a]}\n"
    )
    assert list(g.cloud_config) == ["bootcmd", "write_files"]  # sorted, as user-data lists them
    with pytest.raises(TypeError):
        g.cloud_config["runcmd"] = ()
    files = g.cloud_config["write_files"]
    assert isinstance(files, tuple)
    with pytest.raises(TypeError):
        files[0]["path"] = "/y"  # type: ignore[index]
    hash(g)  # a frozen plan can be hashed
