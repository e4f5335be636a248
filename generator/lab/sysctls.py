"""Generated sysctl drop-ins, applied inside a lab namespace as far as that is safe.

A namespace sees the machine's global sysctls too (net.core.rmem_max, vm.*, kernel.*):
writing one there would change the machine the lab runs on. Only keys that each network
namespace has for itself are applied: per-interface and neighbour settings, IP
forwarding, and the bridge netfilter switches (per namespace since Linux 5.3). The rest
is reported as not applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from generator.live.commands import run

NAMESPACED = (
    "net.ipv4.conf.",
    "net.ipv6.conf.",
    "net.ipv4.neigh.",
    "net.ipv6.neigh.",
    "net.ipv4.ip_forward",
    "net.bridge.",
)


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    optional: bool  # written "-key": systemd-sysctl ignores it where the key does not exist


def parse(text: str) -> tuple[Setting, ...]:
    """sysctl.d(5) lines: `key = value`, `-key = value`; comments start with # or ;."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        out.append(Setting(key.lstrip("-"), value.strip(), key.startswith("-")))
    return tuple(out)


def apply(ns: str, settings: Iterable[Setting]) -> list[str]:
    """Apply what belongs to `ns`; what was not applied, and why."""
    skipped = []
    for s in settings:
        if not s.key.startswith(NAMESPACED):
            skipped.append(f"sysctl {s.key} not applied: it is the whole machine's, not the namespace's")
            continue
        result = run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{s.key}={s.value}", check=False)
        if result.returncode != 0 and not s.optional:
            raise RuntimeError(f"sysctl -w {s.key}={s.value} in {ns}: {result.stderr.strip()}")
    return skipped
