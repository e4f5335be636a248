"""Network namespaces, veth pairs and networkd processes, all removed by `close()`."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from generator.live.commands import run
from generator.live.networkd import Networkd

_NUMBERS = itertools.count(1)  # shared by all Labs of this process, so names never repeat


class Lab:
    """Namespaces and networkd processes; `close()` stops and removes every one of them.

    Names start with `kn-<pid>-`, so parallel test sessions on one machine never collide.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.prefix = f"kn-{os.getpid()}"
        self._namespaces: list[str] = []
        self._daemons: list[Networkd] = []

    def namespace(self, label: str) -> str:
        name = f"{self.prefix}-{next(_NUMBERS)}-{re.sub(r'[^A-Za-z0-9-]', '-', label)}"
        run("ip", "netns", "add", name)
        self._namespaces.append(name)
        return name

    def remove_namespace(self, name: str) -> None:
        self._namespaces.remove(name)
        run("ip", "netns", "delete", name)

    def veth(
        self,
        ns: str,
        name: str,
        *,
        peer_ns: str,
        peer_name: str,
        mac: str | None = None,
        peer_mac: str | None = None,
        mtu: int | None = None,
        peer_up: bool = True,
    ) -> None:
        """A veth pair; the peer is brought up so that `name` sees carrier once it is up."""
        mine = (*(("address", mac) if mac else ()), *(("mtu", str(mtu)) if mtu else ()))
        theirs = (*(("address", peer_mac) if peer_mac else ()), *(("mtu", str(mtu)) if mtu else ()))
        run(
            *("ip", "-n", ns, "link", "add", name, *mine, "type", "veth"),
            *("peer", "name", peer_name, "netns", peer_ns, *theirs),
        )
        if peer_up:
            run("ip", "-n", peer_ns, "link", "set", peer_name, "up")

    def guest(self, ns: str, bridge: str, mtu: int, address: str) -> str:
        """A namespace standing in for a VM: its `eth0` is a veth whose peer is a port of `bridge`."""
        guest = self.namespace("guest")
        self.veth(ns, "kn-guest", mtu=mtu, peer_ns=guest, peer_name="eth0", peer_up=False)
        run("ip", "-n", ns, "link", "set", "kn-guest", "master", bridge, "up")
        run("ip", "-n", guest, "address", "add", address, "dev", "eth0")
        run("ip", "-n", guest, "link", "set", "eth0", "up")
        return guest

    def networkd(self, ns: str, files: Mapping[str, bytes], seed: str) -> Networkd:
        daemon = Networkd(ns, files, seed, self.workdir / f"networkd-{next(_NUMBERS)}")
        self._daemons.append(daemon)
        return daemon

    def close(self) -> None:
        errors = []
        for daemon in reversed(self._daemons):
            try:
                daemon.stop()
            except (OSError, subprocess.SubprocessError) as exc:
                errors.append(f"networkd {daemon.process.pid}: {exc}")
        self._daemons.clear()
        for name in reversed(self._namespaces):
            result = run("ip", "netns", "delete", name, check=False)
            if result.returncode != 0:
                errors.append(f"netns {name}: {result.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise RuntimeError("cleanup failed: " + "; ".join(errors))
