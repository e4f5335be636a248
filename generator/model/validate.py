"""Stage 2: loaded data -> a frozen, fully typed `Profile`, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from generator.errors import Diagnostic, KeyPath, ProfileError
from generator.load import Data, Document, Mark
from generator.model.messages import translate
from generator.model.profile import Profile

#: Which default is merged under which entries.
_DEFAULTS: tuple[tuple[str, str], ...] = (("host", "hosts"), ("guest", "guests"))


def with_defaults(doc: Document) -> Document:
    """Merge `defaults.host` under every host and `defaults.guest` under every guest,
    keeping each value's true position.

    Mappings merge key by key (the entry wins); lists and scalars from the entry replace
    the default. A value that came from `defaults` keeps the mark of the line that
    wrote it, so an error in a default points at the default.
    """
    data = doc.data
    if not isinstance(data, Mapping):
        return doc
    defaults = data.get("defaults")
    if not isinstance(defaults, Mapping):
        return doc
    value_marks = dict(doc.value_marks)
    key_marks = dict(doc.key_marks)
    merged = dict(data)
    for kind, section in _DEFAULTS:
        base = defaults.get(kind)
        entries = data.get(section)
        if isinstance(base, Mapping) and base and isinstance(entries, Mapping):
            merged[section] = _merge_section(
                doc, ("defaults", kind), base, section, entries, value_marks, key_marks
            )
    if merged == dict(data):
        return doc
    return replace(
        doc,
        data=MappingProxyType(merged),
        value_marks=MappingProxyType(value_marks),
        key_marks=MappingProxyType(key_marks),
    )


def _merge_section(
    doc: Document,
    origin: KeyPath,
    base: Mapping[str, Data],
    section: str,
    entries: Mapping[str, Data],
    value_marks: dict[KeyPath, Mark],
    key_marks: dict[KeyPath, Mark],
) -> Data:
    n = len(origin)
    base_values = [(p[n:], m) for p, m in doc.value_marks.items() if p[:n] == origin]
    base_keys = [(p[n:], m) for p, m in doc.key_marks.items() if p[:n] == origin]

    def copy_marks(suffix: KeyPath, target: KeyPath) -> None:
        k = len(suffix)
        for sub, mark in base_values:
            if sub[:k] == suffix:
                value_marks.setdefault((*target, *sub[k:]), mark)
        for sub, mark in base_keys:
            if sub[:k] == suffix:
                key_marks.setdefault((*target, *sub[k:]), mark)

    def merge(default: Data, own: Data, suffix: KeyPath, target: KeyPath) -> Data:
        if own is None:
            copy_marks(suffix, target)
            return default
        if not isinstance(default, Mapping) or not isinstance(own, Mapping):
            return own
        out: dict[str, Data] = dict(own)
        for key, value in default.items():
            if key in own:
                out[key] = merge(value, own[key], (*suffix, key), (*target, key))
            else:
                copy_marks((*suffix, key), (*target, key))
                out[key] = value
        return MappingProxyType(out)

    return MappingProxyType(
        {
            name: merge(base, entry if entry is not None else MappingProxyType({}), (), (section, name))
            for name, entry in entries.items()
        }
    )


def _thaw(data: Data) -> Any:
    """Plain dicts and lists for pydantic, which does not take MappingProxyType for models."""
    if isinstance(data, Mapping):
        return {k: _thaw(v) for k, v in data.items()}
    if isinstance(data, tuple):
        return [_thaw(v) for v in data]
    return data


def validate(doc: Document) -> Profile:
    if doc.data is None:
        raise ProfileError(
            [
                Diagnostic(
                    "profile is empty: expected a mapping with hosts:, overlays:, guests:, defaults:",
                    (),
                    doc.locate(()),
                )
            ]
        )
    if not isinstance(doc.data, Mapping):
        raise ProfileError(
            [
                Diagnostic(
                    "the top level must be a mapping (hosts:, overlays:, guests:, defaults:)",
                    (),
                    doc.locate(()),
                )
            ]
        )
    try:
        return Profile.model_validate(_thaw(doc.data))
    except ValidationError as exc:
        diagnostics: list[Diagnostic] = []
        seen: set[tuple[object, str]] = set()
        for error in exc.errors(include_url=False):
            problem = translate(error, doc.data, Profile)
            located = doc.place(problem)
            # A bad value in `defaults` fails once for the defaults and again in every
            # host it was merged into; the first report (the defaults' own) is enough.
            if (located.location, located.message) in seen:
                continue
            seen.add((located.location, located.message))
            diagnostics.append(located)
        raise ProfileError(sorted(diagnostics, key=Diagnostic.sort_key)) from None


__all__ = ["validate", "with_defaults"]
