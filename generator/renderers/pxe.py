"""PXE installer answer files, one per host, chosen by its distro.

- EL9: `kickstart.cfg` (anaconda), bundle unpacked in `%post`;
- Debian 12: `preseed.cfg` (debian-installer), bundle unpacked by `preseed/late_command`;
- Ubuntu 22.04 / 24.04: `autoinstall.yaml` (Subiquity), bundle unpacked by `late-commands`.

A delivery renderer: each file carries the host's bundle (bootstrap.sh and rootfs/ as
tar.gz, renderers/bundle.py) and kvmnet's install step (templates/pxe/install.sh.j2),
which the installer runs inside the installed system. The bundle is embedded as base64
where the installer can take it (`MAX_ARG_STRLEN`); where it cannot, it is written beside
the answer file (layout.pxe_bundle) and the answer file fetches it from beside its own
URL and checks it against the sha256 written in it. The only profile values that
reach these files are validated: the host name, mirror URLs, a disk path, a time zone
and kernel arguments. None of them is shell code anywhere: they are kickstart
arguments, debconf values and YAML data, and the host name appears in the install step
only in comments and quoted here-documents. See docs/pxe.md.
"""

from __future__ import annotations

import base64
import hashlib
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
#: the terminating NUL included). debian-installer runs the whole late_command as the
#: single argument of `sh -c` (preseed's preseed_command), Subiquity each late-commands
#: string (`sh -c <string>`). Anaconda writes each %post to a file and runs its
#: interpreter on it: a kickstart has no such limit and always embeds the bundle.
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


def _fits(command: str) -> bool:
    """Can `command` be one exec argument (`sh -c COMMAND`)?"""
    return len(command.encode("utf-8")) < MAX_ARG_STRLEN


@dataclass(frozen=True, slots=True)
class Fetch:
    """How an answer file that cannot embed the bundle gets it: one line of POSIX shell run
    by the installer (not in the target) that fetches layout.PXE_BUNDLE from `$base`, the
    directory of the answer file's own URL, into /target, and stops the installation
    unless its sha256 is the one built."""

    sha256: str

    def command(self, locate: str) -> str:
        """`locate`: shell that sets `base` (the answer file's directory URL) or exits."""
        fetched, name = f"/target{layout.FETCHED_BUNDLE}", layout.PXE_BUNDLE
        return (
            f"{locate}; mkdir -p /target{layout.STATE_DIR}"
            f' && wget -q -O {fetched} "$base/{name}"'
            f' && sum=$(sha256sum {fetched} | cut -d " " -f 1)'
            f' && if [ "$sum" != {self.sha256} ]; then'
            f' echo "kvmnet: $base/{name} has sha256 $sum, not {self.sha256} as built:'
            ' not installing it" >&2;'
            " exit 1; fi"
        )

    @staticmethod
    def unpack() -> str:
        """Shell run in the target: the fetched bundle unpacked into BUNDLE_DIR, then removed."""
        fetched, bundle_dir = layout.FETCHED_BUNDLE, layout.BUNDLE_DIR
        return f"mkdir -p {bundle_dir} && tar -xzf {fetched} -C {bundle_dir} && rm {fetched}"


#: Where debian-installer was told to find the preseed (`url=`/`preseed/url=` on the boot
#: line; d-i expands a bare host name to its full URL before storing it).
_PRESEED_BASE = (
    "url=$(debconf-get preseed/url); base=${url%/*};"
    ' [ -n "$url" ] || { echo "kvmnet: no preseed/url: cannot fetch the bundle beside the preseed" >&2;'
    " exit 1; }"
)
#: Where Subiquity's NoCloud seed is: `ds=nocloud;s=URL` or `ds=nocloud-net;s=URL` on the
#: kernel command line (cloud-init's NoCloud; further `;key=value` pairs may follow).
_AUTOINSTALL_BASE = (
    "base=; read -r cmdline </proc/cmdline; for arg in $cmdline; do case $arg in"
    ' "ds=nocloud;s="*|"ds=nocloud-net;s="*) base=${arg#*;s=}; base=${base%%;*}; base=${base%/};; esac; done;'
    ' [ -n "$base" ] || { echo "kvmnet: no ds=nocloud;s=<URL> on the kernel command line:'
    ' cannot fetch the bundle beside the autoinstall" >&2; exit 1; }'
)


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
        firewall_ports=",".join(f"{port}:udp" for port in host.firewall.udp_ports) if host.firewall else "",
    )


def _preseed_text(host: HostPlan, bundle: bytes, step: str, fetch: Fetch | None) -> str:
    return render_template(
        "pxe/preseed.cfg.j2",
        host=host,
        mirror=_apt_mirror(host.install.mirror or DEBIAN_MIRROR),
        bundle_dir=layout.BUNDLE_DIR,
        install_path=layout.INSTALL_STEP,
        payload=_b64(bundle) if fetch is None else "",
        fetch=fetch.command(_PRESEED_BASE) if fetch else "",
        sha256=fetch.sha256 if fetch else "",
        bundle_name=layout.PXE_BUNDLE,
        unpack=Fetch.unpack(),
        install_payload=_b64(step.encode("utf-8")),
        install_lines=step.splitlines(),
        bootdev=host.install.disk or "default",
    )


def _late_command(text: str) -> str:
    return text[text.index("d-i preseed/late_command string") :]


def preseed(host: HostPlan, bundle: bytes, step: str) -> tuple[str, bool]:
    """The preseed, and whether it fetches the bundle (too large for the late_command)."""
    text = _preseed_text(host, bundle, step, None)
    if _fits(_late_command(text)):
        return text, False
    text = _preseed_text(host, bundle, step, Fetch(hashlib.sha256(bundle).hexdigest()))
    command = _late_command(text)
    if not _fits(command):
        message = (
            f"the preseed late_command would be {len(command)} bytes even without the bundle; "
            f"debian-installer runs it as one `sh -c` argument, which Linux limits to "
            f"{MAX_ARG_STRLEN - 1} bytes"
        )
        raise PlanError([Diagnostic(message, ("hosts", host.name))])
    return text, True


def autoinstall(host: HostPlan, bundle: bytes, step: str) -> tuple[str, bool]:
    """The autoinstall, and whether it fetches the bundle (too large to embed)."""
    install = host.install
    payload = "\n".join(_lines(_b64(bundle)))
    # Subiquity runs each string with `sh -c` in the installer, the installed system
    # mounted at /target; `curtin in-target` runs a command chrooted there.
    state, bundle_dir = layout.STATE_DIR, layout.BUNDLE_DIR
    encoded = f"{state}/bundle.tar.gz.b64"  # the installer's copy of the bundle, removed once unpacked
    write_step = f"cat >/target{layout.INSTALL_STEP} <<'{INSTALL_EOF}'\n{step}{INSTALL_EOF}\n"
    write = (
        "set -eu\n"
        f"mkdir -p /target{state}\n"
        f"cat >/target{encoded} <<'{BUNDLE_EOF}'\n{payload}\n{BUNDLE_EOF}\n"
        f"{write_step}"
    )
    unpack = f"mkdir -p {bundle_dir} && base64 -d {encoded} | tar -xzf - -C {bundle_dir} && rm {encoded}"
    fetched = not _fits(write)
    if fetched:
        fetch = Fetch(hashlib.sha256(bundle).hexdigest())
        write = f"set -eu\n{fetch.command(_AUTOINSTALL_BASE)}\n{write_step}"
        unpack = Fetch.unpack()
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
            "layout": {"name": "lvm", "match": {"path": install.disk}} if install.disk else {"name": "lvm"}
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
    if fetched:
        header += (
            f"# The bundle is too large to embed: serve {layout.PXE_BUNDLE} in that directory too; the\n"
            f"# first late command fetches it and checks its sha256 ({fetch.sha256}).\n"
        )
    return header + body, fetched


def _vehicle(host: HostPlan, bundle: bytes, step: str) -> tuple[str, bool]:
    """The answer file of the host's distro, and whether it fetches the bundle."""
    distro = host.install.distro
    if distro == "el9":
        return kickstart(host, bundle, step), False
    if distro == "debian12":
        return preseed(host, bundle, step)
    return autoinstall(host, bundle, step)


def host_files(host: HostPlan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    has_bootstrap = any(a.path == layout.bootstrap(host.name) for a in artifacts)
    step = install_step(host, has_bootstrap)
    bundle = tarball(host.name, artifacts)
    text, fetched = _vehicle(host, bundle, step)
    made = [Artifact.text(layout.pxe_answer(host.name, host.install.distro), text)]
    if fetched:
        made.append(Artifact(layout.pxe_bundle(host.name), bundle))
    return made


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
