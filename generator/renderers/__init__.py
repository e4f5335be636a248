"""Stage 4: pure renderers, listed in one registry, in two phases.

1. `RENDERERS`: `render(plan) -> list[Artifact]`: the files that land on machines
   (each host's `rootfs/`, later guests' files).
2. `DELIVERY`: `render(plan, artifacts) -> list[Artifact]`: the vehicles that carry
   those files (bootstrap.sh, PXE answer files...). They see every artifact made
   before them, in registry order, so a PXE file can embed the bootstrap and rootfs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from generator.plan.types import Plan
from generator.renderers import (
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

#: Delivery vehicles, in the order they run: each sees what the ones before it made.
DELIVERY: dict[str, Delivery] = {
    "bootstrap": bootstrap.render,
    "pxe": pxe.render,
    "images": images.render,
}


#: Delivery vehicles made only when asked for (`kvmnet build --seed-iso`).
OPTIONAL: dict[str, Delivery] = {
    "seed-iso": seed.render,
}


class ArtifactClashError(RuntimeError):
    """Two renderers made the same file: a rule the plan lacks (plan/names.py holds the
    ones about machine names), hence a bug in kvmnet rather than in the profile."""


def render_all(plan: Plan, extras: frozenset[str] = frozenset()) -> list[Artifact]:
    artifacts: dict[str, Artifact] = {}
    clashes: list[str] = []

    def add(name: str, made: list[Artifact]) -> None:
        for artifact in made:
            if artifact.path in artifacts:
                clashes.append(f"{artifact.path} (renderer {name})")
            artifacts[artifact.path] = artifact

    for name, renderer in RENDERERS.items():
        add(name, renderer(plan))
    for name, delivery in DELIVERY.items():
        add(name, delivery(plan, [artifacts[p] for p in sorted(artifacts)]))
    for name in sorted(extras):
        add(name, OPTIONAL[name](plan, [artifacts[p] for p in sorted(artifacts)]))
    if clashes:
        raise ArtifactClashError(f"two artifacts would be written to {', '.join(clashes)}")
    return [artifacts[p] for p in sorted(artifacts)]


__all__ = [
    "DELIVERY",
    "OPTIONAL",
    "RENDERERS",
    "Artifact",
    "ArtifactClashError",
    "Delivery",
    "Renderer",
    "render_all",
]
