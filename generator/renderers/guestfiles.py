"""The text of the files kvmnet writes into a guest (plan.types.GuestFile, decided by
plan/guestfiles.py).

Not a renderer of its own: the guest's vehicles call it, cloud-init's user-data
(`write_files`, renderers/cloudinit.py) and the guest's image element
(renderers/images.py), so both carry the same bytes.
"""

from __future__ import annotations

from generator.plan.types import (
    GuestFile,
    GuestPlan,
    NicLink,
    NicTuningScript,
    NicTuningUnit,
    SysctlDropIn,
)
from generator.templating import render as render_template


def text(file: GuestFile) -> str:
    match file:
        case SysctlDropIn(sysctls=sysctls):
            return render_template("guestfiles/sysctl.conf.j2", sysctls=sysctls)
        case NicLink(nic=nic):
            return render_template("guestfiles/nic.link.j2", nic=nic)
        case NicTuningScript(nics=nics):
            return render_template("guestfiles/nic-tuning.sh.j2", nics=nics)
        case NicTuningUnit(script=script):
            return render_template("guestfiles/nic-tuning.service.j2", script=script)


def rendered(guest: GuestPlan) -> list[tuple[GuestFile, str]]:
    """Each of the guest's files with its text, in the plan's order."""
    return [(file, text(file)) for file in guest.files]
