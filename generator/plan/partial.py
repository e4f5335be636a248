"""The plan's problems in a profile that also has model errors, so that one run reports both.

The model's errors leave some hosts, guests and overlays out (model/validate.py's
`valid_part`, which also takes left-out hosts off overlays' member lists, since an overlay
with an undefined member is expanded on none); the rest is planned as it stands. A plan
problem is reported unless it may only arise because something was left out: an entry
that depends on a left-out one is not judged at all (its problems are reported once the
model's are fixed):

- a guest whose host was left out (its bridges, taps and MTUs are the host's);
- a host on which a left-out guest may have named a tap (`kvmnet.ports` may list it);
- a member host of a left-out overlay (the overlay adds a VXLAN device and a bridge that
  the host's own devices and its guests may use), and the guests on it.
"""

from __future__ import annotations

from generator.errors import Diagnostic, PlanError
from generator.model.validate import ValidPart
from generator.plan.build import make_plan


def problems_beside(part: ValidPart) -> list[Diagnostic]:
    """The plan's problems among the entries the model found valid, unlocated."""
    try:
        make_plan(part.profile)
    except PlanError as exc:
        unjudged = _unjudged(part)
        return [d for d in exc.diagnostics if d.path[:2] not in unjudged]
    return []


def _unjudged(part: ValidPart) -> set[tuple[str | int, ...]]:
    profile = part.profile
    gone = {name for section, name in part.left_out if section == "hosts"}
    overlaid = set(profile.hosts) if part.overlay_hosts is None else set(part.overlay_hosts)
    out: set[tuple[str | int, ...]] = {("hosts", h) for h in part.tapped_hosts | overlaid}
    out |= {("guests", g) for g, spec in profile.guests.items() if spec.host in gone | overlaid}
    return out
