"""Each host's bootstrap.sh: installs its rootfs/ by checksum and applies what changed.

A delivery renderer: it embeds the sha256 and mode of every rootfs file rendered
before it, so the script refuses a rootfs/ that is not the one it was built with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from generator import layout
from generator.layout import from_root
from generator.plan.types import HostPlan, Plan, TcEngine
from generator.plan.users import SUDO_RULE
from generator.renderers.artifact import MODE_SCRIPT, Artifact
from generator.renderers.bundle import by_host
from generator.templating import render as render_template


@dataclass(frozen=True, slots=True)
class Entry:
    sha256: str
    mode: str  # "0644"
    path: str  # relative to the root, e.g. "etc/sysctl.d/90-kvmnet.conf"


@dataclass(frozen=True, slots=True)
class Paths:
    """The layout as the script's bash uses it: paths relative to the root (`etc/...`),
    and the bash patterns (`[[ $path == PATTERN ]]`, where `*` also matches `/`) by which
    it sorts changed files into what to reload. Made from generator/layout.py, so the
    script looks where the renderers write (tests/test_layout.py: every rootfs file
    of the bundled profiles falls under one of the patterns)."""

    rootfs: str  # the directory beside the script
    hosts: str  # the output's directory of hosts (named in a message)
    state: str
    reboot_marker: str  # in `state`
    unit_dir: str
    network: str
    netdev: str
    link: str
    sysctl: str
    udev_rules: str
    modules: str
    units: str
    cmdline: str
    grub: str
    tc_unit: str
    tc_dir: str
    tc_suffix: str
    tc_batch: str
    tc_unit_prefix: str
    tc_unit_suffix: str
    resolv_conf: str
    resolved_unit: str
    networks: str  # the libvirt networks beside the script
    network_suffix: str
    network_state: str
    sudoers_dir: str
    firstboot_unit: str

    def patterns(self) -> tuple[str, ...]:
        """Every pattern that sorts a rootfs file into what to apply."""
        return (
            self.network,
            self.netdev,
            self.link,
            self.sysctl,
            self.udev_rules,
            self.modules,
            self.units,
            self.cmdline,
            self.grub,
            self.tc_unit,
            self.tc_batch,
        )


def _in(directory: str, pattern: str) -> str:
    return f"{from_root(directory)}/{pattern}"


PATHS = Paths(
    rootfs=layout.ROOTFS,
    hosts=layout.HOSTS,
    state=from_root(layout.STATE_DIR),
    reboot_marker=str(PurePosixPath(layout.REBOOT_MARKER).relative_to(layout.STATE_DIR)),
    unit_dir=from_root(layout.UNIT_DIR),
    network=_in(layout.NETWORKD_DIR, "*.network"),
    netdev=_in(layout.NETWORKD_DIR, "*.netdev"),
    link=_in(layout.NETWORKD_DIR, "*.link"),
    sysctl=_in(layout.SYSCTL_DIR, "*"),
    udev_rules=_in(layout.UDEV_RULES_DIR, "*.rules"),
    modules=_in(layout.MODULES_LOAD_DIR, "*"),
    units=_in(layout.UNIT_DIR, "*"),
    cmdline=from_root(layout.KERNEL_CMDLINE),
    grub=_in(layout.GRUB_DIR, "*"),
    tc_unit=from_root(layout.TC_UNIT),
    tc_dir=from_root(layout.TC_DIR),
    tc_suffix=layout.TC_SUFFIX,
    tc_batch=_in(layout.TC_DIR, f"*{layout.TC_SUFFIX}"),
    tc_unit_prefix=layout.TC_UNIT_PREFIX,
    tc_unit_suffix=layout.TC_UNIT_SUFFIX,
    resolv_conf=from_root(layout.RESOLV_CONF),
    resolved_unit=layout.RESOLVED_UNIT,
    networks=layout.LIBVIRT_NETWORKS,
    network_suffix=layout.LIBVIRT_NETWORK_SUFFIX,
    network_state=from_root(layout.NETWORK_STATE),
    sudoers_dir=from_root(layout.SUDOERS_DIR),
    firstboot_unit=layout.FIRSTBOOT_UNIT_NAME,
)


def script(host: HostPlan, artifacts: Sequence[Artifact]) -> Artifact:
    prefix = f"{layout.rootfs_dir(host.name)}/"
    files = [
        Entry(hashlib.sha256(a.content).hexdigest(), f"{a.mode:04o}", a.path.removeprefix(prefix))
        for a in sorted(artifacts, key=lambda a: a.path)
        if a.path.startswith(prefix)
    ]
    netdevs = [
        (from_root(layout.networkd_file(i.id, "netdev")), i.netdev_name)
        for i in host.interfaces
        if i.kind.is_netdev
    ]
    links = sorted(i.name for i in host.interfaces if i.name is not None)
    host_prefix = f"{layout.host_dir(host.name)}/"
    sums = {a.path: hashlib.sha256(a.content).hexdigest() for a in artifacts}
    networks = [
        (sums[path], name, path.removeprefix(host_prefix))
        for name in host.virt.networks
        if (path := layout.libvirt_network(host.name, name)) in sums
    ]
    users = [(u, from_root(layout.sudoers_file(u.name)) if u.sudo else "") for u in host.users]
    tc_units = [
        (from_root(layout.tc_batch(t.device)), t.unit) for t in host.tc if t.engine is TcEngine.SERVICE
    ]
    text = render_template(
        "bootstrap/bootstrap.sh.j2",
        host=host,
        files=files,
        netdevs=netdevs,
        links=links,
        tc_units=tc_units,
        networks=networks,
        users=users,
        sudo_rule=SUDO_RULE,
        paths=PATHS,
    )
    return Artifact.text(layout.bootstrap(host.name), text, MODE_SCRIPT)


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    grouped = by_host(artifacts)
    return [script(host, grouped.get(host.name, [])) for host in plan.hosts]
