"""PXE installer answer files, one per host, chosen by its distro.

- EL9: `kickstart.cfg` (anaconda), bundle unpacked in `%post`;
- Debian 12: `preseed.cfg` (debian-installer), bundle unpacked by `preseed/late_command`;
- Ubuntu 22.04 / 24.04: `autoinstall.yaml` (Subiquity), bundle unpacked by `late-commands`.

A delivery renderer: each file embeds the host's bundle (bootstrap.sh and rootfs/ as
tar.gz, renderers/bundle.py) and kvmnet's install step (templates/pxe/install.sh.j2),
which the installer runs inside the installed system. The only profile values that
reach these files are validated: the host name, mirror URLs, a disk name, a time zone
and kernel arguments. None of them is shell code anywhere: they are kickstart
arguments, debconf values and YAML data, and the host name appears in the install step
only in comments and quoted here-documents. See docs/pxe.md.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from generator import layout
from generator.errors import Diagnostic, PlanError
from generator.plan.types import HostPlan, Plan
from generator.renderers import yamltext
from generator.renderers.artifact import Artifact
from generator.renderers.bundle import by_host, tarball
from generator.templating import GENERATED
from generator.templating import render as render_template

#: Linux's limit on the length of one argument to exec (MAX_ARG_STRLEN: 32 pages,
#: the terminating NUL included). debian-installer runs the whole late_command as
#: the single argument of `sh -c`.
MAX_ARG_STRLEN = 131072
#: Debian's own mirror service, also debian-installer's default mirror.
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: Line length of base64 in here-documents (what `base64` itself writes).
B64_LINE = 76
#: Here-document delimiters: of the bundle, of the install step, and of the files the
#: install step writes.
BUNDLE_EOF, INSTALL_EOF, FILE_EOF = "KVMNET_BUNDLE", "KVMNET_INSTALL", "KVMNET_EOF"


@dataclass(frozen=True, slots=True)
class Mirror:
    """An apt mirror as debian-installer asks for it."""

    protocol: str  # "http" | "https"
    hostname: str  # host[:port]
    directory: str


def _apt_mirror(url: str) -> Mirror:
    """The parts of a mirror URL (the model allows no query, fragment or user name)."""
    parts = urlsplit(url)
    return Mirror(parts.scheme, parts.netloc, parts.path or "/")


def _checked_heredoc(text: str, delimiter: str) -> str:
    """`text` unchanged, once it is known not to end its here-document early."""
    if delimiter in text.splitlines():
        raise ValueError(f"embedded text contains its here-document delimiter {delimiter}")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _lines(text: str) -> list[str]:
    return [text[i : i + B64_LINE] for i in range(0, len(text), B64_LINE)]


def firstboot_unit(host: HostPlan) -> str:
    """kvmnet-firstboot.service: the bundle's bootstrap once, online, on the first boot of
    an installed host or of its image (what an offline run leaves: libvirt networks)."""
    return render_template(
        "pxe/firstboot.service.j2",
        host=host,
        bootstrap=layout.BUNDLED_BOOTSTRAP,
        done_file=layout.FIRSTBOOT_DONE,
    )


def install_step(host: HostPlan, has_bootstrap: bool) -> str:
    """kvmnet's install step of `host`, run in the installed system (docs/pxe.md)."""
    unit = firstboot_unit(host)
    cloud_cfg = f"# {GENERATED}\n" + yaml.safe_dump({"network": {"config": "disabled"}}, sort_keys=False)
    text = render_template(
        "pxe/install.sh.j2",
        host=host,
        bundle_dir=layout.BUNDLE_DIR,
        bootstrap=layout.BUNDLED_BOOTSTRAP,
        state_dir=layout.STATE_DIR,
        kept_dir=layout.INSTALLER_NETWORK,
        unit_path=layout.FIRSTBOOT_UNIT,
        unit_name=layout.FIRSTBOOT_UNIT_NAME,
        unit=_checked_heredoc(unit, FILE_EOF),
        has_bootstrap=has_bootstrap,
        handover=bool(host.interfaces),
        cloud_cfg_dir=layout.CLOUD_CFG_DIR,
        cloud_cfg_path=layout.CLOUD_NETWORK_OFF,
        cloud_cfg=_checked_heredoc(cloud_cfg, FILE_EOF),
    )
    return _checked_heredoc(text, INSTALL_EOF)


def kickstart(host: HostPlan, bundle: bytes, step: str) -> str:
    # Anaconda ends a %post section at any line starting with %end, and reads every
    # line starting with % as a section header.
    if any(line.startswith("%") for line in step.splitlines()):
        raise ValueError("the install step has a line starting with '%', which kickstart would read")
    return render_template(
        "pxe/kickstart.cfg.j2",
        host=host,
        bundle_dir=layout.BUNDLE_DIR,
        install_path=layout.INSTALL_STEP,
        payload=_lines(_b64(bundle)),
        install_sh=step,
    )


def preseed(host: HostPlan, bundle: bytes, step: str) -> str:
    mirror = _apt_mirror(host.install.mirror or DEBIAN_MIRROR)
    text = render_template(
        "pxe/preseed.cfg.j2",
        host=host,
        mirror=mirror,
        bundle_dir=layout.BUNDLE_DIR,
        install_path=layout.INSTALL_STEP,
        payload=_b64(bundle),
        install_payload=_b64(step.encode("utf-8")),
        install_lines=step.splitlines(),
        bootdev=f"/dev/{host.install.disk}" if host.install.disk else "default",
    )
    command = text[text.index("d-i preseed/late_command string") :]
    if len(command) >= MAX_ARG_STRLEN:
        message = (
            f"the preseed late_command would be {len(command)} bytes; debian-installer runs it as "
            f"one `sh -c` argument, which Linux limits to {MAX_ARG_STRLEN - 1} bytes (use an EL9 "
            "kickstart or Ubuntu autoinstall for a host this large, or fewer devices)"
        )
        raise PlanError([Diagnostic(message, ("hosts", host.name))])
    return text


def autoinstall(host: HostPlan, bundle: bytes, step: str) -> str:
    install = host.install
    payload = "\n".join(_lines(_b64(bundle)))
    # Subiquity runs each string with `sh -c` in the installer, the installed system
    # mounted at /target; `curtin in-target` runs a command chrooted there.
    state, bundle_dir = layout.STATE_DIR, layout.BUNDLE_DIR
    encoded = f"{state}/bundle.tar.gz.b64"  # the installer's copy of the bundle, removed once unpacked
    write = (
        "set -eu\n"
        f"mkdir -p /target{state}\n"
        f"cat >/target{encoded} <<'{BUNDLE_EOF}'\n{payload}\n{BUNDLE_EOF}\n"
        f"cat >/target{layout.INSTALL_STEP} <<'{INSTALL_EOF}'\n{step}{INSTALL_EOF}\n"
    )
    unpack = f"mkdir -p {bundle_dir} && base64 -d {encoded} | tar -xzf - -C {bundle_dir} && rm {encoded}"
    config: dict[str, Any] = {
        "version": 1,
        "locale": "en_US.UTF-8",
        "keyboard": {"layout": "us"},
        "timezone": install.timezone,
        # No `identity`: it must name a user with a password. With `user-data` instead,
        # Subiquity makes no user, and cloud-init sets the host name on the first boot;
        # the bootstrap in late-commands makes the profile's users (hosts.<host>.users).
        "user-data": {"hostname": host.name, "users": []},
        "ssh": {"install-server": True, "allow-pw": False},
        "storage": {
            "layout": {"name": "lvm", "match": {"path": f"/dev/{install.disk}"}}
            if install.disk
            else {"name": "lvm"}
        },
    }
    if install.mirror:
        config["apt"] = {"primary": [{"arches": ["default"], "uri": install.mirror}]}
    # The virtualization stack and the profile's install.packages; systemd-resolved when
    # the host has nameservers, which only it reads.
    resolver = [host.resolver.package] if host.resolver is not None and host.resolver.package else []
    config["packages"] = [*resolver, *host.virt.packages]
    config["late-commands"] = [
        write,
        f"curtin in-target --target=/target -- sh -c '{unpack}'",
        f"curtin in-target --target=/target -- sh {layout.INSTALL_STEP}",
    ]
    body = yamltext.dump({"autoinstall": config})
    header = (
        "#cloud-config\n"
        f"# {GENERATED}\n"
        f"# Autoinstall of host {host.name} ({install.distro}), for Subiquity: serve it as `user-data`\n"
        "# beside an empty `meta-data`, and boot the installer with\n"
        "# `autoinstall ds=nocloud-net;s=<URL of that directory>/` (docs/pxe.md).\n"
    )
    return header + body


VEHICLES = {"el9": kickstart, "debian12": preseed, "ubuntu2204": autoinstall, "ubuntu2404": autoinstall}


def host_files(host: HostPlan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    has_bootstrap = any(a.path == layout.bootstrap(host.name) for a in artifacts)
    step = install_step(host, has_bootstrap)
    text = VEHICLES[host.install.distro](host, tarball(host.name, artifacts), step)
    return [Artifact.text(layout.pxe_answer(host.name, host.install.distro), text)]


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    problems: list[Diagnostic] = []
    out: list[Artifact] = []
    grouped = by_host(artifacts)
    for host in plan.hosts:
        try:
            out.extend(host_files(host, grouped.get(host.name, [])))
        except PlanError as exc:
            problems.extend(exc.diagnostics)
    if problems:
        raise PlanError(problems)
    return out
