"""Resource limits: an oversized profile is refused early, in bounded time and memory.

- a profile file over 4 MiB is refused before it is read;
- more than 10,000 guests (or 2,000 hosts) are refused as soon as the YAML is composed,
  before anything is built per machine;
- 10,000 guests, the most accepted, validate within the same bounds.
Each run is a fresh process; its peak memory comes from wait4(2).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.limits

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


def _guests(count: int, path: Path, macs: bool = False) -> Path:
    lines = [
        "hosts:",
        "  hv1:",
        "    network:",
        "      ethernets: {eno1: {}}",
        "      bridges: {br0: {interfaces: [eno1], addresses: [10.0.0.1/8]}}",
        "guests:",
    ]
    lines += [
        f"  g{i}: {{host: hv1, interfaces: [{{bridge: br0, addresses: [10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}/8]"
        + (f", mac: '52:54:01:00:{i // 256:02x}:{i % 256:02x}'" if macs else "")
        + "}]}"
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


#: Runs the command given and writes its peak memory (KiB) to the file named first. A
#: child's ru_maxrss starts at its parent's size at fork (Linux carries the old mm's
#: high-water mark through exec), so kvmnet must be the child of a small process, not of
#: pytest: in CI, pytest had grown to 932 MiB and every child "used" that much.
WRAPPER = """
import resource, subprocess, sys

code = subprocess.run(sys.argv[2:]).returncode
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def _run(*args: str) -> tuple[subprocess.CompletedProcess[bytes], float, int]:
    """Run kvmnet; its result, wall time and peak memory in MiB."""
    with tempfile.NamedTemporaryFile() as peak:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, peak.name, sys.executable, "-m", "generator", *args],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        kib = int(Path(peak.name).read_text() or 0)
    return done, seconds, kib // 1024


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    profile = tmp_path / "big.yaml"
    profile.write_text("hosts: {}\n" + "# padding to 10 MiB\n" * (10 * MIB // 20))
    result, seconds, _ = _run("validate", str(profile))
    assert result.returncode == 1
    assert result.stderr.decode().startswith(
        f"{profile}:1:1: profile is 10.0 MiB; kvmnet reads at most 4 MiB"
    )
    assert seconds < 5


@pytest.mark.parametrize("command", ["validate", "build"])
def test_too_many_guests_are_refused_early(command: str, tmp_path: Path) -> None:
    profile = _guests(12_000, tmp_path / "many.yaml")
    assert profile.stat().st_size < 4 * MIB
    args = [command, str(profile)] + (["-o", str(tmp_path / "out")] if command == "build" else [])
    result, seconds, rss = _run(*args)
    assert result.returncode == 1
    assert (
        f"{profile}:6:1: guests: 12000 guests in one profile; kvmnet accepts at most 10000"
        in result.stderr.decode()
    )
    assert not (tmp_path / "out").exists()
    assert seconds < 10 and rss < 300, (seconds, rss)


def test_derived_macs_that_meet_are_explained(tmp_path: Path) -> None:
    """52:54:00 leaves 24 bits: among 10,000 derived MACs a few collide (birthday bound ~3)."""
    result, _, _ = _run("validate", str(_guests(10_000, tmp_path / "derived.yaml")))
    assert result.returncode == 1
    problems = result.stderr.decode().splitlines()[:-1]
    assert problems and all("both derived by kvmnet" in p and "set `mac:`" in p for p in problems), problems


def test_the_most_guests_accepted_validate_in_bounds(tmp_path: Path) -> None:
    profile = _guests(10_000, tmp_path / "most.yaml", macs=True)
    result, seconds, rss = _run("validate", str(profile))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "10000 guest(s)" in result.stdout.decode()
    assert seconds < 60 and rss < 600, (seconds, rss)
