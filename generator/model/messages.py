"""Turn pydantic's validation errors into located messages that say what would be valid."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from generator.errors import Diagnostic, KeyPath
from generator.model.host import SHAPE_KINDS
from generator.model.network import TUNNEL_MODES

#: The tag key of each discriminated union in the model, and its tags.
_TAGS = {"mode": TUNNEL_MODES, "kind": SHAPE_KINDS}

#: netplan keys that exist but that kvmnet does not write for networkd (yet). Named
#: so that a pasted netplan file gets "not supported", not "unknown key".
NETPLAN_UNSUPPORTED = frozenset(
    [
        "critical",
        "dhcp-identifier",
        "dhcp4-overrides",
        "dhcp6-overrides",
        "ipv6-address-generation",
        "ipv6-address-token",
        "ipv6-mtu",
        "ipv6-privacy",
        "routing-policy",
        "activation-mode",
        "emit-lldp",
        "ignore-carrier",
        "infiniband-mode",
        "openvswitch",
        "wakeonwlan",
        "driver",
        "sriov",
        "embedded-switch-mode",
        "delay-virtual-functions-rebind",
        "virtual-function-count",
        "neigh-suppress",
        "link-local-ipv6",
        "wifis",
        "modems",
        "vrfs",
        "nm-devices",
        "virtual-ethernets",
        "access-points",
        "auth",
        "keys",
        "mptcp",
        "port-range",
        "flow-label",
        "do-not-fragment",
        "short-circuit",
        "notifications",
        "checksums",
        "extensions",
        "arp-proxy",
        "type-of-service",
        "aging",
        "ageing",
        "input-key",
        "output-key",
        "key",
    ]
)


def data_path(data: Any, loc: Sequence[str | int]) -> tuple[KeyPath, bool]:
    """Map pydantic's `loc` onto the user's data.

    pydantic inserts entries that are not in the data (a union member's tag such as
    'vxlan', '[key]' for a bad mapping key); those are dropped. Returns the path and
    whether the error is about a key rather than a value.
    """
    path: list[str | int] = []
    node = data
    on_key = False
    for index, part in enumerate(loc):
        if part == "[key]":
            on_key = True
            continue
        found, child = _child(node, part)
        if found:
            node = child
            path.append(part)
        elif isinstance(node, Mapping) and isinstance(part, str) and index == len(loc) - 1:
            # A required key that is missing: name it, the location is its mapping's.
            path.append(part)
            node = None
    return tuple(path), on_key


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        # flattened: an optional discriminated union is a union holding an Annotated union
        return [m for a in get_args(tp) if a is not type(None) for m in _members(a)]
    return [tp]


def model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class whose keys are expected at `loc` (pydantic's loc, tags included)."""
    current: Any = root
    for part in loc:
        candidates = _members(current)
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        nxt: Any = None
        for model in models:
            if isinstance(part, str):
                for name, field in model.model_fields.items():
                    if (field.alias or name) == part:
                        nxt = field.annotation
                        break
            if nxt is not None:
                break
        if nxt is None and len(models) > 1 and isinstance(part, str):
            # Discriminated union: pydantic puts the tag ('vxlan') in the path.
            for model in models:
                for tag in _TAGS:
                    tagged = model.model_fields.get(tag)
                    if tagged is not None and part in get_args(_unwrap(tagged.annotation)):
                        nxt = model
        if nxt is None:
            for cand in candidates:
                origin = get_origin(cand)
                if origin in (dict, Mapping):
                    nxt = get_args(cand)[1]
                elif origin in (list, tuple) and isinstance(part, int):
                    nxt = get_args(cand)[0]
        if nxt is None:
            return None
        current = nxt
    models = [c for c in _members(current) if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def valid_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)


def translate(error: ErrorDetails, data: Any, root: type[BaseModel]) -> Diagnostic:
    """One pydantic error -> one unlocated Diagnostic with a message naming what would be valid."""
    loc = error["loc"]
    kind = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    path, on_key = data_path(data, loc)
    value = _value_at(data, path)
    if kind == "kvmnet":
        return Diagnostic(str(ctx["msg"]), path, on_key=on_key)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = model_at(root, loc[:-1])
        keys = valid_keys(model) if model else []
        refused: Mapping[str, str] = getattr(model, "REFUSED_KEYS", {}) if model else {}
        if key in refused:
            return Diagnostic(f"{key!r} is refused here: {refused[key]}", path, on_key=True)
        if key in NETPLAN_UNSUPPORTED:
            message = f"netplan key {key!r} is not supported by kvmnet"
        else:
            message = f"unknown key {key!r}"
            close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
        if keys:
            message += f" (valid keys here: {', '.join(keys)})"
        return Diagnostic(message, path, on_key=True)
    if kind == "missing":
        return Diagnostic(f"missing required key {str(loc[-1])!r}", path[:-1])
    if kind == "union_tag_invalid":
        key = str(ctx.get("discriminator", "mode")).strip("'")
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return Diagnostic(f"unsupported {key} {ctx.get('tag')!r}; kvmnet supports: {tags}", (*path, key))
    if kind == "union_tag_not_found":
        key = str(ctx.get("discriminator", "mode")).strip("'")
        return Diagnostic(f"missing required key {key!r} (one of: {', '.join(_TAGS.get(key, ()))})", path)
    if kind == "literal_error":
        return Diagnostic(f"{_kind(value)} is not valid here; expected one of: {ctx.get('expected')}", path)
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return Diagnostic(f"expected a mapping, got {_kind(value)}", path)
    if kind in ("list_type", "tuple_type", "sequence_str"):
        return Diagnostic(f"expected a list, got {_kind(value)}", path)
    if kind in ("string_type", "str_type"):
        return Diagnostic(f"expected a string, got {_kind(value)}", path)
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return Diagnostic(f"expected a whole number, got {_kind(value)}", path)
    if kind in ("bool_type", "bool_parsing"):
        return Diagnostic(f"expected true or false, got {_kind(value)}", path)
    if kind == "value_error":
        return Diagnostic(str(ctx.get("error", error["msg"])), path)
    return Diagnostic(error["msg"], path)


def _child(node: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(node, Mapping) and part in node:
        return True, node[part]
    if isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _value_at(data: Any, path: KeyPath) -> Any:
    node = data
    for part in path:
        found, node = _child(node, part)
        if not found:
            return None
    return node


__all__ = ["NETPLAN_UNSUPPORTED", "data_path", "model_at", "translate", "valid_keys"]
