"""The base every profile model shares: frozen, strict about keys, netplan's kebab-case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from generator.model.frozen import FrozenDict


def kebab(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo like `adress:` must not pass silently)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=kebab,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        hide_input_in_errors=True,
    )


def _empty_entries(value: Any) -> Any:
    """`eno2:` with nothing after it means an entry with every default, as in netplan."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


def _empty_list(value: Any) -> Any:
    return () if value is None else value


def _read_only(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    # A frozen model still hands out its dicts, which anyone could change
    # (`profile.hosts.clear()`): see model/frozen.py.
    return FrozenDict(value)


_NOTHING: Mapping[Any, Any] = FrozenDict()


def no_entries() -> Mapping[Any, Any]:
    """The default of an `Entries` field: empty, and read-only like a validated one."""
    return _NOTHING


K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: A mapping that is read-only once validated (its JSON Schema is a dict's).
ReadOnly = Annotated[Mapping[K, V], AfterValidator(_read_only)]
#: A mapping keyed by name whose entries may be left empty; read-only once validated.
Entries = Annotated[ReadOnly[K, V], BeforeValidator(_empty_entries)]
#: A list that may be written as an empty key.
Items = Annotated[tuple[T, ...], BeforeValidator(_empty_list)]
