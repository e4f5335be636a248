"""The pipeline, read top to bottom as the design draws it:

profile.yaml -load-> Document -validate-> Profile -plan-> Plan -render-> [Artifact] -write-> output/
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from generator.errors import Diagnostic, PlanError, ProfileError
from generator.load import Document, load
from generator.model import Profile, validate, with_defaults
from generator.model.validate import valid_part
from generator.plan import Plan, make_plan
from generator.plan.partial import problems_beside
from generator.renderers import Artifact, render_all
from generator.write import Change, diff, manifest, write


@dataclass(frozen=True)
class Planned:
    document: Document
    profile: Profile
    plan: Plan

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        """The plan's warnings, located in the profile."""
        return tuple(self.document.place(w) for w in self.plan.warnings)


@dataclass(frozen=True)
class Built:
    planned: Planned
    artifacts: tuple[Artifact, ...]  # manifest included
    changes: tuple[Change, ...]


def _located(document: Document, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return sorted((document.place(d) for d in diagnostics), key=Diagnostic.sort_key)


def plan_profile(path: Path, name: str | None = None) -> Planned:
    document = with_defaults(load(path, name))
    try:
        profile = validate(document)
    except ProfileError as exc:
        # One run, one list: the plan's problems among the hosts, guests and overlays the
        # model found valid come with the model's, so fixing these reveals no others.
        part = valid_part(document)
        beside = problems_beside(part) if part is not None else []
        raise ProfileError(_located(document, [*exc.diagnostics, *beside])) from None
    try:
        plan = make_plan(profile)
    except PlanError as exc:
        raise PlanError(_located(document, exc.diagnostics)) from None
    return Planned(document, profile, plan)


def artifacts_for(planned: Planned, extras: frozenset[str] = frozenset()) -> tuple[Artifact, ...]:
    """Render the plan. Every rule about the profile is the plan's; only a limit that
    rendering alone can tell is refused here (the size of a preseed's late_command), and
    `kvmnet validate` renders too, so that it refuses what `build` refuses."""
    try:
        artifacts = render_all(planned.plan, extras)
    except PlanError as exc:
        raise PlanError(_located(planned.document, exc.diagnostics)) from None
    return (*artifacts, manifest(artifacts, planned.document.digest, extras))


def build(
    path: Path,
    output: Path,
    *,
    check: bool = False,
    name: str | None = None,
    planned: Planned | None = None,
    extras: frozenset[str] = frozenset(),
) -> Built:
    """Plan, render and write (or with `check`, only compare) the output tree."""
    planned = planned or plan_profile(path, name)
    artifacts = artifacts_for(planned, extras)
    changes = diff(output, artifacts) if check else write(output, artifacts)
    return Built(planned, artifacts, tuple(changes))
