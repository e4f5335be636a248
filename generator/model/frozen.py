"""Read-only mappings for the frozen Profile and Plan.

A frozen pydantic model still hands out its dicts, which anyone could change
(`profile.hosts.clear()`): the model's mappings are `FrozenDict`s, dicts that refuse
changes. Free-form data (a guest's extra cloud-config) gets the same treatment all the
way down (`frozen_dict`: keys sorted, lists as tuples), in the profile and in the plan.
A dict subclass rather than a read-only view (types.MappingProxyType), because pydantic
serialises it as a dict, `dataclasses.asdict` (`kvmnet plan --json`) copies it, and copy
and pickle work.
Renderers take a plain copy with `thawed` (YAML's safe dumper knows only plain types).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeAlias, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    """A dict that cannot be changed after it is made (and so can be hashed)."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:
        # copy and pickle rebuild a dict item by item, which this one refuses.
        return (type(self), (dict(self),))


Json: TypeAlias = "str | int | float | bool | tuple[Json, ...] | FrozenDict[str, Json] | None"
#: Free-form data read from YAML, frozen.
FrozenData: TypeAlias = "FrozenDict[str, Json]"

#: The empty one (a default for dataclass fields).
EMPTY: FrozenData = FrozenDict()


def frozen_dict(data: Mapping[str, object]) -> FrozenData:
    """`data` (what YAML or JSON gives: dicts, lists, scalars) with every dict a FrozenDict
    whose keys are sorted, and every list a tuple."""
    return FrozenDict((str(k), frozen(data[k])) for k in sorted(data, key=str))


def frozen(data: object) -> Json:
    """One value of `frozen_dict`."""
    if isinstance(data, Mapping):
        return frozen_dict(data)
    if isinstance(data, list | tuple):
        return tuple(frozen(item) for item in data)
    if data is None or isinstance(data, str | int | float):
        return data
    raise TypeError(f"not JSON data: {type(data).__name__}")


def thawed(data: FrozenData) -> dict[str, Any]:
    """A plain copy of frozen data: dicts and lists again."""
    return {k: _thawed(v) for k, v in data.items()}


def _thawed(data: Json) -> Any:
    if isinstance(data, FrozenDict):
        return thawed(data)
    if isinstance(data, tuple):
        return [_thawed(item) for item in data]
    return data
