"""Stage 4: pure renderers, `render(plan) -> list[Artifact]`, listed in one registry."""

from __future__ import annotations

from collections.abc import Callable

from generator.errors import Diagnostic, PlanError
from generator.plan.types import Plan
from generator.renderers import networkd
from generator.renderers.artifact import Artifact

Renderer = Callable[[Plan], list[Artifact]]

#: Every renderer, by the name the CLI and the docs use. Order does not matter: the
#: writer sorts artifacts by path.
RENDERERS: dict[str, Renderer] = {
    "networkd": networkd.render,
}


def render_all(plan: Plan) -> list[Artifact]:
    artifacts: dict[str, Artifact] = {}
    clashes: list[Diagnostic] = []
    for name, renderer in RENDERERS.items():
        for artifact in renderer(plan):
            if artifact.path in artifacts:
                clashes.append(
                    Diagnostic(f"two artifacts would be written to {artifact.path} (renderer {name})")
                )
            artifacts[artifact.path] = artifact
    if clashes:
        raise PlanError(clashes)
    return [artifacts[p] for p in sorted(artifacts)]


__all__ = ["RENDERERS", "Artifact", "Renderer", "render_all"]
