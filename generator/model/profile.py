"""The whole profile: defaults, hosts, guests and fleet overlays, keyed by name."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from generator.model.base import Entries, Items, ReadOnly, StrictModel, no_entries
from generator.model.boot import BootService
from generator.model.guest import Guest, GuestSettings
from generator.model.host import Bootstrap, Distro, Install, Kernel, TrafficControl
from generator.model.network import Network
from generator.model.types import (
    DeviceId,
    Flag,
    InterfaceName,
    IPAddress,
    Label,
    MtuOrAuto,
    Ttl,
    UdpPort,
    Vni,
    fail,
    ranged,
)
from generator.model.users import User


def _version(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,3}\.[0-9]{1,3}", value):
        raise fail(f"a libvirt version is written like 9.0 or 11.2 (quote it in YAML), got {value!r}")
    return value


LibvirtVersion = Annotated[str, BeforeValidator(_version), WithJsonSchema({"type": "string"})]


class Host(StrictModel):
    """A hypervisor. Every key is optional: `hosts: {hv1: {}}` is a valid profile."""

    distro: Distro = "debian12"
    network: Network = Field(default_factory=Network)
    #: kvmnet: traffic control per device id.
    tc: Entries[DeviceId, TrafficControl] = Field(default_factory=no_entries)
    kernel: Kernel = Field(default_factory=Kernel)
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    install: Install = Field(default_factory=Install)
    #: The libvirt version on the host, when it differs from the distro's (Debian 12: 9.0,
    #: Ubuntu 22.04: 8.0, Ubuntu 24.04: 10.0, EL9: 10.5).
    libvirt_version: LibvirtVersion | None = None
    #: Login users of the host, in the guests' words; root stays locked unless a user
    #: named `root` is listed (its keys and password are then set).
    users: Items[User] = ()


class HostDefaults(Host):
    """Merged under every host: mappings key by key, lists and values replaced."""


class Defaults(StrictModel):
    host: HostDefaults = Field(default_factory=HostDefaults)
    #: Merged under every guest, the same way.
    guest: GuestSettings = Field(default_factory=GuestSettings)


class OverlayMember(StrictModel):
    #: The member's underlay device id, when it differs from the overlay's.
    underlay: DeviceId | None = None
    #: The VTEP address; by default the underlay's first static address.
    local: IPAddress | None = None


def _members(value: Any) -> Any:
    """`hosts: [hv1, hv2]` is shorthand for `hosts: {hv1: {}, hv2: {}}`."""
    if isinstance(value, list | tuple):
        seen: dict[Any, Any] = {}
        for item in value:
            if not isinstance(item, str):
                raise fail(f"overlay members are host names, got {item!r}")
            if item in seen:
                raise fail(f"host {item!r} is listed twice")
            seen[item] = {}
        return seen
    if isinstance(value, Mapping):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


class Overlay(StrictModel):
    """kvmnet extension: one VXLAN segment across hosts, declared once.

    On every member kvmnet writes the VXLAN netdev bound to the underlay, attaches it to
    `bridge` (creating the bridge unless the host declares it) and adds one static
    `[BridgeFDB]` entry per other member (all-zero MAC -> that member's VTEP), so
    broadcast and unknown traffic reaches every peer without multicast.
    """

    vni: Vni
    hosts: Annotated[
        ReadOnly[Label, OverlayMember],
        BeforeValidator(_members),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    {"type": "object", "additionalProperties": OverlayMember.model_json_schema()},
                ]
            }
        ),
    ]
    underlay: DeviceId | None = None
    bridge: InterfaceName
    #: Name of the VXLAN device; default `vx<vni>`.
    device: InterfaceName | None = None
    #: IANA's VXLAN port; Linux would otherwise use 8472, which other VTEPs do not expect.
    port: UdpPort = 4789
    ttl: Ttl | None = None
    mtu: MtuOrAuto = "auto"
    mac_learning: Flag = True


class Profile(StrictModel):
    """The validated profile every later stage reads."""

    version: Annotated[int, ranged(1, 1, "profile version", " (the only version so far)")] = 1
    defaults: Defaults = Field(default_factory=Defaults)
    hosts: Entries[Label, Host] = Field(default_factory=no_entries)
    guests: Entries[Label, Guest] = Field(default_factory=no_entries)
    overlays: Entries[Label, Overlay] = Field(default_factory=no_entries)
    #: The fleet's PXE boot service (output/pxe/); none without this section.
    pxe: BootService | None = None
