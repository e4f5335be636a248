"""The loader: safe YAML, duplicate keys, marks, scalars as written, alias limits."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from generator.errors import LoadError
from generator.load import MAX_DEPTH, parse


def _load(text: str) -> object:
    return parse(text.encode(), "p.yaml").data


def _error(text: str) -> str:
    with pytest.raises(LoadError) as info:
        parse(text.encode(), "p.yaml")
    return "\n".join(d.format() for d in info.value.diagnostics)


def test_scalars_stay_as_written() -> None:
    data = _load("mac: 52:54:00:12:34:56\nno: yes\nmtu: 9000\nempty:\nq: '0x10'\n")
    assert data == {"mac": "52:54:00:12:34:56", "no": "yes", "mtu": "9000", "empty": None, "q": "0x10"}


def test_marks_for_values_and_keys() -> None:
    doc = parse(b"hosts:\n  hv1:\n    network: {}\n", "p.yaml")
    assert doc.locate(("hosts", "hv1", "network")).line == 3
    assert doc.locate(("hosts", "hv1", "network")).column == 14
    assert doc.locate(("hosts", "hv1"), on_key=True).column == 3
    # A path that is not written points at its nearest written ancestor.
    assert doc.locate(("hosts", "hv1", "network", "vlans", "x")).line == 3


def test_names_in_lists_are_located_by_index() -> None:
    doc = parse(b"o:\n  hosts: [a, b]\n", "p.yaml")
    assert doc.locate(("o", "hosts", "b")).column == 14


def test_every_duplicate_key_is_reported() -> None:
    message = _error("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n")
    assert "p.yaml:2:1: a: duplicate key 'a' (first defined at line 1, column 1)" in message
    assert "p.yaml:5:3: b.c: duplicate key 'c' (first defined at line 4, column 3)" in message


def test_merge_keys_work_and_explicit_keys_win() -> None:
    data = _load("base: &b {mtu: 1500, dhcp4: true}\nnic:\n  <<: *b\n  mtu: 9000\n")
    assert data == {"base": {"mtu": "1500", "dhcp4": "true"}, "nic": {"mtu": "9000", "dhcp4": "true"}}


def test_merged_key_is_not_a_duplicate() -> None:
    assert _load("b: &b {x: 1}\nc: {<<: *b, x: 2}\n") == {"b": {"x": "1"}, "c": {"x": "2"}}


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['true']\n",
        "a: !!python/name:os.system\n",
        "a: !custom 1\n",
        "a: !!set {x}\n",
    ],
)
def test_tags_that_build_objects_are_refused(text: str) -> None:
    assert "is not allowed: profiles are plain YAML" in _error(text)


def test_alias_bomb_is_refused() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    assert "alias expansion bomb" in _error("\n".join(levels) + "\n")


def test_honest_anchor_reuse_is_fine() -> None:
    hosts = "\n".join(f"  h{i}: *nic" for i in range(2000))
    data = _load(f"nic: &nic {{a: 1, b: 2, c: [1, 2, 3]}}\nhosts:\n{hosts}\n")
    assert isinstance(data, Mapping)
    assert len(data["hosts"]) == 2000


def test_recursive_alias_is_refused() -> None:
    assert "recursive alias" in _error("a: &a [*a]\n")


def test_nesting_limit() -> None:
    assert f"nesting deeper than {MAX_DEPTH}" in _error("a: " + "[" * 100 + "]" * 100 + "\n")
    assert _load("a: " + "[" * 10 + "]" * 10 + "\n") is not None


def test_non_string_keys_are_refused() -> None:
    assert "mapping keys must be plain strings" in _error("? [a, b]\n: 1\n")


def test_syntax_error_has_position() -> None:
    assert _error("a: [1, 2\n").startswith("p.yaml:2:1: YAML syntax error:")


def test_several_documents_are_refused() -> None:
    assert "expected a single document" in _error("a: 1\n---\nb: 2\n")


def test_invalid_utf8() -> None:
    with pytest.raises(LoadError) as info:
        parse(b"a: 1\nb: \xff\n", "p.yaml")
    assert info.value.diagnostics[0].format() == "p.yaml:2:4: file is not valid UTF-8"


@pytest.mark.parametrize(("text", "where"), [("\x1fa: 1\n", "1:1"), ("a: 1\nb: x\x07y\n", "2:5")])
def test_control_characters_are_located(text: str, where: str) -> None:
    """Found by tests/test_fuzz.py: PyYAML's ReaderError has a position, not a mark (was exit 70)."""
    assert _error(text).startswith(f"p.yaml:{where}: character U+00"), _error(text)


def test_missing_file(tmp_path: object) -> None:
    from pathlib import Path

    from generator.load import load

    with pytest.raises(LoadError) as info:
        load(Path(str(tmp_path)) / "nope.yaml", "nope.yaml")
    assert "cannot read profile" in info.value.diagnostics[0].format()
