"""Two builds of every bundled profile in different surroundings are byte-identical.

The surroundings differ in everything a build could pick up by accident: PYTHONHASHSEED
(set and dict order), locale (sorting, number formatting), umask (modes), time zone,
current directory (relative paths), the profile's path and name, and the order in which
the file system lists the profile's directory. The trees are compared file by file, and
their manifests (which hold every file's sha256 and mode) must be equal too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.limits

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))


def _locales() -> tuple[str, str]:
    available = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout.split()
    other = next((name for name in available if name.lower() in ("c.utf8", "c.utf-8")), "C")
    return "C", other


def _build(profile: Path, output: Path, cwd: Path, env: dict[str, str], umask: int) -> None:
    def child() -> None:
        os.umask(umask)

    result = subprocess.run(
        [sys.executable, "-m", "generator", "build", os.path.relpath(profile, cwd), "-o", str(output)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        preexec_fn=child,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_builds_are_identical_in_any_surroundings(profile: Path, tmp_path: Path) -> None:
    first_locale, second_locale = _locales()
    # The same profile under another name, in a directory with other files listed first.
    elsewhere = tmp_path / "deep" / "other dir"
    elsewhere.mkdir(parents=True)
    for name in ("zz.yaml", "aa.yaml", "0.yaml"):
        (elsewhere / name).write_text("hosts: {}\n")
    copy = elsewhere / "renamed-profile.yml"
    shutil.copyfile(profile, copy)
    one, two = tmp_path / "one", tmp_path / "two"
    _build(profile, one, REPO, {"PYTHONHASHSEED": "0", "LC_ALL": first_locale, "TZ": "UTC"}, 0o022)
    _build(
        copy,
        two,
        elsewhere,
        {"PYTHONHASHSEED": "4242", "LC_ALL": second_locale, "TZ": "Pacific/Chatham", "LANG": second_locale},
        0o077,
    )
    tree_one, tree_two = _tree(one), _tree(two)
    assert tree_one.keys() == tree_two.keys()
    different = [path for path in tree_one if tree_one[path] != tree_two[path]]
    assert different == [], different[:5]


def test_the_json_schema_is_the_same_under_any_hash_seed() -> None:
    """`kvmnet schema` once built the true/false words' pattern from a set, whose order
    follows the hash seed: editors' schema files changed from run to run."""

    def schema(seed: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "generator", "schema"],
            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    first = schema("0")
    assert '"pattern"' in first
    for seed in ("1", "2", "4242"):
        assert schema(seed) == first, seed
