"""Machine names: every host and guest is one machine of the fleet, named once.

Hosts and guests share one namespace: `inventory.yaml` and `kvmnet verify` name every
machine by its profile name, and the disk-image elements are written per machine
(`images/dib/<machine>/`). Names must also differ when case is ignored: host names are
case-insensitive (RFC 4343), and the generated check modules are Python module names in
lower case (`tests/test_host_hv1.py` serves both `hv1` and `HV1`).
"""

from __future__ import annotations

from generator.errors import Diagnostic
from generator.model.profile import Profile


def check_machine_names(profile: Profile, problems: list[Diagnostic]) -> None:
    """The later of two machines whose names differ only in case (or not at all) is refused.

    Hosts come first, then guests, each in the order of the file: a guest is blamed
    rather than the host it collides with, since the host's name is what the rest of the
    profile (guests' `host:`, overlays' `hosts:`) refers to.
    """
    seen: dict[str, tuple[str, str]] = {}
    machines = [("host", name) for name in profile.hosts] + [("guest", name) for name in profile.guests]
    for kind, name in machines:
        first = seen.setdefault(name.lower(), (kind, name))
        if first == (kind, name):
            continue
        other_kind, other = first
        if other == name:  # only across sections: a YAML mapping has no duplicate keys
            what = f"{kind} {name!r} has the name of {other_kind} {other!r}"
        else:
            what = f"{kind} {name!r} differs from {other_kind} {other!r} only in case"
        message = (
            f"{what}; hosts and guests are machines of one fleet (inventory.yaml, kvmnet verify), "
            "whose names must differ also when case is ignored (host names are case-insensitive, "
            f"and the generated check modules lower-case them): rename this {kind}"
        )
        problems.append(Diagnostic(message, (f"{kind}s", name), on_key=True))
