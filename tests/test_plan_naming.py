"""generator/plan/naming.py: the udev property a NIC's .link matches at boot (issue 14, 5)."""

from __future__ import annotations

import pytest

from generator.plan.naming import ONBOARD, PATH, SLOT, naming_property
from tests.test_plan import plan_of


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # systemd.net-naming-scheme(7) v252, its examples and tables
        ("eno1", ONBOARD),  # PCI onboard index
        ("eno1np0", ONBOARD),
        ("end0", ONBOARD),  # devicetree alias
        ("ens1", SLOT),  # PCI hotplug slot
        ("ens3f1", SLOT),
        ("enP2s1", SLOT),  # slot on PCI domain 2
        ("env3", SLOT),  # IBM VIO
        ("enX0", SLOT),  # Xen VIF
        ("enp5s0", PATH),
        ("enp65s0f0", PATH),
        ("enP1p3s0", PATH),  # path on PCI domain 1
        ("enp0s29u1u2", PATH),  # USB behind PCI
        ("encf5f0", PATH),  # s390 CCW
        ("wlp3s0", PATH),
        ("ibp21s0f0", PATH),
        ("wwp0s29u1u4i6", PATH),
        ("enp*s0", PATH),  # a glob whose policy letter is literal: Property= is fnmatch'd too
        ("eno[12]", ONBOARD),
        # names that do not say which policy, or that no policy gives
        ("en*", None),
        ("enP*", None),
        ("eno", None),
        ("eth0", None),
        ("lan0", None),
        ("enx78e7d1ea46da", None),  # MAC policy: Debian's 73-usb-net-by-mac.link, NamePolicy=mac
        ("!eno1", None),
    ],
)
def test_naming_property(name: str, expected: str | None) -> None:
    assert naming_property(name) == expected


PROFILE = """\
hosts:
  hv1:
    kernel: {{cmdline: [{cmdline}]}}
    network:
      ethernets:
        eno2: {{mtu: 9000, receive-checksum-offload: false}}
        eth1: {{mtu: 9000}}
        eth2: {{wakeonlan: true}}
        lan:
          match: {{name: "en*"}}
          set-name: lan0
"""


def test_only_what_boot_would_lose_is_warned_about() -> None:
    plan = plan_of(PROFILE.format(cmdline="quiet"))
    [host] = plan.hosts
    links = {i.id: i.link for i in host.interfaces if i.link is not None}
    assert {ident: link.name_property for ident, link in links.items()} == {
        "eno2": ONBOARD,
        "eth1": None,  # MTU only: the .network sets it at boot too
        "eth2": None,
        "lan": None,
    }
    assert [w.path[-1] for w in plan.warnings] == ["eth2", "lan"]
    assert "(OriginalName=)" in plan.warnings[0].message
    assert "match the NIC by macaddress" in plan.warnings[1].message


def test_kernel_names_kept_are_matched_by_original_name() -> None:
    """With net.ifnames=0 udev keeps the kernel's names: OriginalName= matches at boot."""
    assert plan_of(PROFILE.format(cmdline="net.ifnames=0")).warnings == ()
