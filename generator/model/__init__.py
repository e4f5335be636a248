"""Stage 2: the profile schema (pydantic, frozen, unknown keys rejected)."""

from generator.model.guest import Guest
from generator.model.profile import Host, Overlay, Profile
from generator.model.validate import validate, with_defaults

__all__ = ["Guest", "Host", "Overlay", "Profile", "validate", "with_defaults"]
