"""Bad profiles, each paired with the exact lines a user sees.

Every file in tests/bad/ runs through the real command line (`generator.cli.run`, in this
interpreter: a fresh one per file would cost 0.3 s of start-up each, and the fresh-process
path is tests/test_cli.py's); stderr must equal its `.expected` file, the exit code must
be 1, and nothing may be written. The expected
files are reviewed by hand: regenerate with `pytest --update-golden` only to review
the diff, never to make a failure go away.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.cli import kvmnet_in_process as kvmnet

REPO = Path(__file__).resolve().parents[1]
BAD = sorted((REPO / "tests" / "bad").glob("*.yaml"))


def test_corpus_is_there() -> None:
    assert len(BAD) >= 10
    assert all(p.with_suffix(".expected").exists() for p in BAD), "every bad profile needs its .expected"


@pytest.mark.parametrize("profile", BAD, ids=[p.stem for p in BAD])
def test_bad_profile_reports_exact_errors(profile: Path, update_golden: bool, tmp_path: Path) -> None:
    relative = profile.relative_to(REPO).as_posix()
    result = kvmnet("validate", relative)
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    expected = profile.with_suffix(".expected")
    if update_golden:
        expected.write_text(result.stderr)
    assert result.stderr == expected.read_text()
    # Every line but the summary is `file:line:col: [key.path: ]message`.
    for line in result.stderr.splitlines()[:-1]:
        assert line.startswith(f"{relative}:"), line
        _, row, col, _ = line.split(":", 3)
        assert row.isdigit() and col.isdigit(), line


@pytest.mark.parametrize("profile", BAD, ids=[p.stem for p in BAD])
def test_build_refuses_what_validate_refuses_and_writes_nothing(profile: Path, tmp_path: Path) -> None:
    """`validate` and `build` agree: the same lines (the `.expected` file, which is what
    `validate` prints), and `build` writes nothing."""
    out = tmp_path / "out"
    result = kvmnet("build", profile.relative_to(REPO).as_posix(), "-o", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == profile.with_suffix(".expected").read_text()
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary tree or lock left behind either


def test_validate_refuses_what_only_rendering_can_tell(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A limit only rendering knows is refused by `validate` as by `build`: a preseed's
    late_command must fit one exec argument even once the bundle is fetched instead of
    embedded (only the install step is left in it). The limit is lowered here so that a
    small host exceeds it: no real host comes near."""
    from generator import cli
    from generator.renderers import pxe

    monkeypatch.setattr(pxe, "MAX_ARG_STRLEN", 1024)
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text("hosts:\n  hv1: {}\n")
    reports = []
    for argv in (["validate", "p.yaml"], ["build", "p.yaml", "-o", "out"]):
        assert cli.run(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        reports.append(captured.err)
    assert not Path("out").exists()
    validate, build = reports
    assert validate == build
    assert re.fullmatch(
        r"p\.yaml:2:8: hosts\.hv1: the preseed late_command would be \d+ bytes even without the bundle; "
        r"debian-installer runs it as one `sh -c` argument, which Linux limits to 1023 bytes\n"
        r"kvmnet: 1 problem; nothing was written\n",
        validate,
    ), validate


def test_alias_bomb_is_refused_quickly() -> None:
    import time

    from generator.errors import LoadError
    from generator.load import load

    started = time.perf_counter()
    with pytest.raises(LoadError):
        load(REPO / "tests" / "bad" / "alias-bomb.yaml")
    assert time.perf_counter() - started < 1.0
