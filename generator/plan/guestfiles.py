"""The files kvmnet writes into a guest: decided once, here, for every vehicle that carries them.

cloud-init's user-data (`write_files`, renderers/cloudinit.py) and the guest's image
element (renderers/images.py) both carry exactly this list; renderers/guestfiles.py
formats each file. A guest gets:
- the sysctl drop-in, when it has sysctls (IPv6 off);
- for each NIC with channels or an rx ring, a `.link` file, which udev applies when the
  NIC appears; and then one ethtool script for all of them and the unit that runs it at
  boot, for kernels that ignore the `.link` file's CombinedChannels=/RxBufferSize=.
"""

from __future__ import annotations

from collections.abc import Sequence

from generator import layout
from generator.plan.types import (
    GuestFile,
    GuestNic,
    NicLink,
    NicTuning,
    NicTuningScript,
    NicTuningUnit,
    Sysctl,
    SysctlDropIn,
)

MODE_FILE = 0o644
MODE_SCRIPT = 0o755


def _tuning(nic: GuestNic) -> NicTuning | None:
    if nic.channels is None and nic.rx_ring is None:
        return None
    return NicTuning(mac=nic.mac, channels=nic.channels, rx_ring=nic.rx_ring)


def guest_files(sysctls: Sequence[Sysctl], nics: Sequence[GuestNic]) -> tuple[GuestFile, ...]:
    """The guest's files, in the order its user-data writes them."""
    files: list[GuestFile] = []
    if sysctls:
        files.append(SysctlDropIn(layout.GUEST_SYSCTL, MODE_FILE, tuple(sysctls)))
    tuned = [(nic.name, tuning) for nic in nics if (tuning := _tuning(nic)) is not None]
    files += [NicLink(layout.guest_link(name), MODE_FILE, tuning) for name, tuning in tuned]
    if tuned:
        files.append(
            NicTuningScript(layout.NIC_TUNING_SCRIPT, MODE_SCRIPT, tuple(tuning for _, tuning in tuned))
        )
        files.append(
            NicTuningUnit(
                layout.NIC_TUNING_UNIT, MODE_FILE, layout.NIC_TUNING_UNIT_NAME, layout.NIC_TUNING_SCRIPT
            )
        )
    return tuple(files)
