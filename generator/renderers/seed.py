"""NoCloud seed images: ISO 9660 with the volume label `cidata`, built with pycdlib.

Byte-identical for identical seeds. pycdlib stamps every record with `time.time()` in
local time and has no option for a fixed date, so it runs here under a fixed UTC clock
(the epoch); without that, every build would change the image and `--check` would
report drift forever.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace

import pycdlib
import pycdlib.dates
import pycdlib.headervd
import pycdlib.pycdlib

from generator import layout
from generator.plan.types import Plan
from generator.renderers.artifact import MODE_SECRET, Artifact

LABEL = "cidata"  # what cloud-init's NoCloud datasource looks for
_MODULES = (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib)


@contextmanager
def _fixed_clock() -> Iterator[None]:
    clock = SimpleNamespace(
        time=lambda: 0.0, localtime=time.gmtime, gmtime=time.gmtime, strftime=time.strftime
    )
    # The modules hold `time` as a global of their own (`import time`): swap that name.
    saved = [(module, getattr(module, "time")) for module in _MODULES]  # noqa: B009
    for module in _MODULES:
        setattr(module, "time", clock)  # noqa: B010
    try:
        yield
    finally:
        for module, original in saved:
            setattr(module, "time", original)  # noqa: B010


def image(files: Sequence[tuple[str, bytes]]) -> bytes:
    """An ISO with `files` (name, content) at its root, under Rock Ridge and Joliet names."""
    with _fixed_clock():
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL, sys_ident="LINUX")
        for name, content in files:
            iso_name = "/" + name.upper().replace("-", "_") + ".;1"
            iso.add_fp(io.BytesIO(content), len(content), iso_name, rr_name=name, joliet_path="/" + name)
        out = io.BytesIO()
        iso.write_fp(out)
        iso.close()
    return out.getvalue()


def render(plan: Plan, artifacts: Sequence[Artifact]) -> list[Artifact]:
    by_path = {a.path: a for a in artifacts}

    def seed_image(seed: layout.Seed) -> Artifact:
        files = [(name, by_path[seed.nocloud(name)].content) for name in layout.NOCLOUD_FILES]
        # It holds user-data: as private as user-data itself.
        return Artifact(seed.image, image(files), MODE_SECRET)

    out = [seed_image(layout.guest_seed(guest.name)) for guest in plan.guests]
    # A host's seed under Vagrant (renderers/vagrant.py): private like every seed.
    out += [seed_image(layout.vagrant_seed(host.name)) for host in plan.hosts]
    return out
