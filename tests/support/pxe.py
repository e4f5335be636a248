"""The installers' side of the PXE files, as far as this machine can play it.

- `kickstart_scripts`: pykickstart (what anaconda itself parses with) reads a kickstart
  and hands back its %pre/%post scripts;
- `debconf_values`: Debian's debconf-set-selections loads a preseed into a private
  debconf database, and the values are read back from it;
- `Target`: an installed system to be, as a chroot: this machine's /usr read-only,
  everything else (etc/, var/, ...) a fresh directory. The installer's commands run
  inside a private mount namespace, with `in-target` and `curtin in-target` played by
  small stand-ins that chroot into it, so nothing reaches the machine running the tests;
  `debconf-get preseed/url` answers the URL the test serves the preseed from;
- `serve`: a real HTTP server on loopback, serving a directory (the answer files and
  the bundles they fetch).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL9, makeVersion

#: Subiquity's autoinstall keys and the shapes kvmnet relies on, from its reference
#: manual (doc/reference/autoinstall-reference.rst) and JSON schema
#: (autoinstall-schema.json) in canonical/subiquity. Written here, not copied: the
#: schema file is AGPL-3.0, and the installer only warns about (22.04) or refuses
#: (24.04+) keys it does not know, so unknown keys fail this schema.
AUTOINSTALL_KEYS = [
    *("version", "interactive-sections", "early-commands", "locale", "refresh-installer", "keyboard"),
    *("source", "network", "proxy", "apt", "storage", "identity", "active-directory", "ubuntu-pro"),
    *("ssh", "codecs", "drivers", "oem", "snaps", "debconf-selections", "packages", "kernel"),
    *("kernel-crash-dumps", "timezone", "updates", "shutdown", "late-commands", "error-commands"),
    *("reporting", "user-data", "zdevs"),
]
_COMMANDS = {"type": "array", "items": {"type": ["string", "array"], "items": {"type": "string"}}}
AUTOINSTALL_SCHEMA = {
    "type": "object",
    "required": ["autoinstall"],
    "additionalProperties": False,
    "properties": {
        "autoinstall": {
            "type": "object",
            "required": ["version"],
            "additionalProperties": False,
            "properties": {
                **{key: {} for key in AUTOINSTALL_KEYS},
                "version": {"type": "integer", "minimum": 1, "maximum": 1},
                "locale": {"type": "string"},
                "timezone": {"type": "string"},
                "keyboard": {
                    "type": "object",
                    "required": ["layout"],
                    "additionalProperties": False,
                    "properties": {
                        "layout": {"type": "string"},
                        "variant": {"type": "string"},
                        "toggle": {"type": ["string", "null"]},
                    },
                },
                "identity": {
                    "type": "object",
                    "required": ["username", "hostname", "password"],
                    "additionalProperties": False,
                    "properties": {
                        k: {"type": "string"} for k in ("realname", "username", "hostname", "password")
                    },
                },
                "ssh": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "install-server": {"type": "boolean"},
                        "authorized-keys": {"type": "array", "items": {"type": "string"}},
                        "allow-pw": {"type": "boolean"},
                    },
                },
                "storage": {
                    "type": "object",
                    "properties": {
                        "layout": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"enum": ["lvm", "direct", "zfs", "hybrid"]},
                                "match": {"type": "object"},
                            },
                        }
                    },
                },
                "apt": {
                    "type": "object",
                    "properties": {
                        "preserve_sources_list": {"type": "boolean"},
                        "primary": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["uri"],
                                "properties": {
                                    "uri": {"type": "string"},
                                    "arches": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                        "geoip": {"type": "boolean"},
                        "sources": {"type": "object"},
                    },
                },
                "user-data": {"type": "object"},
                "late-commands": _COMMANDS,
                "early-commands": _COMMANDS,
                "error-commands": _COMMANDS,
            },
        }
    },
}


def kickstart_scripts(path: Path) -> tuple[KickstartParser, dict[str, str]]:
    """The parsed kickstart (RHEL9 syntax) and its scripts by kind: "pre", "post"."""
    handler = makeVersion(RHEL9)
    parser = KickstartParser(handler, followIncludes=False, errorsAreFatal=True)
    parser.readKickstart(str(path))
    kinds = {0: "pre", 1: "post", 2: "traceback", 3: "pre-install", 4: "onerror"}
    scripts: dict[str, str] = {}
    for script in handler.scripts:
        name = kinds[script.type]
        assert name not in scripts, f"two %{name} sections"
        scripts[name] = script.script
    return parser, scripts


def _private_debconf(work: Path) -> dict[str, str]:
    """The environment of a debconf with its own database in `work`: the machine's is
    locked by any other debconf running (parallel tests fail with exit 1, saying nothing)."""
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "debconf.conf"
    conf.write_text(
        "Config: configdb\nTemplates: templatedb\n\n"
        f"Name: configdb\nDriver: File\nFilename: {work}/config.dat\n\n"
        f"Name: templatedb\nDriver: File\nFilename: {work}/templates.dat\n"
    )
    return {**os.environ, "DEBCONF_SYSTEMRC": str(conf), "DEBIAN_FRONTEND": "noninteractive"}


def debconf_check(preseed: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`debconf-set-selections -c` (syntax only) on `preseed`, against a private database."""
    return subprocess.run(
        ["debconf-set-selections", "-c", str(preseed)],
        env=_private_debconf(work),
        capture_output=True,
        text=True,
        check=False,
    )


def debconf_values(preseed: Path, work: Path) -> dict[str, str]:
    """What debconf stores for each question of `preseed`, loaded by the real debconf."""
    env = _private_debconf(work)
    result = subprocess.run(
        ["debconf-set-selections", str(preseed)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    values: dict[str, str] = {}
    for stanza in (work / "config.dat").read_text().split("\n\n"):
        fields = dict(re.findall(r"^(\w+): ?(.*)$", stanza, re.MULTILINE))
        if "Name" in fields:
            values[fields["Name"]] = fields.get("Value", "")
    return values


def heredoc(text: str, opener: str, delimiter: str) -> str:
    """The body of the here-document that `opener` starts in `text` (exactly one)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == opener]
    assert len(starts) == 1, f"{opener!r} found {len(starts)} times"
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.rstrip("\n") == delimiter:
            return "".join(body)
        body.append(line)
    raise AssertionError(f"here-document {delimiter} is not closed")


def shellcheck(script: str, name: str) -> str:
    """shellcheck's findings on `script` as POSIX sh (empty: clean)."""
    result = subprocess.run(
        ["shellcheck", "--shell=sh", "--format=gcc", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    return (result.stdout + result.stderr).replace("-:", f"{name}:")


#: Stand-ins for what the installers and the tools the install step calls provide.
#: update-grub sources the GRUB drop-ins the way grub-mkconfig does and logs the
#: command line it would write.
STUBS = {
    "in-target": '#!/bin/sh\nexec chroot "$KVMNET_TARGET" "$@"\n',
    # debian-installer's debconf-get reads its database; the one question asked is
    # preseed/url, the URL the preseed was fetched from (the test's HTTP server).
    "debconf-get": (
        "#!/bin/sh\n"
        'if [ "$1" != preseed/url ]; then echo "debconf-get stand-in: only preseed/url" >&2; exit 2; fi\n'
        'printf "%s\\n" "${KVMNET_PRESEED_URL:-}"\n'
    ),
    "curtin": (
        "#!/bin/sh\n"
        'if [ "$1" != in-target ]; then echo "curtin stand-in: only in-target" >&2; exit 2; fi\n'
        'target=${2#--target=}\nshift 2\nif [ "$1" = -- ]; then shift; fi\n'
        'exec chroot "$target" "$@"\n'
    ),
    "update-grub": (
        "#!/bin/sh\nGRUB_CMDLINE_LINUX=\n"
        'for f in /etc/default/grub.d/*.cfg; do . "$f"; done\n'
        'printf "update-grub %s\\n" "$GRUB_CMDLINE_LINUX" >>/var/log/kvmnet-stubs.log\n'
    ),
    "grubby": '#!/bin/sh\nprintf "grubby %s\\n" "$*" >>/var/log/kvmnet-stubs.log\n',
    "restorecon": '#!/bin/sh\nprintf "restorecon %s\\n" "$*" >>/var/log/kvmnet-stubs.log\n',
    "kvmnet-canary": '#!/bin/sh\ntouch "$KVMNET_CANARY"\n',
}

_DRIVER = r"""
set -eu
T=$1
mount --bind /usr "$T/usr"
mount -o remount,bind,ro "$T/usr"
mount --bind /dev "$T/dev"
mount -t proc proc "$T/proc"
status=0
for cmd in "$T"/../commands/*; do
  case $cmd in
    *-chroot) chroot "$T" /bin/sh "/$(cat "$cmd")" >>"$T/../run.log" 2>&1 || status=$? ;;
    *) sh -c "$(cat "$cmd")" >>"$T/../run.log" 2>&1 || status=$? ;;
  esac
  [ "$status" -eq 0 ] || break
done
if [ -f "$T/etc/systemd/system/kvmnet-firstboot.service" ]; then
  systemd-analyze verify --root="$T" /etc/systemd/system/kvmnet-firstboot.service >"$T/../verify.log" 2>&1 || true
fi
exit "$status"
"""


#: /etc/resolv.conf as the installers leave it (their DHCP client wrote it).
INSTALLER_RESOLV_CONF = "nameserver 198.51.100.53\n"


@dataclass
class Target:
    """A directory that becomes the installed system's root for one installation."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def canary(self) -> Path:
        return self.base / "canary"

    def prepare(self, distro: str, packages: Sequence[str] = ()) -> None:
        """The target as the installer leaves it; `packages`: what its answer file had the
        installer add (systemd-resolved: its files; Ubuntu always has them)."""
        root = self.root
        for sub in ("usr", "dev", "proc", "run", "root", "var/log", "etc/systemd/system", "kvmnet-stubs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        (root / "tmp").chmod(0o1777)
        for link in ("bin", "sbin", "lib", "lib64"):
            (root / link).symlink_to(f"usr/{link}")
        for name in ("passwd", "group"):
            shutil.copy(f"/etc/{name}", root / "etc" / name)
        for name, text in STUBS.items():
            stub = root / "kvmnet-stubs" / name
            stub.write_text(text)
            stub.chmod(0o755)
        # The canary's path exists inside the target too, so a canary that fires in
        # there leaves its file as well.
        (root / str(self.base).lstrip("/")).mkdir(parents=True)
        (self.base / "commands").mkdir()
        # What the installers leave behind before the install step runs.
        if distro == "el9":
            units = root / "etc/systemd/system"
            for unit, wanted_by in (
                ("NetworkManager.service", "multi-user.target"),
                ("NetworkManager-wait-online.service", "network-online.target"),
            ):
                (units / unit).write_text(
                    f"[Service]\nExecStart=/bin/true\n[Install]\nWantedBy={wanted_by}\n"
                )
                (units / f"{wanted_by}.wants").mkdir(exist_ok=True)
                (units / f"{wanted_by}.wants" / unit).symlink_to(f"../{unit}")
        elif distro == "debian12":
            (root / "etc/network").mkdir()
            (root / "etc/network/interfaces").write_text("auto ens1\niface ens1 inet dhcp\n")
        else:
            (root / "etc/netplan").mkdir()
            (root / "etc/netplan/00-installer-config.yaml").write_text("network: {ethernets: {ens1: {}}}\n")
            (root / "etc/cloud/cloud.cfg.d").mkdir(parents=True)
        (root / "etc/resolv.conf").write_text(INSTALLER_RESOLV_CONF)
        if "systemd-resolved" in packages or distro.startswith("ubuntu"):
            # Its unit stands for the package (the bootstrap looks for the unit); in /etc,
            # since the target's /usr is this machine's, read-only.
            (root / "etc/systemd/system/systemd-resolved.service").write_text(
                "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
            )

    def add(self, command: str, *, chrooted: bool = False) -> None:
        """A command the installer runs: a shell string, or a script run chrooted."""
        commands = self.base / "commands"
        index = len(list(commands.iterdir()))
        if chrooted:
            name = f"kvmnet-step-{index}.sh"
            (self.root / name).write_text(command)
            (commands / f"{index:02d}-chroot").write_text(name)
        else:
            (commands / f"{index:02d}-sh").write_text(command)

    def run(self, preseed_url: str = "") -> subprocess.CompletedProcess[str]:
        """Run the commands; `preseed_url`: what debconf-get answers for preseed/url."""
        stubs = self.root / "kvmnet-stubs"
        env = {
            "KVMNET_PRESEED_URL": preseed_url,
            "PATH": f"{stubs}:/kvmnet-stubs:/usr/sbin:/usr/bin:/sbin:/bin",
            "KVMNET_TARGET": str(self.root),
            "KVMNET_CANARY": str(self.canary),
            "LC_ALL": "C",
            "HOME": "/root",
        }
        driver = self.base / "driver.sh"
        driver.write_text(_DRIVER)
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", str(driver), str(self.root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def log(self, name: str) -> str:
        path = self.base / name
        return path.read_text() if path.exists() else ""

    def canary_fired(self) -> bool:
        inside = self.root / str(self.canary).lstrip("/")
        return self.canary.exists() or inside.exists()


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL (no slash)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
