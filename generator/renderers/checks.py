"""Generated check suites: a pytest/testinfra module per host and per guest, in `tests/`.

```
tests/pytest.ini             the suites' own pytest settings (markers, no cache in output/)
tests/conftest.py            the `machine` fixture; fleet runs keep each module on its machine
tests/kvmnet_checks.py       the checks, the same for every profile
tests/test_host_<host>.py    which checks apply to the host ...
tests/host_<host>.json       ... and the values they expect (renderers/expected.py)
tests/test_guest_<guest>.py, tests/guest_<guest>.json
```

The modules are Jinja templates (users read them: they must be plain, linted Python);
the library is generator/checks/kvmnet_checks.py, copied as it is; the expected state is
`json.dumps` of data. `kvmnet verify` runs them.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from generator import layout
from generator.plan.types import Kind, Plan
from generator.renderers.artifact import Artifact
from generator.renderers.expected import guest_state, host_state
from generator.templating import GENERATED
from generator.templating import render as render_template

if TYPE_CHECKING:
    from generator.checks.kvmnet_checks import GuestState, HostState


def _flat(data: Any) -> bool:
    return not isinstance(data, dict | list) or (
        isinstance(data, list) and not any(isinstance(v, dict | list) for v in data)
    )


def _json(data: Any, indent: str = "") -> str:
    """JSON for readers: one key per line, except lists of plain values and small flat objects."""
    inner = indent + "  "
    one_line = json.dumps(data)
    if isinstance(data, dict) and all(_flat(v) for v in data.values()) and len(inner + one_line) <= 100:
        text = one_line
    elif isinstance(data, dict) and data:
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in data.items()]
        text = "{\n" + ",\n".join(items) + f"\n{indent}}}"
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        text = "[\n" + ",\n".join(f"{inner}{_json(v, inner)}" for v in data) + f"\n{indent}]"
    else:
        text = one_line
    return text + ("\n" if not indent else "")


def _host_sections(state: HostState) -> set[str]:
    """Which groups of checks the host's module needs (a test over no entries is left out)."""
    links = state["links"]
    netdevs = {k.value for k in Kind if k.is_netdev}
    found = {
        "links": bool(links),
        "netdevs": any(link["kind"] in netdevs for link in links),
        "ports": any("master" in link for link in links),
        "addresses": any("addresses" in link for link in links),
        "vlans": any("vlan" in link for link in links),
        "vxlans": any("vxlan" in link for link in links),
        "fdb": any("fdb" in link for link in links),
        "offloads": any("offloads" in link for link in links),
        "gres": any("gre" in link for link in links),
        "stp": any("stp" in link.get("bridge", {}) for link in links),
        "bridges": any("bridge" in link for link in links),
        "port_vlans": any("port_vlans" in link for link in links),
        "roots": any("root" in q for q in state["qdiscs"]),
        "rates": any("rate" in q for q in state["qdiscs"]),
        "leaves": any("leaf" in q for q in state["qdiscs"]),
        "per_queue": any("per_queue" in q for q in state["qdiscs"]),
        "police": any("police" in q for q in state["qdiscs"]),
        "units": any("unit" in q for q in state["qdiscs"]),
        "sysctls": bool(state["sysctls"]),
        "modules": bool(state["modules"]),
        "cmdline": bool(state["cmdline"]),
        "routes": any("routes" in link for link in links),
        "dns": any("dns" in link for link in links),
        "resolver": state["resolver"] is not None,
        "firewall": bool(state["firewall"]),
        "users": bool(state["users"]),
        "keys": any(u["ssh_keys"] for u in state["users"]),
        "sudo": any(u["sudoers"] for u in state["users"]),
        "networks": bool(state["networks"]),
    }
    return {name for name, present in found.items() if present}


def _guest_sections(state: GuestState) -> set[str]:
    nics = state["nics"]
    found = {
        "nics": bool(nics),
        "addresses": any("addresses" in nic for nic in nics),
        "channels": any("channels" in nic for nic in nics),
        "rings": any("rx_ring" in nic for nic in nics),
        "sysctls": bool(state["sysctls"]),
    }
    return {name for name, present in found.items() if present}


def library() -> str:
    """tests/kvmnet_checks.py: generator/checks/kvmnet_checks.py as it is, under kvmnet's header."""
    source = resources.files("generator.checks").joinpath("kvmnet_checks.py").read_text(encoding="utf-8")
    return f"# {GENERATED}\n\n{source}"


def render(plan: Plan) -> list[Artifact]:
    out = [
        Artifact.text(layout.CHECKS_PYTEST_INI, render_template("checks/pytest.ini.j2")),
        Artifact.text(layout.CHECKS_CONFTEST, render_template("checks/conftest.py.j2")),
        Artifact.text(layout.CHECKS_LIBRARY, library()),
    ]
    for host in plan.hosts:
        expected = host_state(plan, host, GENERATED)
        data, module = layout.expected_state("host", host.name), layout.suite("host", host.name)
        out.append(Artifact.text(data, _json(expected)))
        text = render_template(
            "checks/host.py.j2",
            machine=host.name,
            module=layout.name_in_tests(module),
            data=layout.name_in_tests(data),
            sections=_host_sections(expected),
        )
        out.append(Artifact.text(module, text))
    for guest in plan.guests:
        state = guest_state(guest, GENERATED)
        data, module = layout.expected_state("guest", guest.name), layout.suite("guest", guest.name)
        out.append(Artifact.text(data, _json(state)))
        text = render_template(
            "checks/guest.py.j2",
            machine=guest.name,
            hypervisor=guest.host,
            module=layout.name_in_tests(module),
            data=layout.name_in_tests(data),
            sections=_guest_sections(state),
        )
        out.append(Artifact.text(module, text))
    return out
