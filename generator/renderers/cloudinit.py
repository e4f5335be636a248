"""cloud-init NoCloud seeds: user-data, meta-data and network-config for every guest.

YAML from data (yaml.safe_dump), never from a text template. cloud-init 22.4 has no
sysctl or ethtool module and runs `bootcmd` before `write_files`, so tuning files are
written with write_files and applied from runcmd on the first boot. Its networkd renderer
drops accept-ra, link-local and offloads from network-config (FACTS): IPv6-off is a
sysctl drop-in, not a network-config setting. user-data may carry password hashes and
keys, so it is written 0600.
"""

from __future__ import annotations

from typing import Any

from generator import layout
from generator.model.frozen import thawed
from generator.plan.types import (
    GuestPlan,
    NicLink,
    NicTuningUnit,
    Plan,
    Route,
    SysctlDropIn,
    UserPlan,
)
from generator.plan.users import SUDO_RULE
from generator.renderers import guestfiles, yamltext
from generator.renderers.artifact import MODE_FILE, MODE_SECRET, Artifact
from generator.templating import GENERATED


def _dump(data: Any) -> str:
    return yamltext.dump(data)


def _write_files(guest: GuestPlan) -> list[dict[str, str]]:
    """The guest's files (plan/guestfiles.py) as write_files entries."""
    return [
        {"path": file.path, "permissions": f"{file.mode:04o}", "content": content}
        for file, content in guestfiles.rendered(guest)
    ]


def _runcmd(guest: GuestPlan) -> list[list[str]]:
    """What applies the guest's files on the first boot (write_files runs after bootcmd)."""
    runcmd: list[list[str]] = []
    if any(isinstance(f, SysctlDropIn) for f in guest.files):
        runcmd.append(["sysctl", "--system"])
    if any(isinstance(f, NicLink) for f in guest.files):
        # .link files apply on udev "add" events only; the unit covers kernels that
        # ignore CombinedChannels= (and applies the same values right away).
        runcmd.append(["udevadm", "trigger", "--action=add", "--subsystem-match=net"])
    for unit in (f for f in guest.files if isinstance(f, NicTuningUnit)):
        runcmd += [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit.name]]
    return runcmd


def user_data(guest: GuestPlan) -> str:
    data: dict[str, Any] = {"hostname": guest.hostname, "preserve_hostname": False}
    if guest.users:
        data["users"] = [_user(u) for u in guest.users]
    extra = thawed(guest.cloud_config)
    own: dict[str, list[Any]] = {
        "write_files": _write_files(guest),
        "runcmd": _runcmd(guest),
        "bootcmd": [],
        "packages": [],
    }
    for key, items in own.items():
        combined = [*items, *extra.pop(key, [])]  # the profile's extra entries after kvmnet's
        if combined:
            data[key] = combined
    data.update(extra)
    return f"#cloud-config\n# {GENERATED}\n" + _dump(data)


def _user(user: UserPlan) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": user.name, "shell": user.shell, "lock_passwd": user.passwd is None}
    if user.passwd:
        entry["hashed_passwd"] = user.passwd
    if user.sudo:
        entry["sudo"] = SUDO_RULE
    if user.groups:
        entry["groups"] = list(user.groups)
    if user.ssh_keys:
        entry["ssh_authorized_keys"] = list(user.ssh_keys)
    return entry


def network_config(guest: GuestPlan) -> str:
    ethernets: dict[str, Any] = {}
    for nic in guest.nics:
        entry: dict[str, Any] = {"match": {"macaddress": nic.mac}, "set-name": nic.name, "mtu": nic.mtu}
        if nic.addresses:
            entry["addresses"] = list(nic.addresses)
        if nic.routes:
            # cloud-init 22.4 does not take `to: default` (it fails on "Address default is not
            # a valid ip address"): the plan writes 0.0.0.0/0.
            entry["routes"] = [_route(r) for r in nic.routes]
        if nic.dns or nic.domains:
            entry["nameservers"] = {
                **({"addresses": list(nic.dns)} if nic.dns else {}),
                **({"search": list(nic.domains)} if nic.domains else {}),
            }
        entry["dhcp4"] = nic.dhcp4
        if guest.ipv6 == "disabled":
            entry["dhcp6"] = False
            entry["accept-ra"] = False
        if nic.optional:
            # A NIC listed but missing would hold the boot for two minutes.
            entry["optional"] = True
        ethernets[nic.name] = entry
    return f"# {GENERATED}\n" + _dump({"version": 2, "ethernets": ethernets})


def _route(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"to": route.destination}
    if route.gateway:
        out["via"] = route.gateway
    return out


def meta_data(guest: GuestPlan) -> str:
    # The guest's identity, not its seed's content: with a content hash, any profile change
    # made cloud-init take the guest for a new machine on its next boot (new SSH host keys,
    # users and runcmd again). An existing guest keeps its first seed's once-per-instance
    # work; its generated suite reports what differs from the profile (docs/guests.md).
    return f"# {GENERATED}\n" + _dump(
        {"instance-id": f"iid-kvmnet-{guest.uuid}", "local-hostname": guest.hostname}
    )


def files_for(guest: GuestPlan) -> list[Artifact]:
    seed = layout.guest_seed(guest.name)
    user = user_data(guest)
    network = network_config(guest)
    return [
        Artifact.text(seed.user_data, user, MODE_SECRET),
        Artifact.text(seed.meta_data, meta_data(guest), MODE_FILE),
        Artifact.text(seed.network_config, network, MODE_FILE),
    ]


def render(plan: Plan) -> list[Artifact]:
    return [artifact for guest in plan.guests for artifact in files_for(guest)]
