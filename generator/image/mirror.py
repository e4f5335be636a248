"""The Debian mirror this machine already uses, read from its apt configuration.

diskimage-builder's debian-minimal element falls back to deb.debian.org and
security.debian.org; a build machine that reaches only its own mirror (a proxy, a
snapshot, a local copy) fails there. So kvmnet takes the mirror apt itself uses:
`/etc/apt/sources.list` (one-line style) and `/etc/apt/sources.list.d/*.list` and
`*.sources` (deb822), the files apt reads, in apt's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: URI schemes debootstrap can fetch from.
SCHEMES = ("http://", "https://", "ftp://", "file:/")


@dataclass(frozen=True, slots=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    origin: str  # "file:line", for messages


@dataclass(frozen=True, slots=True)
class Mirrors:
    """The archive that has `release`, and the one that has `release-security` (if any)."""

    main: str
    security: str | None
    origin: str


class MirrorError(Exception):
    """No usable mirror: the message says where kvmnet looked."""


def source_files(root: Path = Path("/")) -> list[Path]:
    """The files apt reads, in its order (sources.list, then sources.list.d sorted)."""
    etc = root / "etc/apt"
    files = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    directory = etc / "sources.list.d"
    if directory.is_dir():
        # apt ignores other names (.disabled, .save, .dpkg-old...).
        files += sorted(p for p in directory.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    return files


def _one_line(path: Path) -> Iterator[Source]:
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != "deb":
            continue  # deb-src, or garbage apt would refuse
        rest = words[1:]
        if rest and rest[0].startswith("["):  # [arch=amd64 signed-by=...]
            while rest and not rest[0].endswith("]"):
                rest = rest[1:]
            rest = rest[1:]
        if len(rest) >= 2:
            yield Source(rest[0], (rest[1],), f"{path}:{number}")


def _deb822(path: Path) -> Iterator[Source]:
    stanza: dict[str, str] = {}
    start = 0
    key = ""

    def flush() -> Iterator[Source]:
        types = stanza.get("types", "").split()
        if "deb" in types and stanza.get("enabled", "yes").strip().lower() != "no":
            for uri in stanza.get("uris", "").split():
                yield Source(uri, tuple(stanza.get("suites", "").split()), f"{path}:{start}")

    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            yield from flush()
            stanza, key = {}, ""
            continue
        if raw[0] in " \t" and key:  # a continuation line (Signed-By: with a key block)
            stanza[key] += " " + raw.strip()
            continue
        name, _, value = raw.partition(":")
        key = name.strip().lower()
        if not stanza:
            start = number
        stanza[key] = value.strip()
    yield from flush()


def sources(root: Path = Path("/")) -> list[Source]:
    found: list[Source] = []
    for path in source_files(root):
        found += _deb822(path) if path.suffix == ".sources" else _one_line(path)
    return found


def find(release: str, root: Path = Path("/")) -> Mirrors:
    """The mirror of `release` and its security archive, as apt on this machine has them."""
    usable = [s for s in sources(root) if s.uri.startswith(SCHEMES)]
    main = next((s for s in usable if release in s.suites), None)
    if main is None:
        looked = ", ".join(str(p) for p in source_files(root)) or f"{root / 'etc/apt'} (no sources files)"
        raise MirrorError(
            f"no Debian mirror for {release} in the apt sources ({looked}); give one with --mirror URL"
        )
    security = next((s for s in usable if f"{release}-security" in s.suites), None)
    return Mirrors(main.uri.rstrip("/"), security.uri.rstrip("/") if security else None, main.origin)
