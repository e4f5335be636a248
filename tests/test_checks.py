"""The generated check suites and inventory, read by the programs that consume them.

Users read and run `output/tests/` themselves, so it must be plain, clean Python: ruff
and mypy --strict pass on it as on kvmnet's own code, and pytest collects exactly the
machine's checks. `inventory.yaml` is read by Ansible's own `ansible-inventory`. Whether
the checks pass or fail on real machines is tests/test_verify_live.py and tests/test_lab.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from generator import layout
from generator.pipeline import build, plan_profile

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
BIN = Path(sys.executable).parent
RUFF_RULES = "E,F,W,I,B,UP,SIM,RUF,C4,RET,PIE"


def _built(profile: Path, tmp_path: Path) -> Path:
    output = tmp_path / "output"
    build(profile, output)
    return output


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_suites_are_clean_python(profile: Path, tmp_path: Path) -> None:
    tests = _built(profile, tmp_path) / layout.TESTS
    # --isolated: the user's directory, not kvmnet's pyproject.toml, is what applies there.
    lint = _run(
        str(BIN / "ruff"),
        "check",
        "--isolated",
        "--select",
        RUFF_RULES,
        "--line-length",
        "110",
        ".",
        cwd=tests,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(str(BIN / "ruff"), "format", "--isolated", "--line-length", "110", "--check", ".", cwd=tests)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.consumer
@pytest.mark.parametrize("name", ["default", "guests"])
def test_suites_pass_mypy_strict(name: str, tmp_path: Path) -> None:
    """default and guests between them have every group of checks a module can hold."""
    tests = _built(REPO / "profiles" / f"{name}.yaml", tmp_path) / layout.TESTS
    typed = _run(
        str(BIN / "mypy"),
        "--strict",
        "--no-incremental",
        "--cache-dir",
        str(tmp_path / "mypy"),
        ".",
        cwd=tests,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr


@pytest.mark.consumer
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_pytest_collects_each_machines_checks(profile: Path, tmp_path: Path) -> None:
    """pytest with testinfra collects every module, one test per planned entry, none erroring."""
    output = _built(profile, tmp_path)
    tests = output / layout.TESTS
    planned = plan_profile(profile).plan
    collected = _run(
        *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-c", "pytest.ini", "--hosts=local://"),
        cwd=tests,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    for host in planned.hosts:
        state = json.loads((output / layout.expected_state("host", host.name)).read_text())
        mine = [i for i in ids if i.startswith(f"{layout.name_in_tests(layout.suite('host', host.name))}::")]
        # every planned device gets an existence and an MTU check, every sysctl one check
        assert sum("::test_link_exists[" in i for i in mine) == len(state["links"])
        assert sum("::test_mtu[" in i for i in mine) == len(state["links"])
        assert sum("::test_sysctl[" in i for i in mine) == len(state["sysctls"])
    for guest in planned.guests:
        mine = [
            i for i in ids if i.startswith(f"{layout.name_in_tests(layout.suite('guest', guest.name))}::")
        ]
        assert sum("::test_nic_exists[" in i for i in mine) == len(guest.nics)
        assert sum("::test_nic_mtu[" in i for i in mine) == len(guest.nics)
    assert not list(tests.glob("__pycache__")) and not (tests / ".pytest_cache").exists()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_inventory_as_ansible_reads_it(profile: Path, tmp_path: Path) -> None:
    output = _built(profile, tmp_path)
    planned = plan_profile(profile).plan
    listed = _run(str(BIN / "ansible-inventory"), "-i", layout.INVENTORY, "--list", cwd=output)
    assert listed.returncode == 0, listed.stderr
    assert "WARNING" not in listed.stderr, listed.stderr
    data: dict[str, Any] = json.loads(listed.stdout)
    hostvars = data["_meta"]["hostvars"]
    hosts = {h.name for h in planned.hosts}
    guests = {g.name for g in planned.guests}
    assert set(hostvars) == hosts | guests
    assert set(data.get("kvmnet_hosts", {}).get("hosts", [])) == hosts
    assert set(data.get("kvmnet_guests", {}).get("hosts", [])) == guests
    for guest in planned.guests:
        assert hostvars[guest.name]["kvmnet_hypervisor"] == guest.host
    planned_addresses = {h.name: [a for i in h.interfaces for a in i.addresses] for h in planned.hosts}
    planned_addresses |= {g.name: [a for n in g.nics for a in n.addresses] for g in planned.guests}
    for name, values in hostvars.items():
        assert values["kvmnet_role"] == ("host" if name in hosts else "guest")
        if "ansible_host" in values:  # one of the machine's own planned addresses
            assert values["ansible_host"] in {a.split("/")[0] for a in planned_addresses[name]}


# --- which checks each machine gets ----------------------------------------------------------

_HV = {  # default.yaml's hv1 and hv2 are alike (a YAML anchor shares tc and kernel)
    # eno1, eno2, br-guest, mgmt100, gre-peer, and the tenant overlay's vx10010 and br-tenant
    "test_link_exists": 7,
    "test_kind": 5,  # all but the two ethernets
    "test_mtu": 7,
    "test_master": 2,  # eno2 in br-guest, vx10010 in br-tenant
    "test_addresses": 3,  # eno1, mgmt100, gre-peer
    "test_routes": 1,  # eno1: default via 192.0.2.1
    "test_dns_servers": 1,  # eno1: 192.0.2.53, search example.net
    "test_dns_resolves": 1,
    "test_vlan": 1,
    "test_vxlan": 1,
    "test_vxlan_fdb": 1,  # vx10010: the other member's VTEP
    "test_gre": 1,
    "test_stp": 1,  # br-guest says stp: false; the overlay's bridge says nothing
    "test_vlan_filtering": 2,
    "test_port_vlans": 2,  # br-guest itself (vlans: [100]) and its port eno2
    "test_root_qdisc": 2,  # eno1 fq, eno2 tbf
    "test_shaping_rate": 1,  # eno2
    "test_leaf_qdisc": 1,  # eno2: kvmnet's default fq_codel under its tbf
    "test_per_queue_qdiscs": 1,  # eno1's fq, under mq when it has several TX queues
    "test_sysctl": 6,  # three net.core.*, and bridge-nf-call-* because the host has bridges
    # 5 for libvirt <bandwidth>, vhost_net, bridge, 8021q, vxlan, ip_gre, sch_fq, sch_tbf, sch_fq_codel
    "test_module_loaded": 13,
    "test_kernel_argument": 2,
    "test_tc_unit_enabled": 2,
    "test_tc_unit_active": 2,
    "test_libvirt_network": 2,  # one per bridge: br-guest, br-tenant
    # Debian 12's stack: qemu-system-x86, qemu-utils, libvirt-daemon-system, libvirt-clients
    "test_package_installed": 4,
}
_WEB = {  # one NIC on br-tenant with an address and rx-ring; ipv6: disabled
    "test_nic_exists": 1,
    "test_nic_mtu": 1,
    "test_nic_ipv6": 1,
    "test_nic_addresses": 1,
    "test_nic_channels": 1,  # min(queues, 4 vCPUs)
    "test_nic_rx_ring": 1,
    "test_sysctl": 2,  # disable_ipv6 for all and default
}
#: Every test function of every generated suite, with how many entries it checks, worked out
#: from the profile by hand. A group of checks that the expected state stops writing, that
#: renderers/checks.py stops selecting, or that a template drops, fails here.
CHECK_GROUPS = {
    "default": {
        # hv1 alone has a user, ops: an SSH key, a sudo rule (so sudo is installed too)
        "test_host_hv1": {
            **_HV,
            "test_package_installed": 5,
            "test_user_exists": 1,
            "test_user_keys": 1,
            "test_user_sudo": 1,
        },
        "test_host_hv2": _HV,
        "test_guest_web1": _WEB,
        "test_guest_web2": _WEB,
    },
    "tuned": {
        "test_host_tune1": {
            "test_link_exists": 5,  # ens1-ens4 and br-guests
            "test_kind": 1,
            "test_mtu": 5,
            "test_master": 1,  # ens3
            "test_addresses": 1,  # ens1
            "test_routes": 1,  # ens1: default via 192.0.2.1
            "test_stp": 1,
            "test_vlan_filtering": 1,
            "test_root_qdisc": 4,  # ens1 fq_codel, ens2, ens4 and ens3 (br-guests' port) htb
            "test_shaping_rate": 3,  # all but ens1
            # fq_codel under each htb: ens2's asked for, ens4's and ens3's kvmnet's default
            "test_leaf_qdisc": 3,
            "test_per_queue_qdiscs": 1,  # ens1's fq_codel (no shaper, service engine)
            "test_ingress_policing": 1,  # ens1
            "test_tc_unit_enabled": 3,  # ens3 has engine: networkd, no unit
            "test_tc_unit_active": 3,
            # 4 of the profile's, 2 of ipv6: disabled, 3 bridge-nf-call-*
            "test_sysctl": 9,
            "test_module_loaded": 10,  # the 6 libvirt/vhost ones, bridge, cls_matchall, sch_fq_codel, tcp_bbr
            "test_libvirt_network": 1,  # br-guests
            "test_package_installed": 4,  # Debian 12's QEMU and libvirt packages
        }
    },
}


#: Imports every suite in the current directory and prints, per suite, its test functions and
#: how many entries each is parametrized over. In a fresh interpreter: no kvmnet_checks cached
#: from another build, and none of this repository's pytest settings (its strict markers).
_COUNT_GROUPS = """
import importlib, json, pathlib, sys
sys.path.insert(0, ".")
found = {}
for path in sorted(pathlib.Path(".").glob("test_*.py")):
    module = importlib.import_module(path.stem)
    found[path.stem] = {
        name: len(mark.args[1])
        for name, function in vars(module).items()
        if name.startswith("test_")
        for mark in getattr(function, "pytestmark", [])
        if mark.name == "parametrize"
    }
print(json.dumps(found))
"""


def _check_groups(tests: Path) -> dict[str, dict[str, int]]:
    counted = _run(sys.executable, "-B", "-c", _COUNT_GROUPS, cwd=tests)
    assert counted.returncode == 0, counted.stderr
    found: dict[str, dict[str, int]] = json.loads(counted.stdout)
    return found


@pytest.mark.parametrize("name", sorted(CHECK_GROUPS))
def test_each_machine_gets_its_groups_of_checks(name: str, tmp_path: Path) -> None:
    tests = _built(REPO / "profiles" / f"{name}.yaml", tmp_path) / layout.TESTS
    assert _check_groups(tests) == CHECK_GROUPS[name]
