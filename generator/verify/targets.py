"""Where `kvmnet verify` runs the suites, and how testinfra reaches it.

| target                 | testinfra                                      | runs pytest          |
|------------------------|------------------------------------------------|----------------------|
| `local`                | `--hosts=local://`                             | here                 |
| `ssh://user@host:port` | `--hosts=ssh://...` (its ssh backend)          | here                 |
| `netns:NAME`           | `--hosts=local://`                             | `ip netns exec NAME` |
| `ansible[:INVENTORY]`  | `--connection=ansible --ansible-inventory=...` | here                 |

testinfra's own URL options (`?ssh_config=`, `?ssh_identity_file=`) pass through.

`ansible` alone means the output's own `inventory.yaml`; `ansible:PATH` another
inventory (a file or a directory Ansible merges, e.g. kvmnet's plus your connection
settings). Only `ansible` names machines itself; the other targets are one machine
whose profile name(s) the caller gives.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from generator import layout
from generator.verify.errors import VerifyError

_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Target:
    text: str
    kind: str  # "local" | "ssh" | "netns" | "ansible"
    namespace: str | None = None
    inventory: Path | None = None

    @property
    def fleet(self) -> bool:
        """Does the target know the machines by name (so that none need be given)?"""
        return self.kind == "ansible"

    def prefix(self) -> list[str]:
        """What to run pytest under."""
        return ["ip", "netns", "exec", self.namespace] if self.namespace else []

    def testinfra_args(self, machines: list[str]) -> list[str]:
        if self.kind == "ansible":
            assert self.inventory is not None
            hosts = ",".join(machines) if machines else "all"
            return ["--connection=ansible", f"--ansible-inventory={self.inventory}", f"--hosts={hosts}"]
        if self.kind == "ssh":
            return [f"--hosts={self.text}"]
        return ["--hosts=local://"]


def parse(text: str, output: Path) -> Target:
    if text == "local":
        return Target(text, "local")
    if text.startswith("ssh://"):
        url = urllib.parse.urlsplit(text)
        try:
            port = url.port
        except ValueError:
            port = -1
        if not url.hostname or port == -1 or url.path not in ("", "/"):
            raise VerifyError.of(f"bad SSH target {text!r}: write ssh://[user@]host[:port]")
        return Target(text, "ssh")
    if text.startswith("netns:"):
        name = text.removeprefix("netns:")
        if not _NETNS_NAME.fullmatch(name):
            raise VerifyError.of(f"bad namespace target {text!r}: write netns:NAME")
        if not (NETNS_DIR / name).exists():
            raise VerifyError.of(f"no network namespace {name!r} (ip netns list shows the ones there are)")
        return Target(text, "netns", namespace=name)
    if text == "ansible" or text.startswith("ansible:"):
        given = text.removeprefix("ansible").removeprefix(":")
        inventory = Path(given) if given else output / layout.INVENTORY
        if not inventory.exists():
            raise VerifyError.of(f"no Ansible inventory at {inventory}")
        return Target(text, "ansible", inventory=inventory.resolve())
    raise VerifyError.of(
        f"unknown target {text!r}: use local, ssh://[user@]host[:port], netns:NAME or ansible[:INVENTORY]"
    )


def ansible_inventory_command() -> str:
    """ansible-inventory from kvmnet's own environment first (the `ansible` extra), else PATH."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    found = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    if found is None:
        raise VerifyError.of(
            "the ansible target needs ansible-core: pip install 'kvmnet[ansible]' (or ansible-core)"
        )
    return found


def inventory_hosts(inventory: Path) -> set[str]:
    """Every host the inventory lists, as Ansible itself reads it."""
    result = subprocess.run(
        [ansible_inventory_command(), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise VerifyError.of(f"ansible-inventory cannot read {inventory}: {result.stderr.strip()}")
    data = json.loads(result.stdout)
    hosts = set(data.get("_meta", {}).get("hostvars", {}))
    for group in data.values():
        if isinstance(group, dict):
            hosts.update(group.get("hosts", []))
    return hosts
