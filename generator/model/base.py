"""The base every profile model shares: frozen, strict about keys, netplan's kebab-case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict


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


K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")

#: A mapping keyed by name whose entries may be left empty.
Entries = Annotated[dict[K, V], BeforeValidator(_empty_entries)]
#: A list that may be written as an empty key.
Items = Annotated[tuple[T, ...], BeforeValidator(_empty_list)]
