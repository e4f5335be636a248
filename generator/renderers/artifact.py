"""What a renderer produces: a file's path in the output tree, its bytes and its mode."""

from __future__ import annotations

from dataclasses import dataclass

MODE_FILE = 0o644
MODE_SCRIPT = 0o755
MODE_SECRET = 0o600


@dataclass(frozen=True, slots=True)
class Artifact:
    path: str  # relative, POSIX separators, e.g. "hosts/hv1/rootfs/etc/systemd/network/x"
    content: bytes
    mode: int = MODE_FILE

    @classmethod
    def text(cls, path: str, text: str, mode: int = MODE_FILE) -> Artifact:
        return cls(path, text.encode("utf-8"), mode)
