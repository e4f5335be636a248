"""diskimage-builder elements for golden images, one set per machine (issue 6).

`images/dib/<machine>/elements/kvmnet-guest/` for each guest and
`images/dib/<machine>/elements/kvmnet-host/` for each host: their content is the
machine's own (MAC-matched `.link` files, a host's rootfs/), so `ELEMENTS_PATH` is one
machine's `elements/` directory and the element names stay those the docs use.

A delivery vehicle: it carries files other renderers made and makes none of its own.
- kvmnet-guest carries the guest's files (`GuestPlan.files`, formatted by
  renderers/guestfiles.py): the list and bytes its NoCloud user-data writes with
  `write_files`, so the two vehicles cannot drift apart.
- kvmnet-host carries the host's bundle (renderers/bundle.py: bootstrap.sh and rootfs/,
  the bytes a PXE install carries) and installs it with the host's own bootstrap.

Files travel inside a tarball rather than as an element's `static/` tree: dib-lint
checks every executable file of an element as if it were a hook (4-space indents,
bash settings), and the rootfs holds scripts that are not hooks (the guest's ethtool
fallback is `#!/bin/sh` with 2-space indents). A tar keeps each file's bytes and mode.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Sequence

import yaml

from generator import layout
from generator.plan.types import GuestPlan, HostPlan, NicTuningUnit, Plan
from generator.renderers import guestfiles, yamltext
from generator.renderers.artifact import MODE_FILE, MODE_SCRIPT, Artifact
from generator.renderers.bundle import by_host, tar_member, tarball
from generator.renderers.pxe import firstboot_unit
from generator.templating import GENERATED
from generator.templating import render as render_template

#: The element-deps of both: kvmnet's seeds need cloud-init reading NoCloud.
DEPS = ("cloud-init", "cloud-init-datasources", "package-installs")
#: ethtool: the guest's fallback unit runs it, and the guest's suite reads channels with it.
GUEST_PACKAGES = ("ethtool",)
#: What the host's files need at run time: tc (kvmnet-tc@ units) and bridge from
#: iproute2, ethtool, modules-load (kmod), sysctl (procps).
HOST_PACKAGES = ("ethtool", "iproute2", "kmod", "procps")
NETWORKD = "systemd-networkd.service"
#: Element directories that are neither hooks nor element files: diskimage-builder copies
#: every directory of an element into the chroot's /tmp/in_target.d/, so the data
#: travels there. Named after the element, since directories of all elements merge.
GUEST_DATA = "kvmnet-guest-files"
HOST_DATA = "kvmnet-host-bundle"
IN_TARGET = "/tmp/in_target.d"
GUEST_TARBALL = "files.tar.gz"
HOST_TARBALL = "bundle.tar.gz"
HOST_CLOUD_CFG = "cloud.cfg"
HOST_FIRSTBOOT = "firstboot.service"


def host_cloud_cfg() -> str:
    """cloud-init's settings in a host image (CLOUD_HOST_IMAGE, after the
    cloud-init-datasources element's 91-dib-*.cfg, whose list ends in `None`).

    - NoCloud only: with `None` last, a host booted without a seed still runs every
      per-instance module as a new, empty instance.
    - network off: kvmnet's networkd files own the NICs. Without this, a host booted
      without a seed gets cloud-init's fallback `10-cloud-init-<nic>.network` (DHCP), which
      sorts before kvmnet's `10-kvmnet-*` files and takes the NIC. cloud-init 22.4 reads
      this before the datasource's network-config (system_cfg comes first in
      `network_config_sources`), so a seed cannot turn it back on.
    """
    data = {"datasource_list": ["NoCloud"], "network": {"config": "disabled"}}
    return f"# {GENERATED}\n" + yaml.safe_dump(data, sort_keys=False)


def guest_files(guest: GuestPlan) -> list[tuple[str, int, bytes]]:
    """The guest's files (plan/guestfiles.py): (path, mode, content), by path.

    The same list and bytes as kvmnet's own write_files of its user-data. The profile's
    extra write_files are the instance's, not the image's: they stay in the seed.
    """
    return sorted((file.path, file.mode, text.encode("utf-8")) for file, text in guestfiles.rendered(guest))


def host_packages(host: HostPlan) -> tuple[str, ...]:
    """HOST_PACKAGES, systemd-resolved when the host has nameservers (only it reads them;
    the host's bootstrap enables it and points /etc/resolv.conf at its stub), then the
    virtualization stack and the profile's install.packages."""
    resolver = (host.resolver.package,) if host.resolver is not None and host.resolver.package else ()
    return tuple(dict.fromkeys((*HOST_PACKAGES, *resolver, *host.virt.packages)))


def _tarball(files: Sequence[tuple[str, int, bytes]]) -> bytes:
    """Files as a deterministic tar.gz (mtime 0, owner root, no directory entries: the
    image's own directories keep their modes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, mode, content in files:
            info = tar_member(path.lstrip("/"), tarfile.REGTYPE, mode, len(content))
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def _common(base: str, element: str, machine: str, role: str, packages: Sequence[str]) -> list[Artifact]:
    readme = render_template(
        "images/README.rst.j2", element=element, machine=machine, role=role, packages=packages
    )
    installs = f"# {GENERATED}\n" + yamltext.dump(dict.fromkeys(packages))
    return [
        Artifact.text(f"{base}/README.rst", readme),
        Artifact.text(f"{base}/element-deps", "".join(f"{d}\n" for d in sorted(DEPS))),
        Artifact.text(f"{base}/package-installs.yaml", installs),
        Artifact.text(
            f"{base}/environment.d/10-{element}", render_template("images/environment.j2", role=role)
        ),
        # cleanup.d: outside the chroot, after every in-chroot phase (finalise.d included).
        Artifact.text(f"{base}/cleanup.d/99-{element}-seal", render_template("images/seal.j2"), MODE_SCRIPT),
    ]


def guest_element(guest: GuestPlan) -> list[Artifact]:
    base = layout.element_dir(guest.name, "guest")
    units = [NETWORKD, *(f.name for f in guest.files if isinstance(f, NicTuningUnit))]
    install = render_template(
        "images/guest-install.j2",
        data_dir=f"{IN_TARGET}/{GUEST_DATA}",
        tarball=GUEST_TARBALL,
        units=units,
        networkd_dir=layout.NETWORKD_DIR,
        vagrant_network=layout.VAGRANT_DHCP_NETWORK,
    )
    return [
        *_common(base, layout.GUEST_ELEMENT, guest.name, "guest", GUEST_PACKAGES),
        Artifact(f"{base}/{GUEST_DATA}/{GUEST_TARBALL}", _tarball(guest_files(guest)), MODE_FILE),
        Artifact.text(f"{base}/install.d/60-{layout.GUEST_ELEMENT}", install, MODE_SCRIPT),
    ]


def host_element(host: HostPlan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    base = layout.element_dir(host.name, "host")
    finalise = render_template(
        "images/host-finalise.j2",
        data_dir=f"{IN_TARGET}/{HOST_DATA}",
        tarball=HOST_TARBALL,
        bundle_dir=layout.BUNDLE_DIR,
        bootstrap=layout.BUNDLED_BOOTSTRAP,
        reboot_marker=layout.REBOOT_MARKER,
        networkd_dir=layout.NETWORKD_DIR,
        vagrant_network=layout.VAGRANT_DHCP_NETWORK,
        cloud_cfg=HOST_CLOUD_CFG,
        cloud_cfg_dir=layout.CLOUD_CFG_DIR,
        cloud_cfg_path=layout.CLOUD_HOST_IMAGE,
        unit=HOST_FIRSTBOOT,
        unit_path=layout.FIRSTBOOT_UNIT,
        unit_name=layout.FIRSTBOOT_UNIT_NAME,
        host_name=host.name,
    )
    made = [
        *_common(base, layout.HOST_ELEMENT, host.name, "host", host_packages(host)),
        Artifact(f"{base}/{HOST_DATA}/{HOST_TARBALL}", tarball(host.name, artifacts), MODE_FILE),
        Artifact.text(f"{base}/{HOST_DATA}/{HOST_CLOUD_CFG}", host_cloud_cfg()),
        Artifact.text(f"{base}/{HOST_DATA}/{HOST_FIRSTBOOT}", firstboot_unit(host)),
        # finalise.d 60: after the bootloader element's grub.cfg (finalise.d 50).
        Artifact.text(f"{base}/finalise.d/60-{layout.HOST_ELEMENT}", finalise, MODE_SCRIPT),
    ]
    if host.resolver is not None:
        # post-install.d: after package-installs (install.d), before the bootloader's packages.
        resolver = render_template(
            "images/host-resolver.j2", resolv_conf=layout.RESOLV_CONF, backup=layout.RESOLVED_BACKUP
        )
        made.append(
            Artifact.text(f"{base}/post-install.d/10-{layout.HOST_ELEMENT}-resolver", resolver, MODE_SCRIPT)
        )
    return made


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    grouped = by_host(artifacts)
    made: list[Artifact] = []
    for host in plan.hosts:
        made += host_element(host, grouped.get(host.name, []))
    for guest in plan.guests:
        made += guest_element(guest)
    return made
