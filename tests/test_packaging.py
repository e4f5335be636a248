"""The wheel carries the templates and bundled profiles, and works without the repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from generator import layout

pytestmark = pytest.mark.consumer

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_templates_and_profiles_and_runs_on_its_own(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("kvmnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "templates").rglob("*.j2")}
    profiles = {p.relative_to(REPO).as_posix() for p in (REPO / "profiles").glob("*.yaml")}
    assert templates and profiles
    assert {f"generator/{t}" for t in templates | profiles} <= names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    # Unpacked somewhere else, with the repository out of reach, it builds the bundled default.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv.pop(1)); from generator.cli import main; sys.exit(main())",
            str(site),
            "build",
            "-o",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / layout.rootfs_file("hv1", layout.networkd_file("vx10010", "netdev"))).exists()
