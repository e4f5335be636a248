"""Stage 2: loaded data -> a frozen, fully typed `Profile`, or every problem at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from generator.errors import Diagnostic, KeyPath, ProfileError
from generator.load import Data, Document, Mark
from generator.model.messages import data_path, translate
from generator.model.profile import Profile

#: Which default is merged under which entries.
_DEFAULTS: tuple[tuple[str, str], ...] = (("host", "hosts"), ("guest", "guests"))
#: The sections keyed by name, whose entries can be planned without the invalid ones.
SECTIONS = ("hosts", "guests", "overlays")


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
        located = [doc.place(translate(error, doc.data, Profile)) for error in exc.errors(include_url=False)]
        raise ProfileError(sorted(_once(located), key=Diagnostic.sort_key)) from None


def _once(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Each problem once: a bad value or key in `defaults` fails for the defaults and
    again in every host or guest it was merged into, at the same line (the merge keeps
    the default's mark), though not always with the same words: a guest takes `host:`,
    `defaults.guest` does not, so their lists of valid keys differ. The defaults' own
    report is the one kept."""
    in_defaults = {d.location for d in diagnostics if d.path[:1] == ("defaults",)}
    out: list[Diagnostic] = []
    seen: set[tuple[object, str]] = set()
    for diagnostic in diagnostics:
        key = (diagnostic.location, diagnostic.message)
        if key in seen or (diagnostic.path[:1] != ("defaults",) and diagnostic.location in in_defaults):
            continue
        seen.add(key)
        out.append(diagnostic)
    return out


@dataclass(frozen=True)
class ValidPart:
    """What can still be planned of a profile that has model errors: the hosts, guests
    and overlays without any, and what the ones left out could have changed elsewhere.

    The plan's errors among the valid entries are worth reporting with the model's (fixing
    the model's errors should not reveal a second list), except where they may come from
    what was left out; `plan/partial.py` decides which those are.
    """

    profile: Profile
    #: (section, name) of every host, guest and overlay left out.
    left_out: frozenset[tuple[str, str]]
    #: Hosts on which a left-out guest may have named taps (`target:`), which those
    #: hosts' `kvmnet.ports` may list.
    tapped_hosts: frozenset[str]
    #: Members of left-out overlays, which would have added a VXLAN device and bridge to
    #: them; None when a left-out overlay's members cannot be read (any host, then).
    overlay_hosts: frozenset[str] | None


def valid_part(doc: Document) -> ValidPart | None:
    """The profile less every host, guest and overlay that has a model error (and less
    `defaults:`, already merged into them; left-out hosts are no overlay's members), or
    None when a problem lies outside those entries (a section that is no mapping, an
    unknown top-level key...): then what is left is not the profile the user meant."""
    if not isinstance(doc.data, Mapping):
        return None
    try:
        Profile.model_validate(_thaw(doc.data))
    except ValidationError as exc:
        paths = [data_path(doc.data, error["loc"])[0] for error in exc.errors(include_url=False)]
    else:
        return None  # nothing to leave out: this is for profiles that failed `validate`
    left_out: set[tuple[str, str]] = set()
    for path in paths:
        if len(path) >= 2 and path[0] in SECTIONS and isinstance(path[1], str):
            left_out.add((str(path[0]), path[1]))
        elif path[:1] != ("defaults",):
            return None
    try:
        profile = Profile.model_validate(_without(doc.data, left_out))
    except ValidationError:
        return None
    tapped: set[str] = set()
    overlaid: set[str] | None = set()
    for section, name in left_out:
        entry = _entry(doc.data, section, name)
        if section == "guests" and isinstance(entry.get("host"), str) and _may_name_taps(entry):
            tapped.add(str(entry["host"]))
        if section == "overlays" and overlaid is not None:
            found = _members(entry.get("hosts"))
            overlaid = None if found is None else overlaid | found
    return ValidPart(
        profile,
        frozenset(left_out),
        frozenset(tapped),
        None if overlaid is None else frozenset(overlaid),
    )


def _without(data: Mapping[str, Data], left_out: set[tuple[str, str]]) -> dict[str, Any]:
    """Plain data for pydantic, less `defaults` and the entries left out."""
    out: dict[str, Any] = _thaw(data)
    out.pop("defaults", None)
    for section, name in left_out:
        out[section].pop(name, None)
    # An overlay with an undefined member is expanded on none: its other members are
    # judged as they would be once the left-out host is fixed, with the overlay on them.
    gone = {name for section, name in left_out if section == "hosts"}
    overlays = out.get("overlays")
    for overlay in overlays.values() if isinstance(overlays, dict) else ():
        members = overlay.get("hosts") if isinstance(overlay, dict) else None
        if isinstance(members, list):
            overlay["hosts"] = [m for m in members if m not in gone]
        elif isinstance(members, dict):
            overlay["hosts"] = {m: v for m, v in members.items() if m not in gone}
    return out


def _entry(data: Mapping[str, Data], section: str, name: str) -> Mapping[str, Data]:
    entries = data.get(section)
    entry = entries.get(name) if isinstance(entries, Mapping) else None
    return entry if isinstance(entry, Mapping) else MappingProxyType({})


def _may_name_taps(guest: Mapping[str, Data]) -> bool:
    interfaces = guest.get("interfaces")
    if interfaces is None:
        return False
    if not isinstance(interfaces, tuple):
        return True  # unreadable: it may have meant any
    return any(not isinstance(nic, Mapping) or "target" in nic for nic in interfaces)


def _members(hosts: Data) -> set[str] | None:
    """An overlay's member host names as written (a list or a mapping), None if unreadable."""
    if isinstance(hosts, Mapping):
        return set(hosts)
    if isinstance(hosts, tuple) and all(isinstance(h, str) for h in hosts):
        return {str(h) for h in hosts}
    return None


__all__ = ["SECTIONS", "ValidPart", "valid_part", "validate", "with_defaults"]
