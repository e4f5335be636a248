"""Stage 4: pure renderers, listed in one registry, in two phases.

1. `RENDERERS`: `render(plan) -> list[Artifact]`: the files that land on machines
   (each host's `rootfs/`, later guests' files).
2. `DELIVERY`: `render(plan, artifacts) -> list[Artifact]`: the vehicles that carry
   those files (bootstrap.sh, PXE answer files...). Each names the renderers whose files
   it carries (`Vehicle.carries`) and is handed those, and only those: a PXE file embeds
   the bootstrap and rootfs because it says so, not because of the registry's order
   (`render_all` refuses a vehicle listed before one it carries).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from generator.plan.types import Plan
from generator.renderers import (
    bootservice,
    bootstrap,
    checks,
    cloudinit,
    images,
    inventory,
    kernel,
    libvirt,
    networkd,
    pxe,
    seed,
    tc,
    vagrant,
)
from generator.renderers.artifact import Artifact

Renderer = Callable[[Plan], list[Artifact]]
Delivery = Callable[[Plan, Sequence[Artifact]], list[Artifact]]

#: The files themselves, by the name the docs use. Order does not matter.
RENDERERS: dict[str, Renderer] = {
    "networkd": networkd.render,
    "tc": tc.render,
    "kernel": kernel.render,
    "libvirt": libvirt.render,
    "cloud-init": cloudinit.render,
    "checks": checks.render,
    "inventory": inventory.render,
    "vagrant": vagrant.render,
}


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A delivery renderer and the renderers whose files it is handed."""

    render: Delivery
    carries: tuple[str, ...]


#: What lands in a host's rootfs/: the files bootstrap.sh installs and the bundle carries.
ROOTFS_RENDERERS = ("networkd", "tc", "kernel")

#: Delivery vehicles, in the order they run: each carries files made before it.
DELIVERY: dict[str, Vehicle] = {
    "bootstrap": Vehicle(bootstrap.render, (*ROOTFS_RENDERERS, "libvirt")),
    # The host's bundle: bootstrap.sh and rootfs/ (renderers/bundle.py).
    "pxe": Vehicle(pxe.render, (*ROOTFS_RENDERERS, "libvirt", "bootstrap")),
    # kvmnet-host carries the bundle; kvmnet-guest only the plan's guest files.
    "images": Vehicle(images.render, (*ROOTFS_RENDERERS, "libvirt", "bootstrap")),
    # The fleet's boot service (output/pxe/) serves the answer files.
    "boot-service": Vehicle(bootservice.render, ("pxe",)),
}


#: Delivery vehicles made only when asked for (`kvmnet build --seed-iso`).
OPTIONAL: dict[str, Vehicle] = {
    "seed-iso": Vehicle(seed.render, ("cloud-init", "vagrant")),
}


class ArtifactClashError(RuntimeError):
    """Two renderers made the same file: a rule the plan lacks (plan/names.py holds the
    ones about machine names), hence a bug in kvmnet rather than in the profile."""


class ArtifactOrderError(RuntimeError):
    """A delivery vehicle listed before a renderer whose files it carries: a bug in the
    registry, which would otherwise ship a vehicle without them."""


def render_all(plan: Plan, extras: frozenset[str] = frozenset()) -> list[Artifact]:
    artifacts: dict[str, Artifact] = {}
    made_by: dict[str, list[Artifact]] = {}
    clashes: list[str] = []

    def add(name: str, made: list[Artifact]) -> None:
        for artifact in made:
            if artifact.path in artifacts:
                clashes.append(f"{artifact.path} (renderer {name})")
            artifacts[artifact.path] = artifact
        made_by[name] = made

    def carried(name: str, vehicle: Vehicle) -> list[Artifact]:
        missing = [c for c in vehicle.carries if c not in made_by]
        if missing:
            raise ArtifactOrderError(f"delivery {name} runs before {', '.join(missing)}, which it carries")
        return sorted((a for c in vehicle.carries for a in made_by[c]), key=lambda a: a.path)

    for name, renderer in RENDERERS.items():
        add(name, renderer(plan))
    for name, vehicle in DELIVERY.items():
        add(name, vehicle.render(plan, carried(name, vehicle)))
    for name in sorted(extras):
        add(name, OPTIONAL[name].render(plan, carried(name, OPTIONAL[name])))
    if clashes:
        raise ArtifactClashError(f"two artifacts would be written to {', '.join(clashes)}")
    return [artifacts[p] for p in sorted(artifacts)]


__all__ = [
    "DELIVERY",
    "OPTIONAL",
    "RENDERERS",
    "ROOTFS_RENDERERS",
    "Artifact",
    "ArtifactClashError",
    "ArtifactOrderError",
    "Delivery",
    "Renderer",
    "Vehicle",
    "render_all",
]
