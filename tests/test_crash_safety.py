"""A build stopped by a signal at a known point leaves the old tree or the new one.

A fleet is built once (tree A). Then a changed profile (tree B: every host's files differ,
and one host more) is built over it in a child process that stops at a known point of the
build (tests/support/paused_build.py wraps one of the writer's functions; kvmnet itself
has no hook), the test looks at the output there, sends the signal and lets the child go
on:

| point    | where                                              | then the output is | exit        |
|----------|----------------------------------------------------|--------------------|-------------|
| planned  | planned and rendered, nothing written              | A                  | non-zero    |
| writing  | half the new tree written (hidden, beside A)       | A                  | non-zero    |
| staged   | the new tree complete and flushed, the swap next   | A                  | non-zero    |
| swapped  | just after the swap (the commit point)             | B                  | 0 (*)       |

(*) SIGKILL cannot be held back: the process dies, with B in place. SIGINT and SIGTERM
that arrive once the swap has begun are dropped when it ends: the build has succeeded,
and saying otherwise would contradict the output (a fresh-clone run saw exit 130 with B
in place, issue 12). Leftovers of a killed build (its hidden staging directory, its lock
file) are removed by the next build.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest

from bench.fleet_scaling import fleet_yaml
from generator import layout
from tests.support.cli import kvmnet
from tests.support.paused_build import POINTS, PausedBuild

pytestmark = pytest.mark.crash

HOSTS = 8
#: Before the commit point the old tree stays; from it on, the new one.
COMMITTED = {"planned": False, "writing": False, "staged": False, "swapped": True}
#: How a build stopped before its commit point ends: killed, or (Ctrl-C) exit 130.
STOPPED = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: -signal.SIGTERM, signal.SIGINT: 130}
#: After the commit point only SIGKILL still ends the process; the tree is the new one.
AFTER_COMMIT = {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 0, signal.SIGINT: 0}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest_matches(root: Path) -> None:
    listed = {f["path"]: f["sha256"] for f in json.loads((root / layout.MANIFEST).read_text())["files"]}
    files = {p: hashlib.sha256(c).hexdigest() for p, c in _tree(root).items() if p != layout.MANIFEST}
    assert files == listed


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".output."))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """Profiles A and B and their reference trees."""
    work = tmp_path_factory.mktemp("fleet")
    old, new = work / "a.yaml", work / "b.yaml"
    old.write_text(fleet_yaml(HOSTS))
    new.write_text(fleet_yaml(HOSTS + 1).replace("mtu: 9000", "mtu: 8000"))
    for profile in (old, new):
        result = kvmnet("build", str(profile), "-o", str(work / profile.stem))
        assert result.returncode == 0, result.stderr
    return old, new, work / "a", work / "b"


def test_the_points_are_where_they_say(fleet: tuple[Path, Path, Path, Path], tmp_path: Path) -> None:
    """What the output directory holds at each point, seen while the build waits there."""
    _, new, reference_a, reference_b = fleet
    tree_a, tree_b = _tree(reference_a), _tree(reference_b)
    output = tmp_path / "output"
    for point in POINTS:
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(reference_a, output)
        build = PausedBuild(point, "build", str(new), "-o", str(output))
        build.reached()
        seen = _tree(output)
        staged = [_tree(stage) for stage in tmp_path.glob(".output.kvmnet-new-*")]
        code, _, err = build.finish()
        assert code == 0, err
        assert _tree(output) == tree_b
        assert seen == (tree_b if COMMITTED[point] else tree_a), point
        if point == "planned":
            assert staged == []
        elif point == "writing":
            [stage] = staged
            assert 0 < len(stage) < len(tree_b)
            assert stage.items() <= tree_b.items()
        elif point == "staged":
            assert staged == [tree_b]
        else:  # swapped: the staging directory's name now holds the previous tree
            assert staged == [tree_a]


@pytest.mark.parametrize("signal_number", list(STOPPED), ids=lambda s: s.name)
def test_a_signal_leaves_the_old_tree_before_the_commit_point_and_the_new_one_after(
    signal_number: signal.Signals, fleet: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    _, new, reference_a, reference_b = fleet
    tree_a, tree_b = _tree(reference_a), _tree(reference_b)
    output = tmp_path / "output"
    for point in POINTS:
        shutil.rmtree(output, ignore_errors=True)
        shutil.copytree(reference_a, output)
        build = PausedBuild(point, "build", str(new), "-o", str(output))
        build.reached()
        build.signal(signal_number)
        code, _, err = build.finish()
        committed = COMMITTED[point]
        expected = AFTER_COMMIT[signal_number] if committed else STOPPED[signal_number]
        assert (point, code) == (point, expected), err
        assert _tree(output) == (tree_b if committed else tree_a), f"{point}: neither the right tree"
        _manifest_matches(output)
        assert "Traceback" not in err
        if signal_number == signal.SIGINT and not committed:
            assert _hidden(tmp_path) == [], "Ctrl-C leaves nothing behind"  # it can clean up
    # Leftovers of killed builds are removed by the next one, which succeeds.
    result = kvmnet("build", str(new), "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert _hidden(tmp_path) == []
    assert _tree(output) == tree_b
