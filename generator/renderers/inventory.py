"""`inventory.yaml`: the profile's hosts and guests as an Ansible inventory (YAML format).

Groups: `kvmnet_hosts` (hypervisors), `kvmnet_guests` (VMs) and `kvmnet_on_<host>` (the
guests of one hypervisor). Each machine is named as in the profile, so `kvmnet verify
--target ansible` runs each generated suite (test_host_<host>.py...) on its own machine
through testinfra's ansible backend.

`ansible_host` is the machine's management address, chosen from the plan: the first
address of the device that carries the default route; else the first static address of
a device that is not a tunnel (hosts) or of the first NIC that has one (guests). IPv4
before IPv6. A machine addressed only by DHCP has none: Ansible then connects to its
name (DNS), or set `ansible_host` in your own inventory. Guests get `ansible_user`: the
first profile user with an SSH key (the only logins their seed creates). Machine names
are unique across hosts and guests (the plan refuses a clash: plan/names.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

from generator import layout
from generator.plan.types import GuestPlan, HostPlan, Interface, Kind, Plan, Route
from generator.renderers import yamltext
from generator.renderers.artifact import Artifact
from generator.templating import GENERATED

HOSTS_GROUP = "kvmnet_hosts"
GUESTS_GROUP = "kvmnet_guests"
_DEFAULT = {"default", "0.0.0.0/0", "::/0"}


def guests_group(host: str) -> str:
    """Ansible group names are Python identifiers (it warns about '-')."""
    return "kvmnet_on_" + re.sub(r"[^A-Za-z0-9_]", "_", host)


def _pick(addresses: Sequence[str]) -> str | None:
    """The first IPv4 address (else the first IPv6 one), without its prefix length."""
    parsed = [ipaddress.ip_interface(a) for a in addresses]
    for version in (4, 6):
        for iface in parsed:
            if iface.version == version:
                return str(iface.ip)
    return None


def _has_default(routes: Sequence[Route], gateways: Sequence[str] = ()) -> bool:
    return bool(gateways) or any(r.destination in _DEFAULT for r in routes)


def host_address(host: HostPlan) -> tuple[str, str] | None:
    """(address, device id) by which to reach the host, or None."""
    candidates: list[Interface] = [
        i for i in host.interfaces if i.addresses and i.kind not in (Kind.GRE, Kind.GRETAP, Kind.VXLAN)
    ]
    routed = [i for i in candidates if _has_default(i.routes, i.gateways)]
    for iface in routed + candidates:
        if (address := _pick(iface.addresses)) is not None:
            return address, iface.id
    return None


def guest_address(guest: GuestPlan) -> tuple[str, str] | None:
    candidates = [n for n in guest.nics if n.addresses]
    routed = [n for n in candidates if _has_default(n.routes)]
    for nic in routed + candidates:
        if (address := _pick(nic.addresses)) is not None:
            return address, nic.name
    return None


def _host_vars(host: HostPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (found := host_address(host)) is not None:
        out["ansible_host"], out["kvmnet_management_device"] = found
    out["kvmnet_role"] = "host"
    return out


def _guest_vars(guest: GuestPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    found = guest_address(guest)
    if found is not None:
        out["ansible_host"] = found[0]
    user = next((u.name for u in guest.users if u.ssh_keys), None)
    if user is not None:
        out["ansible_user"] = user
    if found is not None:
        out["kvmnet_management_device"] = found[1]
    out["kvmnet_role"] = "guest"
    out["kvmnet_hypervisor"] = guest.host
    return out


def render(plan: Plan) -> list[Artifact]:
    children: dict[str, Any] = {HOSTS_GROUP: {"hosts": {h.name: _host_vars(h) for h in plan.hosts}}}
    if plan.guests:
        children[GUESTS_GROUP] = {"hosts": {g.name: _guest_vars(g) for g in plan.guests}}
        for host in plan.hosts:
            mine = [g.name for g in plan.guests if g.host == host.name]
            if mine:
                children[guests_group(host.name)] = {"hosts": {name: {} for name in mine}}
    text = (
        f"# {GENERATED}\n# An Ansible inventory of the profile's machines (kvmnet verify --target ansible).\n"
    )
    return [Artifact.text(layout.INVENTORY, text + yamltext.dump({"all": {"children": children}}))]
