"""The validated Profile cannot be changed: not its fields (pydantic's frozen models) and
not the mappings it holds (read-only views)."""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from generator.load import load
from generator.model.frozen import FrozenDict
from generator.model.profile import Profile
from generator.model.validate import validate

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))


def _mappings(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every mapping in a validated model, with where it is."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _mappings(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, Mapping):
        yield path, value
        for key, item in value.items():
            yield from _mappings(item, f"{path}[{key!r}]")
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from _mappings(item, f"{path}[{index}]")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_mapping_of_a_profile_is_read_only(path: Path) -> None:
    profile = validate(load(path))
    found = list(_mappings(profile, "profile"))
    assert len(found) >= 4, "the walk saw no mappings"
    writable = [where for where, m in found if isinstance(m, dict) and not isinstance(m, FrozenDict)]
    assert writable == []


def test_mutating_a_profile_fails() -> None:
    profile = validate(load(REPO / "profiles" / "default.yaml"))
    assert profile.hosts
    with pytest.raises(TypeError):
        profile.hosts.clear()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        profile.hosts["hv9"] = next(iter(profile.hosts.values()))  # type: ignore[index]
    host = next(iter(profile.hosts.values()))
    with pytest.raises(TypeError):
        host.network.ethernets["eth9"] = next(iter(host.network.ethernets.values()))  # type: ignore[index]
    with pytest.raises(ValidationError):
        profile.hosts = {}  # type: ignore[misc]
    assert Profile().hosts == {}
    guests = validate(load(REPO / "profiles" / "guests.yaml")).guests
    extra = next(g.cloud_config for g in guests.values() if g.cloud_config)
    with pytest.raises(TypeError):
        extra["bootcmd"] = ()
    with pytest.raises(TypeError):
        Profile().hosts["hv1"] = host  # type: ignore[index]


def test_a_read_only_profile_still_serialises() -> None:
    profile = validate(load(REPO / "profiles" / "default.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when it serialises an unexpected type
        dumped = json.loads(profile.model_dump_json(by_alias=True))
    assert sorted(dumped["hosts"]) == sorted(profile.hosts)


def test_a_read_only_profile_can_be_copied_and_pickled() -> None:
    profile = validate(load(REPO / "profiles" / "guests.yaml"))
    assert copy.deepcopy(profile) == profile
    assert pickle.loads(pickle.dumps(profile)) == profile
