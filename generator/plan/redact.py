"""What `kvmnet plan --json` shows of secrets: nothing.

The plan carries users' password hashes (they go into user-data, 0600) and the profile's
extra cloud-config, which may hold credentials of its own (chpasswd, tokens, keys). A
plan is printed to terminals and CI logs, so those values are replaced by HIDDEN; the
keys stay, so the plan still says that a value is set.
"""

from __future__ import annotations

import json
import re
from typing import Any

HIDDEN = "(hidden)"
#: Keys of the extra cloud-config whose values are hidden (case-insensitive, anywhere in the key).
_SECRET = re.compile(r"pass|secret|token|private|credential", re.IGNORECASE)


def redacted(data: Any) -> Any:
    """`data` (a plan as from dataclasses.asdict) with secret values replaced."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "passwd" and value is not None:
                out[key] = HIDDEN
            elif key == "cloud_config" and isinstance(value, dict):
                # shown as the compact JSON text it was always shown as
                out[key] = json.dumps(_hide(value), sort_keys=True, separators=(",", ":"))
            else:
                out[key] = redacted(value)
        return out
    if isinstance(data, list | tuple):
        return [redacted(v) for v in data]
    return data


def _hide(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: HIDDEN if _SECRET.search(str(k)) else _hide(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_hide(v) for v in data]
    return data
