"""YAML output for humans: yaml.safe_dump, with multi-line strings (scripts, config
files carried inside cloud-config) as literal blocks rather than quoted one-liners."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's emitter where PyYAML has it: the pure-Python one took ~10 ms per guest's
# user-data (a 2000-guest build spent most of its time there).
_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type, misc]
    """yaml.safe_dump's dumper, writing multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # A literal block cannot hold trailing spaces or tabs at line ends faithfully in every
    # parser; such text keeps the quoted style, which is exact.
    literal = "\n" in data and not any(line != line.rstrip() for line in data.split("\n"))
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if literal else None)


_Dumper.add_representer(str, _str)
# and str subclasses (profile text is read as load.Text, a str that remembers its tag)
_Dumper.add_multi_representer(str, _str)


def dump(data: Any) -> str:
    """Deterministic, readable YAML of plain data (key order kept as given)."""
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=False)
    return text
