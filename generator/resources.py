"""Where the shipped templates and profiles are: inside the wheel, or beside the package.

The wheel carries them as `generator/templates` and `generator/profiles` (hatchling
force-include); a source checkout or an editable install has them at the top of the
repository, the layout the project asked for.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kvmnet is installed without its {name}/ directory")


def templates_dir() -> Path:
    return _find("templates")


def profiles_dir() -> Path:
    return _find("profiles")


def default_profile() -> Path:
    return profiles_dir() / "default.yaml"
