"""One run, one list: the plan's problems come with the model's (generator/plan/partial.py).

Each test has a model error that leaves a host, guest or overlay out, and asserts the
exact lines a user sees: the plan's problems among the valid entries are there, those
that may only come from what was left out are not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.errors import KvmnetError
from generator.pipeline import plan_profile


def errors_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(KvmnetError) as info:
        plan_profile(path, "p.yaml")
    return [d.format() for d in info.value.diagnostics]


def test_a_valid_hosts_plan_errors_come_with_another_hosts_model_error(tmp_path: Path) -> None:
    text = """\
hosts:
  hv1: {distro: nope}
  hv2:
    network:
      vlans:
        v10: {id: 10, link: eno9}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:2:17: hosts.hv1.distro: 'nope' is not valid here; expected one of: "
        "'debian12', 'ubuntu2204', 'ubuntu2404' or 'el9'",
        "p.yaml:6:29: hosts.hv2.network.vlans.v10.link: link 'eno9' is not defined on host hv2 "
        "(defined: v10)",
    ]


def test_a_guest_whose_host_is_left_out_is_not_judged(tmp_path: Path) -> None:
    # Without the host, g1's bridge cannot be found, and its host would be "not defined".
    text = """\
hosts:
  hv1: {distro: nope}
guests:
  g1: {host: hv1, interfaces: [{bridge: br0}]}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:2:17: hosts.hv1.distro: 'nope' is not valid here; expected one of: "
        "'debian12', 'ubuntu2204', 'ubuntu2404' or 'el9'",
    ]


def test_a_guests_plan_errors_come_with_another_guests_model_error(tmp_path: Path) -> None:
    text = """\
hosts:
  hv1: {}
guests:
  g1: {host: hv1, machine: nope}
  g2: {host: hv1, interfaces: [{bridge: br0}]}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:4:28: guests.g1.machine: 'nope' is not valid here; expected one of: 'q35' or 'pc'",
        "p.yaml:5:41: guests.g2.interfaces[0].bridge: bridge 'br0' does not exist on host hv1 "
        "(its bridges: none)",
    ]


def test_an_overlay_with_a_left_out_member_is_judged_on_the_others(tmp_path: Path) -> None:
    # Left as it is, the overlay would say its member hv1 is not defined and expand on no
    # host, so g1's br-fleet would be missing too. It is judged as if hv1 were no member.
    text = """\
hosts:
  hv1: {distro: nope}
  hv2:
    network:
      ethernets:
        eno1: {addresses: [192.0.2.2/24]}
overlays:
  fleet: {vni: 100, underlay: eno1, bridge: br-fleet, hosts: [hv1, hv2], mtu: 1500}
guests:
  g1: {host: hv2, interfaces: [{bridge: br-fleet}]}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:2:17: hosts.hv1.distro: 'nope' is not valid here; expected one of: "
        "'debian12', 'ubuntu2204', 'ubuntu2404' or 'el9'",
        "p.yaml:8:79: overlays.fleet.mtu: on hv2: MTU 1500 does not fit: eno1 carries 1500 and VXLAN over "
        "IPv4 adds 50 bytes, so at most 1500 - 50 = 1450 fits; lower the MTU, use mtu: auto, or raise "
        "eno1's MTU to 1550",
    ]


def test_the_members_of_a_left_out_overlay_and_their_guests_are_not_judged(tmp_path: Path) -> None:
    # The overlay would have made br-fleet on hv1 (and hv2's VLAN rides on it); g1 attaches
    # to it. hv3 is no member: its problem is reported.
    text = """\
hosts:
  hv1: {}
  hv2:
    network:
      vlans:
        v5: {id: 5, link: br-fleet}
  hv3:
    network:
      vlans:
        v5: {id: 5, link: br-fleet}
overlays:
  fleet: {vni: 7, bridge: br-fleet, hosts: [hv1, hv2], mac-learning: maybe}
guests:
  g1: {host: hv1, interfaces: [{bridge: br-fleet}]}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:10:27: hosts.hv3.network.vlans.v5.link: link 'br-fleet' is not defined on host hv3 "
        "(defined: v5)",
        "p.yaml:12:70: overlays.fleet.mac-learning: expected true or false, got 'maybe'",
    ]


def test_a_host_where_a_left_out_guest_names_a_tap_is_not_judged(tmp_path: Path) -> None:
    # hv1's kvmnet.ports lists g1's tap: without g1 it would be "not a port of bridge br0".
    # hv2 only runs a left-out guest without taps: its own problem is reported.
    text = """\
hosts:
  hv1:
    network:
      ethernets: {eno1: {}}
      bridges:
        br0:
          interfaces: [eno1]
          kvmnet: {vlan-filtering: true, ports: {g1-tap: {pvid: 5}}}
  hv2:
    network:
      vlans:
        v5: {id: 5, link: eno9}
guests:
  g1: {host: hv1, machine: nope, interfaces: [{bridge: br0, target: g1-tap}]}
  g2: {host: hv2, machine: nope}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:12:27: hosts.hv2.network.vlans.v5.link: link 'eno9' is not defined on host hv2 (defined: v5)",
        "p.yaml:14:28: guests.g1.machine: 'nope' is not valid here; expected one of: 'q35' or 'pc'",
        "p.yaml:15:28: guests.g2.machine: 'nope' is not valid here; expected one of: 'q35' or 'pc'",
    ]


def test_a_problem_outside_any_entry_leaves_the_plan_out(tmp_path: Path) -> None:
    # `gusts:` was meant to be `guests:`: planning the hosts without their guests would
    # judge a profile the user did not write.
    text = """\
hosts:
  hv1:
    network:
      vlans:
        v5: {id: 5, link: eno9}
gusts:
  g1: {host: hv1}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:6:1: gusts: unknown key 'gusts'; did you mean 'guests'? "
        "(valid keys here: version, defaults, hosts, guests, overlays, pxe)"
    ]


def test_an_unknown_key_in_defaults_guest_is_reported_once(tmp_path: Path) -> None:
    text = """\
defaults:
  guest: {colour: red}
hosts:
  hv1: {}
guests:
  g1: {host: hv1}
  g2: {host: hv1}
"""
    assert errors_of(text, tmp_path) == [
        "p.yaml:2:11: defaults.guest.colour: unknown key 'colour' (valid keys here: vcpus, memory, "
        "machine, firmware, virt-type, disk, interfaces, ipv6, users, hostname, cloud-config)",
    ]


def test_a_profile_without_model_errors_is_planned_as_before(tmp_path: Path) -> None:
    text = "hosts:\n  hv1:\n    network:\n      vlans:\n        v5: {id: 5, link: eno9}\n"
    assert errors_of(text, tmp_path) == [
        "p.yaml:5:27: hosts.hv1.network.vlans.v5.link: link 'eno9' is not defined on host hv1 (defined: v5)",
    ]
