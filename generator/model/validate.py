"""Stage 2: loaded data -> a frozen, fully typed `Profile`, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from generator.errors import Diagnostic, KeyPath, ProfileError
from generator.load import Data, Document
from generator.model.messages import translate
from generator.model.profile import Profile

_HOST_DEFAULTS: KeyPath = ("defaults", "host")


def with_defaults(doc: Document) -> Document:
    """Merge `defaults.host` under every host, keeping each value's true position.

    Mappings merge key by key (the host wins); lists and scalars from the host replace
    the default. A value that came from `defaults` keeps the mark of the line that
    wrote it, so an error in a default points at the default.
    """
    data = doc.data
    if not isinstance(data, Mapping):
        return doc
    defaults = data.get("defaults")
    base = defaults.get("host") if isinstance(defaults, Mapping) else None
    hosts = data.get("hosts")
    if not isinstance(base, Mapping) or not base or not isinstance(hosts, Mapping):
        return doc
    value_marks = dict(doc.value_marks)
    key_marks = dict(doc.key_marks)
    n = len(_HOST_DEFAULTS)
    base_values = [(p[n:], m) for p, m in doc.value_marks.items() if p[:n] == _HOST_DEFAULTS]
    base_keys = [(p[n:], m) for p, m in doc.key_marks.items() if p[:n] == _HOST_DEFAULTS]

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

    merged_hosts = {
        name: merge(base, host if host is not None else MappingProxyType({}), (), ("hosts", name))
        for name, host in hosts.items()
    }
    merged = dict(data)
    merged["hosts"] = MappingProxyType(merged_hosts)
    return replace(
        doc,
        data=MappingProxyType(merged),
        value_marks=MappingProxyType(value_marks),
        key_marks=MappingProxyType(key_marks),
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
