"""`kvmnet build` killed with SIGKILL at many points of a large build loses nothing.

A 150-host fleet is built once (tree A). Then a changed profile is built over it in a
fresh process that is killed with SIGKILL after a delay; the delays are spread over the
whole run, from start-up to the final swap, so the kill lands while planning, rendering,
writing the new tree, syncing and exchanging. After every kill the output directory must
be exactly tree A or exactly tree B (compared file by file with reference builds), and its
manifest must match its files. Leftover hidden temporary directories are allowed (a killed
process cannot clean up) but the next build must remove them and succeed.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fleet_scaling import fleet_yaml

REPO = Path(__file__).resolve().parents[1]
HOSTS = 40
KILLS = 12
PLANNING_KILLS = 3


def _wait_for_staging(parent: Path, process: subprocess.Popen[bytes]) -> float:
    """When the build's hidden new tree appears beside the output (or the build ended)."""
    while process.poll() is None:
        if any(entry.name.startswith(".kvmnet-new-") for entry in os.scandir(parent)):
            break
        time.sleep(0.001)
    return time.perf_counter()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest_matches(root: Path) -> None:
    listed = {f["path"]: f["sha256"] for f in json.loads((root / "manifest.json").read_text())["files"]}
    files = {p: hashlib.sha256(c).hexdigest() for p, c in _tree(root).items() if p != "manifest.json"}
    assert files == listed


def _build(profile: Path, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "generator", "build", str(profile), "-o", str(output)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_at_any_point_leaves_old_or_new_tree(tmp_path: Path) -> None:
    old_profile, new_profile = tmp_path / "a.yaml", tmp_path / "b.yaml"
    old_profile.write_text(fleet_yaml(HOSTS))
    # B differs from A in every host's files (MTU) and in the set of files (one host more)
    new_profile.write_text(fleet_yaml(HOSTS + 1).replace("mtu: 9000", "mtu: 8000"))
    reference_a, reference_b = tmp_path / "ref-a", tmp_path / "ref-b"
    for profile, reference in ((old_profile, reference_a), (new_profile, reference_b)):
        assert _build(profile, reference).wait(timeout=300) == 0
    tree_a, tree_b = _tree(reference_a), _tree(reference_b)
    assert tree_a != tree_b

    # Where the time goes in a build over an existing tree: start-up and planning until
    # the new tree's hidden directory appears, then writing, syncing and the swap. Most
    # kills land in the second part, where a mistake would lose files.
    output = tmp_path / "output"
    assert _build(old_profile, output).wait(timeout=300) == 0
    started = time.perf_counter()
    process = _build(new_profile, output)
    staged = _wait_for_staging(tmp_path, process)
    assert process.wait(timeout=300) == 0
    planning, writing = staged - started, time.perf_counter() - staged
    outcomes = {"old": 0, "new": 0}
    for i in range(KILLS):
        assert _build(old_profile, output).wait(timeout=300) == 0  # back to A
        process = _build(new_profile, output)
        if i < PLANNING_KILLS:
            time.sleep(planning * (i + 0.5) / PLANNING_KILLS)
        else:
            _wait_for_staging(tmp_path, process)
            time.sleep(writing * (i - PLANNING_KILLS + 0.5) / (KILLS - PLANNING_KILLS))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        found = _tree(output)
        assert found in (tree_a, tree_b), f"kill {i}: a mixed tree"
        outcomes["old" if found == tree_a else "new"] += 1
        _manifest_matches(output)
    # The kills really landed on both sides of the swap (else the test proved little).
    assert outcomes["old"] >= 1 and outcomes["new"] >= 1, outcomes
    # Leftovers of killed builds are removed by the next one.
    assert _build(new_profile, output).wait(timeout=300) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kvmnet-")] == []
    assert not filecmp.dircmp(output, reference_b).diff_files


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_polite_signals_leave_old_tree_too(signal_number: int, tmp_path: Path) -> None:
    profile = tmp_path / "a.yaml"
    profile.write_text(fleet_yaml(HOSTS))
    output = tmp_path / "output"
    assert _build(profile, output).wait(timeout=300) == 0
    before = _tree(output)
    changed = tmp_path / "b.yaml"
    changed.write_text(fleet_yaml(HOSTS).replace("mtu: 9000", "mtu: 8000"))
    process = _build(changed, output)
    time.sleep(0.6)  # past start-up, before the swap
    os.kill(process.pid, signal_number)
    _, stderr = process.communicate(timeout=60)
    after = _tree(output)
    assert after == before or process.returncode == 0
    assert b"Traceback" not in stderr
