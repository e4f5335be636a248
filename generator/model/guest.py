"""A guest: a libvirt domain on one host, and the cloud-init seed that configures it.

Vocabulary follows libvirt where it has words (queues, bandwidth inbound/outbound,
average/peak/burst/floor, host/guest offloads) and netplan for addresses, so the knobs
read like the documentation users know. Values are checked here one at a time; what
depends on the host (the bridge exists, its MTU) is checked in the plan.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from generator.load import Text
from generator.model.base import Items, StrictModel
from generator.model.frozen import frozen_dict
from generator.model.network import Nameservers
from generator.model.types import (
    Flag,
    InterfaceName,
    IPAddress,
    IPInterface,
    Label,
    MacAddress,
    RouteDestination,
    fail,
    int_range,
    ranged,
    whole_schema,
)
from generator.model.units import DiskSize, MemorySize, Rate, Size
from generator.model.users import User


class Inbound(StrictModel):
    average: Rate | None = None
    peak: Rate | None = None
    burst: Size | None = None
    #: Guaranteed minimum; libvirt honours it only on NAT, routed or isolated networks.
    floor: Rate | None = None


class Outbound(StrictModel):
    #: Known to libvirt but refused by it here: say why rather than "unknown key".
    REFUSED_KEYS: ClassVar[dict[str, str]] = {
        "floor": "libvirt guarantees a floor on inbound traffic only ('floor' attribute allowed "
        "only in <inbound> element); leave it out"
    }

    average: Rate | None = None
    #: Accepted by libvirt's schema but ignored (outbound traffic is policed, not shaped).
    peak: Rate | None = None
    burst: Size | None = None


class Bandwidth(StrictModel):
    inbound: Inbound | None = None
    outbound: Outbound | None = None


class HostOffloads(StrictModel):
    """The tap side (`<driver><host .../>`). All default on: only `false` is written."""

    csum: Flag | None = None
    gso: Flag | None = None
    tso4: Flag | None = None
    tso6: Flag | None = None
    ecn: Flag | None = None
    ufo: Flag | None = None
    mrg_rxbuf: Flag | None = None


class GuestOffloads(StrictModel):
    """The guest side (`<driver><guest .../>`). All default on: only `false` is written."""

    csum: Flag | None = None
    tso4: Flag | None = None
    tso6: Flag | None = None
    ecn: Flag | None = None
    ufo: Flag | None = None


class Offloads(StrictModel):
    host: HostOffloads = Field(default_factory=HostOffloads)
    guest: GuestOffloads = Field(default_factory=GuestOffloads)


def _number_or_auto(value: Any) -> bool:
    """True for what `int_range` reads as a number (`_queues`, `_mtu` then check its range)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (
        isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()) is not None
    )


#: A tap has at most 256 queues (the kernel's MAX_TAP_QUEUES); libvirt's schema takes more.
MAX_QUEUES = 256
_queue_range = int_range(
    1,
    MAX_QUEUES,
    "queues",
    f" (a tap has at most {MAX_QUEUES} queues; libvirt's schema would take more and the guest "
    "would fail to start)",
)


def _queues(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if not _number_or_auto(value):
        raise fail(f"queues must be a number of queue pairs or 'auto' (as many as vCPUs), got {value!r}")
    return _queue_range(value)


Queues = Annotated[
    int | Literal["auto"],
    BeforeValidator(_queues),
    WithJsonSchema({"anyOf": [*whole_schema(1, MAX_QUEUES), {"const": "auto"}]}),
]

_mtu_range = int_range(68, 65_535, "mtu", " (68 is the IPv4 minimum)")


def _mtu(value: Any) -> int | str:
    if value == "auto":
        return "auto"
    if not _number_or_auto(value):
        raise fail(f"mtu must be a number or 'auto' (the bridge's MTU), got {value!r}")
    return _mtu_range(value)


GuestMtu = Annotated[
    int | Literal["auto"],
    BeforeValidator(_mtu),
    WithJsonSchema({"anyOf": [*whole_schema(68, 65_535), {"const": "auto"}]}),
]

#: `rx_queue_size` values QEMU accepts for virtio-net.
RINGS = (256, 512, 1024)


def _ring(value: Any) -> int:
    number = int_range(0, 65_535, "rx-ring")(value)
    if number not in RINGS:
        raise fail(
            f"rx-ring must be one of {', '.join(map(str, RINGS))} (QEMU's rx_queue_size), got {number}"
        )
    return number


RxRing = Annotated[
    int,
    BeforeValidator(_ring),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(RINGS)},
                {"type": "string", "pattern": rf"^\s*\+?0*({'|'.join(map(str, RINGS))})\s*$"},
            ]
        }
    ),
]


_ROUTE_DROPPED = (
    "cloud-init 22.4 reads only to and via from a network-config route and drops the rest "
    "(seen with its networkd renderer)"
)


class GuestRoute(StrictModel):
    """A route in the guest's network-config: what cloud-init 22.4 carries over from v2
    (`network_state._v2_common` keeps `to` and `via`; metric, table... are dropped)."""

    #: netplan route keys cloud-init would drop without a word.
    REFUSED_KEYS: ClassVar[dict[str, str]] = dict.fromkeys(
        ("metric", "from", "on-link", "table", "scope", "type"), _ROUTE_DROPPED
    )

    to: RouteDestination
    via: IPAddress | None = None


class GuestInterface(StrictModel):
    #: `tx_queue_size` is honoured for vhost-user only, and a guest's NIC here is a tap.
    REFUSED_KEYS: ClassVar[dict[str, str]] = {
        "tx-ring": "tx_queue_size is honoured only for vhost-user backends; with a tap and vhost-net "
        "QEMU caps it at 256 or refuses it. Leave it out."
    }

    #: A bridge of the guest's host (`<interface type='bridge'>`), or
    bridge: InterfaceName | None = None
    #: a libvirt network kvmnet defines on the host for one of its bridges.
    network: InterfaceName | None = None
    model: Literal["virtio", "e1000e", "rtl8139"] = "virtio"
    #: Queue pairs (`<driver queues=>`); `auto` = one per vCPU.
    queues: Queues = "auto"
    #: Channels the guest uses (`ethtool -L combined`), to cap them below the queue pairs;
    #: default min(queues, vCPUs), what virtio_net already picks.
    channels: Annotated[int, ranged(1, 256, "channels")] | None = None
    #: virtio ring size (`rx_queue_size`): 256, 512 or 1024.
    rx_ring: RxRing | None = None
    mtu: GuestMtu = "auto"
    mac: MacAddress | None = None
    #: The tap's name on the host (`<target dev=>`); libvirt picks vnetN if unset.
    target: InterfaceName | None = None
    bandwidth: Bandwidth | None = None
    offloads: Offloads | None = None
    #: An 802.1Q tag on the guest's port (`<vlan><tag>`): on a Linux bridge only from libvirt 11.
    vlan: Annotated[int, ranged(1, 4094, "VLAN id")] | None = None
    # Guest-side addressing, in netplan's words (the network-config of the seed).
    addresses: Items[IPInterface] = ()
    routes: Items[GuestRoute] = ()
    nameservers: Nameservers | None = None
    dhcp4: Flag | None = None

    @model_validator(mode="after")
    def _one_attachment(self) -> GuestInterface:
        if (self.bridge is None) == (self.network is None):
            raise fail("give exactly one of bridge: (a host bridge) or network: (a libvirt network)")
        return self


_PATH = re.compile(r"/[A-Za-z0-9._/+-]+")


def _path(value: Any) -> str:
    if not isinstance(value, str) or not _PATH.fullmatch(value) or "/../" in value or value.endswith("/.."):
        raise fail(f"{value!r} is not an absolute path of letters, digits and . _ / + -")
    return value


AbsPath = Annotated[str, BeforeValidator(_path), WithJsonSchema({"type": "string"})]


class Disk(StrictModel):
    #: The golden image the guest's disk is a copy-on-write overlay of.
    image: AbsPath | None = None
    #: Written as a profile would (the schema's default is what an editor inserts).
    size: DiskSize = Field(default="20GiB", validate_default=True)
    bus: Literal["virtio", "scsi", "sata"] = "virtio"


def _yaml_typed(value: Any) -> Any:
    """Extra cloud-config with YAML's own types (the loader keeps scalars as text)."""
    if isinstance(value, Text):
        return value.typed()
    if isinstance(value, dict):
        return {str(k): _yaml_typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_typed(v) for v in value]
    return value


#: Free-form, as YAML typed it; read-only once validated (a FrozenDict, lists as tuples).
CloudConfig = Annotated[dict[str, Any], BeforeValidator(_yaml_typed), AfterValidator(frozen_dict)]


class GuestSettings(StrictModel):
    """Everything a guest takes besides its host; `defaults.guest` has the same keys."""

    vcpus: Annotated[int, ranged(1, 4096, "vcpus")] | None = None
    memory: MemorySize | None = None
    machine: Literal["q35", "pc"] | None = None
    firmware: Literal["bios", "uefi"] | None = None
    #: `kvm` for real hypervisors; `qemu` (software emulation) where KVM is not usable.
    virt_type: Literal["kvm", "qemu"] | None = None
    disk: Disk | None = None
    interfaces: Items[GuestInterface] | None = None
    ipv6: Literal["enabled", "disabled"] | None = None
    users: Items[User] | None = None
    hostname: Label | None = None
    #: Extra cloud-config merged into the user-data (top-level keys of cloud-init 22.4).
    cloud_config: CloudConfig | None = None


class Guest(GuestSettings):
    host: Label
