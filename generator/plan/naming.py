"""Which udev property names a NIC, so that its `.link` file matches it at boot.

udev picks a `.link` file in the "add" event of a new NIC, before it renames the NIC
(80-net-setup-link.rules: `IMPORT{builtin}="net_setup_link"`, then `NAME=`). At that
moment the NIC still has the kernel's name (eth0), so `OriginalName=eno1` cannot match
it (systemd.link(5)); it matches only on a later `udevadm trigger`, never at the next
boot. But the name udev is about to give is already there, as a property: net_id runs
earlier in the same event (75-net-description.rules) and exports one candidate name per
policy (systemd.net-naming-scheme(7), v252). The default policy (99-default.link,
`NamePolicy=keep kernel database onboard slot path`) names the NIC after one of them, and
which one shows in the name itself: the letter after the two-letter type prefix.

`Property=ID_NET_NAME_ONBOARD=eno1` (fnmatch(3) on the value, so a glob works too)
therefore selects, at boot, the NIC that will be called eno1. A name the scheme does not
produce (eth0 kept by net.ifnames=0, a name given by another .link) keeps
`OriginalName=`; so does a MAC-based name (enx...): Debian names only USB NICs that way,
through 73-usb-net-by-mac.link, whose `NamePolicy=mac` kvmnet's file would displace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from generator.errors import Diagnostic
from generator.plan.types import Interface

ONBOARD = "ID_NET_NAME_ONBOARD"
SLOT = "ID_NET_NAME_SLOT"
PATH = "ID_NET_NAME_PATH"

#: The letter after the type prefix (en, ib, sl, wl, ww), as systemd.net-naming-scheme(7)
#: lists them for v252: o (PCI onboard index), d (devicetree alias) onboard; s (PCI slot),
#: v (VIO), X (Xen) slot; p (PCI bus), c (CCW), a (ACPI platform), i (netdevsim) path.
#: `P<domain>` comes first on a non-zero PCI domain, then s or p as above.
_POLICY = {
    **dict.fromkeys("od", ONBOARD),
    **dict.fromkeys("svX", SLOT),
    **dict.fromkeys("pcai", PATH),
}
_NAME = re.compile(r"(?:en|ib|sl|wl|ww)(?:P[0-9]+(?P<domain>[sp])|(?P<letter>[a-zA-Z]))")


def naming_property(pattern: str) -> str | None:
    """The udev property whose value is `pattern` (a name or a glob) on the NIC it names.

    None when the name does not say: not a name of the scheme, a MAC-based name, or a glob
    whose policy letter is not literal (`en*`, `enP*`).
    """
    if pattern.startswith("!"):
        return None
    match = _NAME.match(pattern)
    if match is None:
        return None
    if len(pattern) == match.end():
        return None  # nothing after the letter: not a name of the scheme
    return _POLICY.get(match.group("domain") or match.group("letter"))


def unmatched_at_boot(interfaces: Iterable[Interface], cmdline: Iterable[str]) -> list[Diagnostic]:
    """A warning per `.link` that only `OriginalName=` can match, and that has work to do
    at boot: a rename, offloads or Wake-on-LAN (networkd's .network sets the MTU anyway).

    With `net.ifnames=0` on the kernel command line udev keeps the kernel's names, and
    `OriginalName=` is right.
    """
    if "net.ifnames=0" in cmdline:
        return []
    out = []
    for iface in interfaces:
        link = iface.link
        if link is None or link.match.name is None or link.name_property is not None:
            continue
        if not (link.name or link.offloads or link.wake_on_lan):
            continue
        out.append(
            Diagnostic(
                f"{link.match.name!r} does not show which of systemd's naming policies names the NIC "
                "(onboard eno1, slot ens1, path enp3s0...), so its .link can match only the kernel's "
                "name (OriginalName=): udev picks the .link "
                "before it renames the NIC, so its rename, offloads and wakeonlan apply only on a "
                "later `udevadm trigger`, not at boot; match the NIC by macaddress, or keep the "
                "kernel's names (net.ifnames=0 in kernel.cmdline)",
                iface.origin,
            )
        )
    return out
