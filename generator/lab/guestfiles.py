"""What a guest's generated files tell the lab, read the way their consumers read them.

- `domain.xml` is what libvirt makes the taps from: MAC, bridge (or the libvirt network,
  whose XML names the bridge), tap name (`<target dev>`), MTU, VLAN tag, queue pairs;
- `nocloud/network-config` is what cloud-init configures in the guest: per NIC matched
  by MAC, its name, MTU, addresses and routes;
- the sysctl drop-in that `nocloud/user-data` writes (`write_files`) is the guest's IPv6
  policy.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from generator.errors import Diagnostic
from generator.lab.names import LabError
from generator.layout import GUEST_SYSCTL, domain_xml, guest_seed, libvirt_network


@dataclass(frozen=True)
class DomainNic:
    """One `<interface>` of a domain: what libvirt would create on the host."""

    mac: str
    bridge: str
    target: str | None  # the tap's name if the XML fixes it; libvirt picks vnetN otherwise
    mtu: int | None
    vlan: int | None
    queues: int | None


@dataclass(frozen=True)
class GuestNicConfig:
    """One `ethernets:` entry of network-config: what cloud-init sets up in the guest."""

    mac: str
    name: str
    mtu: int | None
    addresses: tuple[str, ...]
    routes: tuple[tuple[str, str | None], ...]  # (to, via)
    dhcp4: bool


def _fail(path: Path, message: str) -> LabError:
    return LabError([Diagnostic(f"{path}: {message}")])


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def domain_nics(output: Path, host: str, guest: str) -> tuple[DomainNic, ...]:
    path = output / domain_xml(guest)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise _fail(path, f"cannot be read as libvirt domain XML: {exc}") from None
    nics = []
    for iface in root.iterfind("devices/interface"):
        mac = iface.find("mac")
        source = iface.find("source")
        if mac is None or source is None:
            raise _fail(path, "an <interface> without <mac> or <source>")
        if iface.get("type") == "network":
            bridge = _network_bridge(output, host, source.get("network", ""))
        else:
            bridge = source.get("bridge", "")
        target, mtu, tag, driver = (iface.find(x) for x in ("target", "mtu", "vlan/tag", "driver"))
        nics.append(
            DomainNic(
                mac=mac.get("address", "").lower(),
                bridge=bridge,
                target=None if target is None else target.get("dev"),
                mtu=None if mtu is None else _int(mtu.get("size")),
                vlan=None if tag is None else _int(tag.get("id")),
                queues=None if driver is None else _int(driver.get("queues")),
            )
        )
    return tuple(nics)


def _network_bridge(output: Path, host: str, network: str) -> str:
    path = output / libvirt_network(host, network)
    try:
        bridge = ET.parse(path).getroot().find("bridge")
    except (OSError, ET.ParseError) as exc:
        raise _fail(path, f"cannot be read as libvirt network XML: {exc}") from None
    if bridge is None or not bridge.get("name"):
        raise _fail(path, "the network names no <bridge name=...>")
    return str(bridge.get("name"))


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(path, f"cannot be read as YAML: {exc}") from None


def network_config(output: Path, guest: str) -> tuple[GuestNicConfig, ...]:
    path = output / guest_seed(guest).network_config
    data = _yaml(path)
    ethernets: Mapping[str, Any] = (data or {}).get("ethernets") or {}
    out = []
    for key, entry in ethernets.items():
        mac = str((entry.get("match") or {}).get("macaddress", "")).lower()
        if not mac:
            raise _fail(path, f"ethernets.{key} is not matched by MAC; the lab cannot tell which NIC it is")
        routes: Sequence[Mapping[str, Any]] = entry.get("routes") or ()
        out.append(
            GuestNicConfig(
                mac=mac,
                name=str(entry.get("set-name", key)),
                mtu=_int(entry.get("mtu")),
                addresses=tuple(str(a) for a in entry.get("addresses") or ()),
                routes=tuple((str(r["to"]), None if r.get("via") is None else str(r["via"])) for r in routes),
                dhcp4=bool(entry.get("dhcp4", False)),
            )
        )
    return tuple(out)


def sysctl_text(output: Path, guest: str) -> str:
    """The sysctl drop-in user-data writes ("" if it writes none)."""
    path = output / guest_seed(guest).user_data
    data = _yaml(path) or {}
    for entry in data.get("write_files") or ():
        if entry.get("path") == GUEST_SYSCTL:
            return str(entry.get("content", ""))
    return ""
