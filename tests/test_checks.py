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
