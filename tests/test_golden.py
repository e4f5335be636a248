"""Every bundled profile is a golden case: its whole output tree is kept in tests/golden.

A change in generated output shows up as a diff of these files in review.
`pytest --update-golden` rewrites them; read the diff before committing it.

Archives are kept readable (tests/support/golden.py):
- a binary file such as `images/dib/<m>/elements/.../bundle.tar.gz` is kept as
  `bundle.tar.gz.listing`: a `[binary file: ...]` line with its size and sha256, then one
  line per member, `<type><mode> <uid>/<gid> <size> <sha256> <name>` (`tar -tv` with the
  content's sha256 in place of the date);
- a base64 payload in a text file (the host's bundle in `pxe/preseed.cfg`,
  `kickstart.cfg`, `autoinstall.yaml`; the preseed's install step) is replaced by a
  `[base64 payload: ...]` line with the size and sha256 of the decoded bytes, followed by
  the same member listing when they are an archive.
A member whose content changes changes its sha256 in the listing; any other byte
(mode, owner, order, compression) changes the sha256 on the marker or header line.
To see a member's text, read the file it was made from in the same golden tree
(`hosts/<host>/rootfs/...`, `hosts/<host>/bootstrap.sh`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from generator import layout
from generator.pipeline import artifacts_for, plan_profile
from tests.support.golden import LISTING, golden_file

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
GOLDEN = REPO / "tests" / "golden"


def test_every_profile_has_a_golden_tree() -> None:
    assert {p.stem for p in PROFILES} == {d.name for d in GOLDEN.iterdir() if d.is_dir()}


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_output_matches_golden(profile: Path, update_golden: bool) -> None:
    kept = dict(golden_file(a.path, a.content) for a in artifacts_for(plan_profile(profile)))
    golden = GOLDEN / profile.stem
    if update_golden:
        shutil.rmtree(golden, ignore_errors=True)
        for path, content in kept.items():
            target = golden / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    expected = {p.relative_to(golden).as_posix() for p in golden.rglob("*") if p.is_file()}
    assert set(kept) == expected
    for path, content in kept.items():
        assert content.decode() == (golden / path).read_text(encoding="utf-8"), path


#: A regular file's line in a listing: mode, owner, size, sha256, name.
_MEMBER = re.compile(r"^\s*-[0-7]{4} \d+/\d+ +\d+ (?P<sha256>[0-9a-f]{64}) (?P<name>\S+)$", re.MULTILINE)


def _carriers(golden: Path, host: str) -> list[Path]:
    """The golden files that list host `host`'s bundle: its PXE answer file and its image element."""
    found = list((golden / layout.pxe_dir(host)).glob("*"))
    found += (golden / layout.element_dir(host, "host")).rglob(f"*{LISTING}")
    return found


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_bundle_listings_match_the_files_beside_them(profile: Path) -> None:
    """Each member of a host's bundle, as listed in its PXE answer file and image element, is
    the golden file at the same place under hosts/<host>/: a reviewer reads that one."""
    golden = GOLDEN / profile.stem
    hosts = [d.name for d in (golden / layout.HOSTS).iterdir()]
    assert hosts
    for host in hosts:
        carriers = _carriers(golden, host)
        assert len(carriers) == 2, carriers
        for carrier in carriers:
            members = {m["name"]: m["sha256"] for m in _MEMBER.finditer(carrier.read_text())}
            assert layout.BOOTSTRAP in members, carrier
            for name, digest in members.items():
                beside = golden / layout.host_dir(host) / name
                assert hashlib.sha256(beside.read_bytes()).hexdigest() == digest, (carrier, name)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


ONE = _tar_gz({"bootstrap.sh": b"#!/bin/sh\ntrue\n", "rootfs/etc/a.conf": b"a=1\n" * 100})
#: The same archive but one byte of one member.
TWO = _tar_gz({"bootstrap.sh": b"#!/bin/sh\ntrue\n", "rootfs/etc/a.conf": b"a=2\n" + b"a=1\n" * 99})


def _wrapped(data: bytes, indent: str) -> str:
    text = base64.b64encode(data).decode()
    return "".join(f"{indent}{text[i : i + 76]}\n" for i in range(0, len(text), 76))


def test_a_binary_archive_is_kept_as_a_listing_of_its_members() -> None:
    path, content = golden_file("images/x/bundle.tar.gz", ONE)
    assert path == "images/x/bundle.tar.gz" + LISTING
    lines = content.decode().splitlines()
    assert lines[0].startswith(f"[binary file: tar archive, {len(ONE)} bytes, sha256 ")
    assert [line.split()[-1] for line in lines[1:]] == ["bootstrap.sh", "rootfs/etc/a.conf"]
    assert lines[2].startswith("-0644 0/0     400 ")
    assert golden_file("images/x/bundle.tar.gz", TWO)[1] != content


@pytest.mark.parametrize(
    "embed",
    [
        lambda data: f"late \\\n {base64.b64encode(data).decode()} \\\n | base64 -d\n",  # preseed
        lambda data: f"base64 -d <<'EOF'\n{_wrapped(data, '')}EOF\n",  # kickstart
        lambda data: f"  - |\n    cat <<'EOF'\n{_wrapped(data, '    ')}    EOF\n",  # autoinstall
    ],
    ids=["one-line", "wrapped", "wrapped-indented"],
)
def test_a_base64_payload_in_text_is_replaced_by_its_listing(embed: Callable[[bytes], str]) -> None:
    path, content = golden_file("hosts/h/pxe/answer", embed(ONE).encode())
    assert path == "hosts/h/pxe/answer"
    text = content.decode()
    assert "H4sI" not in text  # no base64 of gzip left
    assert f"[base64 payload: tar archive, {len(ONE)} bytes, sha256 " in text
    assert "rootfs/etc/a.conf" in text and "bootstrap.sh" in text
    assert text.startswith(embed(b"")[:4])  # the text around the payload is kept
    assert golden_file("hosts/h/pxe/answer", embed(TWO).encode())[1] != content


def test_short_base64_like_text_is_kept() -> None:
    digest = "ab" * 32  # a sha256 in hex is also base64
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG" + "x" * 30 + " user@host"
    text = f'{{"sha256": "{digest}"}}\n{key}\n'
    assert golden_file("manifest.json", text.encode()) == ("manifest.json", text.encode())
