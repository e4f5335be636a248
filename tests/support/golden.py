"""The golden copy of a generated file: what tests/golden keeps so that a diff reads like code.

- A text file is kept as it is, except that each base64 payload in it (the host's bundle
  in a kickstart, preseed or autoinstall; a long payload of any kind) is replaced by a
  `[base64 payload ...]` marker line carrying the size and sha256 of the decoded bytes,
  followed by the listing of the archive those bytes are, if they are one.
- A binary file (a tar.gz of an image element, an ISO) is kept as `<path>.listing`: one
  header line with its size and sha256, then one line per archive member.

A listing line is `<type><mode> <uid>/<gid> <size> <sha256 of the member's bytes> <name>`
(type as in `ls -l`: `-` file, `d` directory, `l` symlink; directories have no sha256,
shown `-`). Each marker and header carries the sha256 of the whole payload or file, so
a change of any byte (a member's content, mode, owner or order, the compression) fails
the golden test, and the member lines say which file changed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import tarfile

#: What a golden listing's path adds to the artifact's path.
LISTING = ".listing"
#: The shortest base64 run taken for a payload: longer than a hex sha256 (64) or an
#: ed25519 public key (68), shorter than any bundle.
MIN_PAYLOAD = 200
#: Line length of wrapped base64 (what `base64` writes, and generator/renderers/pxe.py).
B64_LINE = 76

_B64_CHARS = "A-Za-z0-9+/"
_INLINE = re.compile(rf"(?<![{_B64_CHARS}=])[{_B64_CHARS}]{{{MIN_PAYLOAD},}}={{0,2}}(?![{_B64_CHARS}=])")
_WRAPPED = re.compile(rf"([ \t]*)([{_B64_CHARS}]+={{0,2}})")
_TYPES = {tarfile.REGTYPE: "-", tarfile.AREGTYPE: "-", tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l"}


def golden_file(path: str, content: bytes) -> tuple[str, bytes]:
    """The golden path and content kept for the artifact `path` with bytes `content`."""
    text = _text(content)
    if text is None:
        members = _members(content)
        listing = [_describe("binary file", content, members), *members]
        return path + LISTING, "".join(f"{line}\n" for line in listing).encode("utf-8")
    return path, _replace_payloads(text).encode("utf-8")


def _text(content: bytes) -> str | None:
    """`content` as text, or None for bytes a text file does not hold (NUL: an uncompressed tar)."""
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _describe(what: str, data: bytes, members: list[str]) -> str:
    kind = "tar archive" if members else "not an archive"
    return f"[{what}: {kind}, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}]"


def _members(data: bytes) -> list[str]:
    """One line per member of the tar archive (compressed or not) `data`; [] if it is none."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            return [_member(tar, info) for info in tar.getmembers()]
    except (tarfile.TarError, EOFError, OSError):
        return []


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> str:
    digest = "-" * 64
    if info.isfile():
        extracted = tar.extractfile(info)
        assert extracted is not None
        digest = hashlib.sha256(extracted.read()).hexdigest()
    name = f"{info.name} -> {info.linkname}" if info.issym() or info.islnk() else info.name
    kind = _TYPES.get(info.type, "?")
    return f"{kind}{info.mode:04o} {info.uid}/{info.gid} {info.size:>7} {digest} {name}"


def _decoded(payload: str) -> bytes | None:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def _payload_lines(indent: str, data: bytes) -> list[str]:
    members = _members(data)
    return [indent + _describe("base64 payload", data, members), *(f"{indent}  {line}" for line in members)]


def _wrapped_block(lines: list[str], start: int) -> tuple[int, str, str] | None:
    """The base64 block wrapped at B64_LINE that starts at `lines[start]`, as (end, indent,
    payload); None if none starts there."""
    first = _WRAPPED.fullmatch(lines[start])
    if first is None or len(first.group(2)) != B64_LINE:
        return None
    indent, parts, end = first.group(1), [first.group(2)], start + 1
    while end < len(lines) and len(parts[-1]) == B64_LINE:
        match = _WRAPPED.fullmatch(lines[end])
        if match is None or match.group(1) != indent or len(match.group(2)) > B64_LINE:
            break
        parts.append(match.group(2))
        end += 1
    payload = "".join(parts)
    return (end, indent, payload) if len(payload) >= MIN_PAYLOAD else None


def _replace_payloads(text: str) -> str:
    lines = text.split("\n")
    kept: list[str] = []
    index = 0
    while index < len(lines):
        block = _wrapped_block(lines, index)
        data = _decoded(block[2]) if block else None
        if block is not None and data is not None:
            kept.extend(_payload_lines(block[1], data))
            index = block[0]
            continue
        line = lines[index]
        after: list[str] = []
        for match in reversed(list(_INLINE.finditer(lines[index]))):
            inline = _decoded(match.group())
            if inline is None:
                continue
            described = _payload_lines("", inline)
            line = line[: match.start()] + described[0] + line[match.end() :]
            indent = re.match(r"[ \t]*", line)
            after = [(indent.group() if indent else "") + member for member in described[1:]] + after
        kept.append(line)
        kept.extend(after)
        index += 1
    return "\n".join(kept)
