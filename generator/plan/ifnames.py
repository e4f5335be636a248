"""The name a host's NIC has where kvmnet makes the machine itself.

On a real hypervisor the kernel and udev name a NIC, and networkd selects it by its
files' `[Match]`: `Name=` (a shell glob) and `PermanentMACAddress=`. A NIC matched by a
glob or by MAC alone has no name kvmnet knows. Where kvmnet makes the NIC itself (`kvmnet
lab`'s namespaces, the Vagrantfile's VMs, the test tiers), it must name it, and every one
of them must pick the same name: one that the NIC's own files select and no other device's
do, that nothing else on the host has, and that the kernel and systemd accept. That name
is chosen here, once, and carried by `Interface.concrete_name`.
"""

from __future__ import annotations

import fnmatch
import itertools
import string
from collections.abc import Callable, Iterable, Iterator, Sequence

from generator.errors import Diagnostic
from generator.model.types import IFNAMSIZ_MAX, interface_name_problem
from generator.plan.devices import GLOB_CHARS
from generator.plan.guests import RESERVED_TAPS
from generator.plan.types import Interface, Kind

#: The characters a made-up name is built from, in order of preference (a `?` becomes `0`).
_ALPHABET = string.digits + string.ascii_lowercase + string.ascii_uppercase + "_.-"
#: What a `*` may stand for, in order of preference: nothing, else one character.
_STAR = ("", "0", "x", "1")
#: How many names to try before giving up (each try is a few fnmatch calls).
_TRIES = 20_000


def selects(pattern: str, name: str) -> bool:
    """Whether `Name=pattern` (networkd) or `OriginalName=pattern` (udev) selects `name`.

    systemd 252's net_condition_test_strv: fnmatch(3) without flags, a leading `!`
    inverting the test. kvmnet's globs use letters, digits, `.`, `_`, `-`, `*`, `?`, `[`,
    `]` and `!` only, on which Python's fnmatchcase and glibc's fnmatch agree.
    """
    if pattern.startswith("!"):
        return not fnmatch.fnmatchcase(name, pattern[1:])
    return fnmatch.fnmatchcase(name, pattern)


def _units(pattern: str) -> list[str]:
    """`pattern` cut as fnmatch reads it: characters, `?`, `*` and bracket expressions.

    A `]` right after `[` or `[!` belongs to the set; a `[` without its `]` is itself.
    """
    out = []
    at = 0
    while at < len(pattern):
        if pattern[at] == "[":
            end = at + 1
            end += pattern.startswith("!", end)
            end += pattern.startswith("]", end)
            end = pattern.find("]", end)
            if end > 0:
                out.append(pattern[at : end + 1])
                at = end + 1
                continue
        out.append(pattern[at])
        at += 1
    return out


def _choices(unit: str) -> tuple[str, ...]:
    """What one unit of a glob may stand for, the preferred first: a set's first member."""
    if unit == "*":
        return _STAR
    if unit == "?":
        return tuple(_ALPHABET)
    if len(unit) > 1:  # a bracket expression
        members = [c for c in _ALPHABET if fnmatch.fnmatchcase(c, unit)]
        first = unit[1] if unit[1] in members else None
        return tuple(dict.fromkeys([first, *members] if first else members))
    return (unit,)


def _names(pattern: str) -> Iterator[str]:
    """Names `pattern` selects, fewest changes from each unit's first choice first."""
    if pattern.startswith("!"):
        # Inverted: any name that the rest does not select; try a few plain ones.
        yield from (f"nic{n}" for n in range(10))
        return
    choices = [_choices(unit) for unit in _units(pattern)]
    if sum(1 for c in choices if c is not _STAR) > IFNAMSIZ_MAX or not all(choices):
        return
    first = [c[0] for c in choices]
    open_ = [i for i, c in enumerate(choices) if len(c) > 1]
    for changes in range(len(open_) + 1):
        for where in itertools.combinations(open_, changes):
            for picks in itertools.product(*(choices[i][1:] for i in where)):
                name = list(first)
                for i, pick in zip(where, picks, strict=True):
                    name[i] = pick
                yield "".join(name)


def made_up(pattern: str, usable: Callable[[str], bool] = lambda _: True) -> str | None:
    """The first name that `pattern` selects, that Linux and systemd accept and that
    `usable` takes; None if there is none (or none within _TRIES tries)."""
    for name in itertools.islice(_names(pattern), _TRIES):
        if interface_name_problem(name) is None and selects(pattern, name) and usable(name):
            return name
    return None


def concrete_names(
    host: str, interfaces: Sequence[Interface], taps: Iterable[str], warnings: list[Diagnostic]
) -> dict[str, str | None]:
    """Per NIC whose name is not known (matched by a glob, or by MAC alone), by id: the
    name it gets where kvmnet makes it. A NIC matched by MAC alone keeps its id, if that
    can be a name. None, with a warning, where no name will do.

    `taps` are the names guests give their taps on this host. NICs are named in the order
    of their ids, each avoiding the names given before it.
    """
    taken = {i.name for i in interfaces if i.name} | set(taps)
    # Who selects what: a plain name only itself (a set, so that a host of many NICs stays
    # linear); a glob, or an inverted name, whatever fnmatch says.
    plain: dict[str, set[str]] = {}
    globs: list[tuple[str, str]] = []
    for other in interfaces:
        patterns = (other.match.name, other.link.match.name if other.link else None)
        for selector in dict.fromkeys(filter(None, patterns)):
            if GLOB_CHARS & set(selector) or selector.startswith("!"):
                globs.append((other.id, selector))
            else:
                plain.setdefault(selector, set()).add(other.id)
    out: dict[str, str | None] = {}
    for iface in interfaces:
        if iface.kind is not Kind.ETHERNET or iface.name is not None:
            continue

        def usable(name: str, own: str = iface.id) -> bool:
            return (
                name not in taken
                and not name.startswith(RESERVED_TAPS)
                and plain.get(name, {own}) == {own}
                and not any(selects(p, name) for ident, p in globs if ident != own)
            )

        pattern = iface.match.name
        name = made_up(pattern or iface.id, usable)
        if name is None:
            if pattern:
                message = (
                    f"`kvmnet lab` and the Vagrantfile cannot name this NIC: no name that {pattern!r} "
                    f"selects is free on host {host} (a valid interface name that no other device has "
                    "or selects by its [Match], no guest's tap has, and that does not start like "
                    f"libvirt's own taps: {', '.join(RESERVED_TAPS)})"
                )
            else:
                problem = interface_name_problem(iface.id) or "another device has or selects that name"
                message = (
                    "`kvmnet lab` and the Vagrantfile name a NIC matched by MAC alone by its id, which "
                    f"cannot be its name here ({problem}); give it set-name"
                )
            warnings.append(
                Diagnostic(message, (*iface.origin, "match", "name") if pattern else iface.origin)
            )
        else:
            taken.add(name)
        out[iface.id] = name
    return out
