"""Stage 1: read a profile file as safe YAML, remembering where every node came from.

What this stage guarantees to the next one:
- only plain YAML: no tag can build a Python object (`!!python/...` is refused);
- duplicate keys are errors (PyYAML silently keeps the last one);
- scalars are kept as the text the user wrote, except nulls, and are converted per
  field by the model, as netplan does. So an unquoted MAC address such as
  52:54:00:12:34:56 stays a MAC address instead of becoming a YAML 1.1 base-60 integer,
  and a key named `no` stays the string "no";
- anchors, aliases and `<<` merge keys work, but an alias expansion bomb is refused
  after a bounded amount of work, as are recursive aliases and nesting deeper than 64;
- every value and every key has a line/column mark, addressed by its key path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from generator.errors import Diagnostic, KeyPath, LoadError, Location

# libyaml makes composing ~10x faster; PyYAML wheels ship it, but fall back if absent.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Deepest nesting accepted. Real profiles stay below 12. (libyaml itself stops at 1000
#: levels; the walk below is recursive and must stay well inside Python's stack.)
MAX_DEPTH = 64
#: Nodes that aliases may add on top of the nodes written in the file: a fixed
#: allowance plus a multiple of the file's own size. A "billion laughs" file needs
#: 10^9; honest reuse of an anchor across a large fleet stays far below.
#: Largest profile file read: composing 4 MiB of YAML takes ~250 MiB. A 10,000-guest
#: profile is 1-3 MiB.
MAX_BYTES = 4 * 2**20
#: The most machines one profile may have, checked as soon as the file is composed (before
#: anything is built per machine): a 1000-host full-mesh fleet builds in ~7 s and 250 MiB,
#: and the mesh grows as hosts squared (docs/performance.md).
MACHINE_LIMITS = {"hosts": 2000, "guests": 10_000}
ALIAS_ALLOWANCE = 10_000
ALIAS_RATIO = 10

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "timestamp"))
_COLLECTION_TAGS = frozenset(("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"))

Data = Any  # Text | None | Mapping[str, Data] | tuple[Data, ...]
_STR_TAG = "tag:yaml.org,2002:str"


class Text(str):
    """A scalar as the user wrote it, remembering what YAML itself would have made of it.

    The model converts text per field, as netplan does; where a profile carries data for
    another YAML consumer (extra cloud-config), `typed()` gives back the value cloud-init's
    own `yaml.safe_load` would see: `true` a boolean, `5` a number, `"5"` a string.
    """

    __slots__ = ("yaml_tag",)
    yaml_tag: str

    def __new__(cls, value: str, yaml_tag: str) -> Text:
        text = super().__new__(cls, value)
        text.yaml_tag = yaml_tag
        return text

    def typed(self) -> object:
        if self.yaml_tag in (_STR_TAG, "tag:yaml.org,2002:timestamp"):
            return str(self)
        loaded: object = yaml.safe_load(str(self))
        return loaded


#: (line, column), both 1-based.
Mark = tuple[int, int]


@dataclass(frozen=True)
class Document:
    """A loaded profile: read-only data plus the position of every key and value."""

    name: str  # how errors name the file
    data: Data  # read-only: mappings are MappingProxyType, sequences are tuples
    value_marks: Mapping[KeyPath, Mark]
    key_marks: Mapping[KeyPath, Mark]
    digest: str  # sha256 of the file's bytes

    def locate(self, path: KeyPath, *, on_key: bool = False) -> Location:
        """Where `path` is written; the nearest written ancestor if the path itself is not."""
        path = self._as_written(path)
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            mark = (self.key_marks.get(prefix) if on_key and end == len(path) else None) or (
                self.value_marks.get(prefix)
            )
            if mark is not None:
                return Location(self.name, *mark)
        return Location(self.name, 1, 1)

    def _as_written(self, path: KeyPath) -> KeyPath:
        """Later stages address `hosts: [hv1, hv2]` by name (`hosts.hv2`); the file has an index."""
        node = self.data
        out: list[str | int] = []
        for part in path:
            step: str | int = part
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, tuple) and isinstance(part, str) and part in node:
                step = node.index(part)
                node = node[step]
            else:
                node = None
            out.append(step)
        return tuple(out)

    def place(self, diagnostic: Diagnostic) -> Diagnostic:
        """The same diagnostic, located in this document by its key path."""
        if diagnostic.location is not None:
            return diagnostic
        return replace(diagnostic, location=self.locate(diagnostic.path, on_key=diagnostic.on_key))


def _at(name: str, mark: Any) -> Location:
    return Location(name, mark.line + 1, mark.column + 1) if mark is not None else Location(name, 1, 1)


def load(path: Path, name: str | None = None) -> Document:
    """Read `path`; errors name it as `name` (default: the path as given)."""
    shown = name or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:  # refused before reading: bounded memory whatever the file
            message = (
                f"profile is {size / 2**20:.1f} MiB; kvmnet reads at most {MAX_BYTES // 2**20} MiB "
                "(a 1000-host fleet is ~0.2 MiB): split the fleet into several profiles"
            )
            raise LoadError([Diagnostic(message, (), Location(shown, 1, 1))])
        raw = path.read_bytes()
    except OSError as exc:
        message = f"cannot read profile: {exc.strerror or exc}"
        raise LoadError([Diagnostic(message, (), Location(shown, 1, 1))]) from None
    return parse(raw, shown)


def parse(raw: bytes, name: str) -> Document:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LoadError([Diagnostic("file is not valid UTF-8", (), Location(name, line, col))]) from None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise LoadError([_yaml_error(name, exc)]) from None
    except yaml.reader.ReaderError as exc:
        # Characters YAML does not allow anywhere (control characters, found by fuzzing):
        # the reader knows only the position in the text, not a line and column.
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})"
        raise LoadError([Diagnostic(message, (), Location(name, line, col))]) from None
    except RecursionError:  # only PyYAML's pure-Python composer recurses; libyaml caps depth
        message = f"nesting deeper than {MAX_DEPTH} levels is not accepted"
        raise LoadError([Diagnostic(message, (), Location(name, 1, 1))]) from None
    _check_limits(root, name)
    walker = _Walker(name)
    data = walker.build(root)
    if walker.problems:
        raise LoadError(walker.problems)
    return Document(
        name=name,
        data=data,
        value_marks=MappingProxyType(walker.value_marks),
        key_marks=MappingProxyType(walker.key_marks),
        digest=hashlib.sha256(raw).hexdigest(),
    )


def _check_limits(root: yaml.Node | None, name: str) -> None:
    if not isinstance(root, yaml.MappingNode):
        return
    problems = [
        Diagnostic(
            f"{len(value.value)} {key.value} in one profile; kvmnet accepts at most {limit}: "
            "split the fleet into several profiles",
            (key.value,),
            _at(name, key.start_mark),
        )
        for key, value in root.value
        if isinstance(key, yaml.ScalarNode)
        and (limit := MACHINE_LIMITS.get(key.value)) is not None
        and isinstance(value, yaml.MappingNode)
        and len(value.value) > limit
    ]
    if problems:
        raise LoadError(problems)


def _yaml_error(name: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    context_line = exc.context_mark.line if exc.context_mark else None
    if (
        exc.context
        and exc.problem_mark
        and context_line is not None
        and context_line != exc.problem_mark.line
    ):
        problem = f"{problem} ({exc.context} at line {context_line + 1})"
    elif exc.context:
        problem = f"{exc.context}: {problem}"
    return Diagnostic(f"YAML syntax error: {problem}", (), _at(name, mark))


class _Walker:
    """Turns the composed node graph into read-only data and a mark table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value_marks: dict[KeyPath, Mark] = {}
        self.key_marks: dict[KeyPath, Mark] = {}
        self.problems: list[Diagnostic] = []
        self._seen: set[int] = set()
        self._revisits = 0
        self._budget = ALIAS_ALLOWANCE
        self._root: yaml.Node | None = None
        self._stack: set[int] = set()

    def build(self, root: yaml.Node | None) -> Data:
        if root is None:
            return None
        self._root = root
        return self._node(root, (), 0)

    def _node(self, node: yaml.Node, path: KeyPath, depth: int) -> Data:
        key = id(node)
        mark = node.start_mark
        if key in self._seen:
            if key in self._stack:
                raise LoadError(
                    [Diagnostic("recursive alias: a node contains itself", (), _at(self.name, mark))]
                )
            self._revisits += 1
            if self._revisits > self._budget:
                self._check_budget(path)
        else:
            self._seen.add(key)
        self.value_marks[path] = (mark.line + 1, mark.column + 1)
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag == _NULL_TAG:
                return None
            if tag in _PLAIN_TAGS:
                return Text(node.value, tag if not node.style else _STR_TAG)  # quoted: text
            self.problems.append(self._bad_tag(node, path))
            return None
        if depth >= MAX_DEPTH:
            message = f"nesting deeper than {MAX_DEPTH} levels is not accepted"
            raise LoadError([Diagnostic(message, (), _at(self.name, mark))])
        if tag not in _COLLECTION_TAGS:
            self.problems.append(self._bad_tag(node, path))
            return None
        self._stack.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                return tuple(self._node(item, (*path, i), depth + 1) for i, item in enumerate(node.value))
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path, depth)
        finally:
            self._stack.discard(key)

    def _check_budget(self, path: KeyPath) -> None:
        # Sized lazily: most profiles never reuse anything this much.
        if self._root is not None and self._budget == ALIAS_ALLOWANCE:
            self._budget = ALIAS_ALLOWANCE + ALIAS_RATIO * _count_nodes(self._root)
        if self._revisits > self._budget:
            raise LoadError([self._bomb(path)])

    def _bad_tag(self, node: yaml.Node, path: KeyPath) -> Diagnostic:
        tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
        return Diagnostic(
            f"YAML tag {tag!r} is not allowed: profiles are plain YAML "
            "(strings, numbers, booleans, lists, mappings)",
            path,
            _at(self.name, node.start_mark),
        )

    def _bomb(self, path: KeyPath) -> Diagnostic:
        message = (
            f"aliases expand to more than {self._budget} nodes; refusing a possible "
            "alias expansion bomb (use fewer nested aliases)"
        )
        # The composed graph no longer knows where the alias was written; the nearest
        # key written in the file on the way to it is the useful place to point at.
        for end in range(len(path), -1, -1):
            mark = self.key_marks.get(path[:end])
            if mark is not None:
                return Diagnostic(message, path[:end], Location(self.name, *mark))
        return Diagnostic(message, (), Location(self.name, 1, 1))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> Mapping[str, Data]:
        result: dict[str, Data] = {}
        merges: list[yaml.Node] = []
        explicit: list[tuple[str, yaml.Node, yaml.Node]] = []
        first_seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL_TAG:
                message = "mapping keys must be plain strings"
                self.problems.append(Diagnostic(message, path, _at(self.name, key_node.start_mark)))
                continue
            key = str(key_node.value)
            if key in first_seen:
                first = first_seen[key].start_mark
                self.problems.append(
                    Diagnostic(
                        f"duplicate key {key!r} (first defined at line {first.line + 1}, "
                        f"column {first.column + 1}); each key may appear once",
                        (*path, key),
                        _at(self.name, key_node.start_mark),
                    )
                )
                continue
            first_seen[key] = key_node
            explicit.append((key, key_node, value_node))
        # YAML merge keys: earlier merged mappings win over later ones, explicit keys win over all.
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode):
                    message = "a '<<' merge key takes a mapping or a list of mappings"
                    self.problems.append(Diagnostic(message, path, _at(self.name, source.start_mark)))
                    continue
                merged = self._node(source, path, depth)
                if isinstance(merged, Mapping):
                    result.update(merged)
        key_marks = self.key_marks
        for key, key_node, value_node in explicit:
            sub = (*path, key)
            start = key_node.start_mark
            key_marks[sub] = (start.line + 1, start.column + 1)
            result[key] = self._node(value_node, sub, depth + 1)
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        return MappingProxyType(result)


def _count_nodes(root: yaml.Node) -> int:
    """Distinct nodes in the graph (aliases point at existing nodes and are not counted twice)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                todo.append(k)
                todo.append(v)
    return len(seen)
