"""The plan: MTU chain arithmetic, overlay expansion, cross-object rules."""

from __future__ import annotations

import pytest

from generator.errors import KvmnetError, PlanError
from generator.load import parse
from generator.model import validate, with_defaults
from generator.plan import Plan, make_plan
from generator.plan.types import Interface, Kind


def plan_of(text: str) -> Plan:
    doc = with_defaults(parse(text.encode(), "p.yaml"))
    try:
        return make_plan(validate(doc))
    except PlanError as exc:
        raise PlanError([doc.place(d) for d in exc.diagnostics]) from None


def errors_of(text: str) -> list[str]:
    with pytest.raises(KvmnetError) as info:
        plan_of(text)
    return [d.format() for d in info.value.diagnostics]


def iface(plan: Plan, host: str, ident: str) -> Interface:
    return next(h for h in plan.hosts if h.name == host).get(ident)


UNDERLAY = """
hosts:
  hv1:
    network:
      ethernets:
        eno1: {{mtu: {mtu}, addresses: [{addr}]}}
      tunnels:
        t1: {{mode: {mode}, {extra} local: {local}, remote: {remote}, mtu: auto}}
"""


@pytest.mark.parametrize(
    ("mode", "extra", "addr", "local", "remote", "mtu", "expected"),
    [
        ("vxlan", "id: 5,", "192.0.2.1/24", "192.0.2.1", "192.0.2.2", 1500, 1450),
        ("vxlan", "id: 5,", "2001:db8::1/64", "2001:db8::1", "2001:db8::2", 1500, 1430),
        ("vxlan", "id: 5,", "192.0.2.1/24", "192.0.2.1", "192.0.2.2", 9000, 8950),
        ("gre", "", "192.0.2.1/24", "192.0.2.1", "192.0.2.2", 1500, 1476),
        ("gretap", "", "192.0.2.1/24", "192.0.2.1", "192.0.2.2", 1500, 1462),
    ],
)
def test_auto_mtu_subtracts_the_encapsulation(
    mode: str, extra: str, addr: str, local: str, remote: str, mtu: int, expected: int
) -> None:
    text = UNDERLAY.format(mode=mode, extra=extra, addr=addr, local=local, remote=remote, mtu=mtu)
    tunnel = iface(plan_of(text), "hv1", "t1")
    assert tunnel.mtu == tunnel.mtu_written == expected
    assert tunnel.lower == "eno1"


def test_mtu_that_cannot_fit_shows_the_arithmetic() -> None:
    text = UNDERLAY.format(
        mode="gretap", extra="", addr="192.0.2.1/24", local="192.0.2.1", remote="192.0.2.2", mtu=1500
    ).replace("mtu: auto", "mtu: 1500")
    assert errors_of(text) == [
        "p.yaml:8:71: hosts.hv1.network.tunnels.t1.mtu: MTU 1500 does not fit: eno1 carries 1500 and "
        "gretap adds 38 bytes, so at most 1500 - 38 = 1462 fits; lower the MTU, use mtu: auto, or raise "
        "eno1's MTU to 1538"
    ]


def test_vlan_on_a_nic_keeps_the_parent_mtu() -> None:
    plan = plan_of(
        "hosts: {hv1: {network: {ethernets: {eno1: {mtu: 9000}}, vlans: {v5: {id: 5, link: eno1, mtu: auto}}}}}"
    )
    assert iface(plan, "hv1", "v5").mtu == 9000


def test_vlan_inside_a_tunnel_loses_four_bytes() -> None:
    plan = plan_of(
        """
hosts:
  hv1:
    network:
      ethernets: {eno1: {addresses: [192.0.2.1/24]}}
      tunnels: {vx7: {mode: vxlan, id: 7, link: eno1}}
      bridges: {br7: {interfaces: [vx7]}}
      vlans: {v20: {id: 20, link: br7, mtu: auto}}
"""
    )
    assert iface(plan, "hv1", "vx7").mtu == 1450  # kernel: underlay - 50, not written
    assert iface(plan, "hv1", "vx7").mtu_written is None
    assert iface(plan, "hv1", "br7").mtu == 1450
    assert iface(plan, "hv1", "v20").mtu == 1446
    assert [s.device for s in iface(plan, "hv1", "v20").mtu_chain] == ["eno1", "vx7", "br7", "v20"]


def test_unbound_vxlan_is_fine_where_1500_fits() -> None:
    plan = plan_of(
        """
hosts:
  hv1:
    network:
      ethernets: {eno1: {mtu: 9000, addresses: [192.0.2.1/24]}}
      tunnels: {vx7: {mode: vxlan, id: 7, local: 192.0.2.1}}
"""
    )
    vx = iface(plan, "hv1", "vx7")
    assert (vx.mtu, vx.mtu_written, vx.tunnel and vx.tunnel.independent) == (1500, None, True)


FLEET = """
hosts:
  a:
    network: {ethernets: {eno1: {mtu: 9000, addresses: [192.0.2.1/24]}}}
  b:
    network: {ethernets: {eno1: {mtu: 1600, addresses: [192.0.2.2/24, "2001:db8::2/64"]}}}
  c:
    network:
      ethernets: {eno1: {mtu: 9000, addresses: [192.0.2.3/24]}}
      bridges: {br-ovl: {addresses: [198.18.0.3/24]}}
overlays:
  ovl:
    vni: 42
    hosts: [a, b, c]
    underlay: eno1
    bridge: br-ovl
"""


def test_overlay_segment_mtu_is_the_smallest_member_limit() -> None:
    plan = plan_of(FLEET)
    (overlay,) = plan.overlays
    assert overlay.mtu == 1550  # b's 1600 - 50, for every member
    for host in "abc":
        assert iface(plan, host, "vx42").mtu_written == 1550
        assert iface(plan, host, "br-ovl").mtu == 1550


def test_overlay_fdb_is_a_full_mesh_to_the_other_vteps() -> None:
    plan = plan_of(FLEET)
    vteps = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}
    for host, own in vteps.items():
        vx = iface(plan, host, "vx42")
        assert vx.tunnel is not None
        assert vx.tunnel.local == own  # first IPv4 of the underlay
        assert vx.tunnel.port == 4789
        assert sorted(e.destination for e in vx.fdb) == sorted(v for h, v in vteps.items() if h != host)
        assert {e.mac for e in vx.fdb} == {"00:00:00:00:00:00"}
        assert vx.master == "br-ovl"
        assert ("VXLAN", "vx42") in iface(plan, host, "eno1").stacked


def test_overlay_uses_a_declared_bridge_and_creates_a_missing_one() -> None:
    plan = plan_of(FLEET)
    assert iface(plan, "c", "br-ovl").addresses == ("198.18.0.3/24",)
    assert iface(plan, "c", "br-ovl").origin == ("hosts", "c", "network", "bridges", "br-ovl")
    assert iface(plan, "a", "br-ovl").origin == ("overlays", "ovl", "bridge")
    assert iface(plan, "a", "br-ovl").kind is Kind.BRIDGE


def test_overlay_members_cannot_mix_families() -> None:
    text = FLEET.replace("hosts: [a, b, c]", "hosts: {a: {}, b: {local: '2001:db8::2'}, c: {}}")
    assert errors_of(text) == [
        "p.yaml:13:5: overlays.ovl: members mix IPv4 and IPv6 VTEP addresses; a VXLAN segment uses one family"
    ]


def test_defaults_are_merged_and_hosts_win() -> None:
    plan = plan_of(
        """
defaults:
  host:
    network:
      ethernets:
        eno1: {mtu: 9000, dhcp4: true}
hosts:
  a: {}
  b:
    network:
      ethernets:
        eno1: {mtu: 1500}
"""
    )
    assert (iface(plan, "a", "eno1").mtu, iface(plan, "a", "eno1").dhcp) == (9000, "ipv4")
    assert (iface(plan, "b", "eno1").mtu, iface(plan, "b", "eno1").dhcp) == (1500, "ipv4")


def test_error_in_a_default_points_at_the_default_once() -> None:
    errors = errors_of(
        "defaults: {host: {network: {ethernets: {eno1: {mtu: 99999}}}}}\nhosts: {a: {}, b: {}}\n"
    )
    assert errors == [
        "p.yaml:1:53: defaults.host.network.ethernets.eno1.mtu: MTU must be 68–65535 "
        "(68 is the IPv4 minimum), got 99999"
    ]


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            "{ethernets: {eno1: {}}, bridges: {b1: {interfaces: [eno1]}, b2: {interfaces: [b1]}}}",
            "inside a bridge",
        ),
        (
            "{ethernets: {eno1: {addresses: [192.0.2.1/24]}}, "
            "tunnels: {g: {mode: gre, local: 192.0.2.1, remote: 192.0.2.2}}, bridges: {b: {interfaces: [g]}}}",
            "layer-3 GRE tunnel and cannot be a bridge port",
        ),
        (
            "{ethernets: {eno1: {}}, bridges: {b1: {interfaces: [eno1]}, b2: {interfaces: [eno1]}}}",
            "one master",
        ),
        ("{ethernets: {a-sixteen-bytes1: {}}}", "is 16 bytes"),
        ("{ethernets: {eno1: {}, eno2: {match: {name: eno1}}}}", "interface names must be unique"),
        (
            "{ethernets: {eno1: {}}, bonds: {bo: {interfaces: [eno1], parameters: {primary: eno2}}}}",
            "primary",
        ),
        (
            "{ethernets: {eno1: {}}, bridges: {br: {interfaces: [eno1], parameters: {stp: true, forward-delay: 0}}}}",
            "forward-delay must be 2–30 seconds",
        ),
        (
            "{ethernets: {eno1: {}}, bridges: {br: {interfaces: [eno1], kvmnet: {vlan-filtering: true, vlans: [10]}}},"
            " vlans: {v20: {id: 20, link: br}}}",
            "does not carry VLAN 20",
        ),
        (
            "{ethernets: {eno1: {}}, bridges: {br: {interfaces: [eno1], kvmnet: {vlans: [10]}}}}",
            "need `vlan-filtering: true`",
        ),
        (
            "{ethernets: {eno1: {}}, bridges: {br: {interfaces: [eno1], kvmnet: {vlan-filtering: true, "
            "ports: {eno1: {vlans: [10], untagged: [11]}}}}}}",
            "untagged VLAN 11 is not carried",
        ),
        ("{ethernets: {eno1: {}}, bridges: {br: {mtu: auto}}}", "needs at least one port"),
        ("{tunnels: {vx: {mode: vxlan, id: 3}}}", "needs local: (one of the host's addresses) or link:"),
        ("{ethernets: {eno1: {routes: [{to: 10.0.0.0/8, via: '2001:db8::1'}]}}}", "mixes IPv4 and IPv6"),
    ],
)
def test_cross_object_rules(network: str, message: str) -> None:
    errors = errors_of(f"hosts: {{hv1: {{network: {network}}}}}\n")
    assert any(message in e for e in errors), errors


def test_plan_does_not_depend_on_key_order() -> None:
    one = plan_of(FLEET)
    reordered = FLEET.replace("hosts: [a, b, c]", "hosts: [c, a, b]")
    assert plan_of(reordered) == one


def test_route_scope_is_written_only_where_it_changes_something() -> None:
    plan = plan_of(
        """
hosts:
  hv1:
    network:
      ethernets:
        eno1:
          addresses: [192.0.2.1/24, "2001:db8::1/64"]
          routes:
            - {to: 10.1.0.0/16, scope: link}
            - {to: 10.2.0.0/16, scope: global}
            - {to: 10.3.0.0/16, via: 192.0.2.254, scope: global}
            - {to: 10.4.0.0/16, via: 192.0.2.254, scope: link}
            - {to: "2001:db8:1::/48", via: "2001:db8::fe", scope: global}
"""
    )
    assert [r.scope for r in iface(plan, "hv1", "eno1").routes] == [None, "global", None, "link", None]
    errors = errors_of(
        "hosts: {hv1: {network: {ethernets: {eno1: {routes: [{to: '2001:db8::/32', scope: link}]}}}}}"
    )
    assert errors == [
        "p.yaml:1:82: hosts.hv1.network.ethernets.eno1.routes[0].scope: scope applies to IPv4 routes only; IPv6 routes have none"
    ]


def test_learn_packet_interval_takes_units_but_counts_whole_seconds() -> None:
    bond = "hosts: {hv1: {network: {ethernets: {e: {}}, bonds: {b: {interfaces: [e], parameters: {learn-packet-interval: %s}}}}}}"
    settings = iface(plan_of(bond % "3s"), "hv1", "b").bond
    assert settings is not None and settings.learn_packet_interval_ms == 3000
    assert (
        "learn-packet-interval must be whole seconds, at least 1s, got 1500ms"
        in errors_of(bond % "1500ms")[0]
    )


def test_bond_ports_take_the_bonds_mtu() -> None:
    base = "hosts: {hv1: {network: {ethernets: {e1: {%s}, e2: {}}, bonds: {b: {interfaces: [e1, e2], mtu: 9000}}}}}"
    plan = plan_of(base % "")
    assert (iface(plan, "hv1", "e1").mtu, iface(plan, "hv1", "e2").mtu) == (9000, 9000)
    assert iface(plan, "hv1", "e1").mtu_written is None
    assert errors_of(base % "mtu: 1500") == [
        "p.yaml:1:47: hosts.hv1.network.ethernets.e1.mtu: e1 is a port of bond b, which sets its ports "
        "to its own MTU (9000); remove mtu here or make it 9000"
    ]


_NAMES_WHY = (
    "hosts and guests are machines of one fleet (inventory.yaml, kvmnet verify), whose names must "
    "differ also when case is ignored (host names are case-insensitive, and the generated check "
    "modules lower-case them)"
)


def test_machine_names_differ_also_in_case() -> None:
    # The later one in the file is blamed; a guest rather than the host it collides with.
    text = """\
hosts:
  hv1: {}
  HV1: {}
guests:
  Hv1: {host: hv1}
  web1: {host: hv1}
  WEB1: {host: hv1}
"""
    assert errors_of(text) == [
        f"p.yaml:3:3: hosts.HV1: host 'HV1' differs from host 'hv1' only in case; {_NAMES_WHY}: rename this host",
        f"p.yaml:5:3: guests.Hv1: guest 'Hv1' differs from host 'hv1' only in case; {_NAMES_WHY}: "
        "rename this guest",
        f"p.yaml:7:3: guests.WEB1: guest 'WEB1' differs from guest 'web1' only in case; {_NAMES_WHY}: "
        "rename this guest",
    ]


def test_a_guest_named_like_a_host_is_refused_by_the_plan() -> None:
    # It used to be refused only by the inventory renderer: `validate` said ok.
    assert errors_of("hosts: {hv1: {}}\nguests: {hv1: {host: hv1}}\n") == [
        f"p.yaml:2:10: guests.hv1: guest 'hv1' has the name of host 'hv1'; {_NAMES_WHY}: rename this guest"
    ]


def test_a_tap_is_not_named_like_a_device_id() -> None:
    # The ethernet's networkd files are named by its id `lan`, whatever its kernel name.
    text = """\
hosts:
  hv1:
    network:
      ethernets:
        lan: {set-name: eth5, match: {macaddress: "52:54:00:00:00:01"}}
        eno2: {}
      bridges:
        br0: {interfaces: [eno2]}
guests:
  g1: {host: hv1, interfaces: [{bridge: br0, target: lan}, {bridge: br0, target: eth5}]}
"""
    assert errors_of(text) == [
        "p.yaml:10:54: guests.g1.interfaces[0].target: 'lan' is already the id of ethernet lan on host "
        "hv1 (named eth5 in the kernel); kvmnet names a device's networkd files by its id, so a tap needs "
        "a name that is no device id. Pick another name",
        "p.yaml:10:82: guests.g1.interfaces[1].target: 'eth5' is already the name of ethernet eth5 on host "
        "hv1; libvirt could not create the tap and the guest would not start. Pick another name",
    ]


def test_every_host_loads_what_libvirts_bandwidth_uses() -> None:
    """libvirt applies a guest NIC's <bandwidth> with tc on its tap (virnetdevbandwidth.c):
    inbound an htb class with an sfq leaf, outbound an ingress qdisc and a u32 filter with
    a police action. cls_u32 was missing: the generated check then could not tell a
    kernel without it from a module not loaded yet."""
    plan = plan_of("hosts:\n  hv1:\n    network:\n      ethernets:\n        eno1: {}\n")
    modules = {module for module, _ in plan.hosts[0].kernel.modules}
    assert {"sch_htb", "sch_sfq", "sch_ingress", "cls_u32", "act_police"} <= modules


TC = """
hosts:
  hv1:
    network:
      ethernets:
        eno1: {mtu: 9000}
        eno2: {}
        eno3: {addresses: [192.0.2.1/24]}
      tunnels:
        vx1: {mode: vxlan, id: 5, local: 192.0.2.1, remote: 192.0.2.2, link: eno3, mtu: auto}
    tc:
      eno1: {shape: {kind: tbf, rate: 100Mbit, burst: 64KiB}, qdisc: bfifo}
      eno2: {shape: {kind: htb, rate: 100Mbit}}
      vx1: {engine: networkd, qdisc: pfifo}
"""


def test_every_shaper_gets_a_leaf_and_a_fifo_its_kernel_sized_limit() -> None:
    host = plan_of(TC).hosts[0]
    tc = {t.device_id: t for t in host.tc}
    # No qdisc under eno2's htb: fq_codel, kvmnet's default, under its class 20:10.
    assert (tc["eno2"].qdisc, tc["eno2"].default_leaf, tc["eno2"].leaf_id) == ("fq_codel", True, "230:")
    assert tc["eno2"].fifo_limit is None
    # bfifo asked for on a 9000-MTU NIC: 1000 frames of 9000 + 14 bytes = 9,014,000 bytes.
    assert (tc["eno1"].qdisc, tc["eno1"].default_leaf, tc["eno1"].fifo_limit) == ("bfifo", False, 9_014_000)
    # pfifo on a VXLAN device (one TX queue) through networkd: 1000 packets, at the root.
    assert (tc["vx1"].fifo_limit, tc["vx1"].qdisc_parent, tc["vx1"].per_queue) == (1000, "root", False)
    # fq_codel's module is loaded; the FIFOs are built into every kernel (no module to load).
    modules = {name for name, _ in host.kernel.modules}
    assert "sch_fq_codel" in modules and not {"sch_fifo", "sch_pfifo", "sch_bfifo"} & modules
