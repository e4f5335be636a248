"""The pipeline, read top to bottom as the design draws it:

profile.yaml -load-> Document -validate-> Profile -plan-> Plan -render-> [Artifact] -write-> output/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generator.errors import Diagnostic, PlanError
from generator.load import Document, load
from generator.model import Profile, validate, with_defaults
from generator.plan import Plan, make_plan
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


def plan_profile(path: Path, name: str | None = None) -> Planned:
    document = with_defaults(load(path, name))
    profile = validate(document)
    try:
        plan = make_plan(profile)
    except PlanError as exc:
        located = sorted((document.place(d) for d in exc.diagnostics), key=Diagnostic.sort_key)
        raise PlanError(located) from None
    return Planned(document, profile, plan)


def artifacts_for(planned: Planned, extras: frozenset[str] = frozenset()) -> tuple[Artifact, ...]:
    try:
        artifacts = render_all(planned.plan, extras)
    except PlanError as exc:  # a limit only rendering can tell (e.g. a preseed too long)
        located = sorted((planned.document.place(d) for d in exc.diagnostics), key=Diagnostic.sort_key)
        raise PlanError(located) from None
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
