"""Every bundled profile is a golden case: its whole output tree is kept in tests/golden.

A change in generated output shows up as a diff of these files in review.
`pytest --update-golden` rewrites them; read the diff before committing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.pipeline import artifacts_for, plan_profile

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
GOLDEN = REPO / "tests" / "golden"


def test_every_profile_has_a_golden_tree() -> None:
    assert {p.stem for p in PROFILES} == {d.name for d in GOLDEN.iterdir() if d.is_dir()}


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_output_matches_golden(profile: Path, update_golden: bool) -> None:
    artifacts = artifacts_for(plan_profile(profile))
    golden = GOLDEN / profile.stem
    if update_golden:
        shutil.rmtree(golden, ignore_errors=True)
        for artifact in artifacts:
            target = golden / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(artifact.content)
    expected = {p.relative_to(golden).as_posix() for p in golden.rglob("*") if p.is_file()}
    assert {a.path for a in artifacts} == expected
    for artifact in artifacts:
        assert artifact.content == (golden / artifact.path).read_bytes(), artifact.path
