"""Every sub-command reports alike (generator/session.py): a bad profile gives the same
located lines and exit 1, a usage error exit 2 with the command named, a profile's warnings
are shown wherever it is read, and an internal error is one line (a traceback only with
--debug).

Each case stops at a check that comes before anything acts on the machine (the profile,
then the arguments), so none needs root, a lab or a VM; `lab` and `vm` check the profile
and their arguments first for that reason, and so that a user sees them on any machine.
`verify` reads an output tree, not a profile: it has no profile case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from generator import session
from generator.errors import Diagnostic, UsageError
from generator.session import Exit, Session
from tests.support.cli import kvmnet_in_process

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "profiles" / "default.yaml"
GUESTS = REPO / "profiles" / "guests.yaml"
SUMMARY = "kvmnet: 1 problem; nothing was written"


def _commands(profile: Path, tmp: Path) -> dict[str, list[str]]:
    """Each sub-command that reads a profile, as far as a profile or argument check."""
    p = str(profile)
    return {
        "build": ["build", p, "-o", str(tmp / "out")],
        "validate": ["validate", p],
        "plan": ["plan", p, "--json"],
        "graph": ["graph", p],
        # `--graph x.png` is refused after the profile is read, before root is asked for
        "lab": ["lab", "up", p, "--graph", str(tmp / "x.png")],
        # an unknown guest is refused after the profile is read, before root is asked for
        "vm": ["vm", "test", p, "--guest", "nope"],
        "image": ["image", p, "--role", "guest", "--machine", "nope"],
    }


def test_a_bad_profile_reads_the_same_in_every_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  hv1:\n    netwrk: {}\n    network: {mtu: 9000}\n")
    said: dict[str, str] = {}
    for command, argv in _commands(bad, tmp_path).items():
        result = kvmnet_in_process(*argv)
        assert result.returncode == Exit.PROBLEMS, (command, result.stderr)
        assert result.stdout == "", (command, result.stdout)
        said[command] = result.stderr
    lines = said["build"].splitlines()
    assert lines[0].startswith(f"{bad}:3:5: hosts.hv1.netwrk: unknown key 'netwrk'"), lines
    assert lines[1].startswith(f"{bad}:4:15: hosts.hv1.network.mtu: unknown key 'mtu'"), lines
    assert lines[2:] == ["kvmnet: 2 problems; nothing was written"]
    assert {command: text for command, text in said.items() if text != said["build"]} == {}
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # argparse's own usage errors: 2, with the usage line
        (["build", "--seed-iso", "--frob"], "usage: kvmnet [-h]"),
        (["validate", "a.yaml", "b.yaml"], "usage: kvmnet [-h]"),
        (["plan", "--frob"], "usage: kvmnet [-h]"),
        # kvmnet's: 2, the command named, the summary line
        (["graph", str(DEFAULT), "-o", "fleet.png"], "kvmnet graph: -o fleet.png: write .svg, .dot or .gv"),
        (["verify", "--workers", "0", "hv1"], "kvmnet verify: --workers must be at least 1"),
        (
            ["verify", "-o", "/nonexistent", "hv1"],
            "kvmnet verify: no generated check suites in /nonexistent/tests: "
            "run `kvmnet build -o /nonexistent` first",
        ),
        (["lab", "up", "--id", "Not_Valid"], "kvmnet lab: --id: lab id 'Not_Valid' is not valid"),
        (["lab", "down", "--id", "Not_Valid"], "kvmnet lab: --id: lab id 'Not_Valid' is not valid"),
        (["vm", "test", str(GUESTS), "--guest", "nope"], f"kvmnet vm: not a machine of {GUESTS}: nope"),
        (
            ["vm", "test", str(GUESTS), "--guest", "app1", "--image", "/nonexistent.qcow2"],
            "kvmnet vm: --image /nonexistent.qcow2: no such image",
        ),
        (
            ["image", str(GUESTS), "--role", "guest", "--machine", "nope"],
            f"kvmnet image: {GUESTS} has no guest named 'nope' (guests: app1, edge1, legacy1)",
        ),
    ],
)
def test_usage_errors_exit_2_naming_the_command(argv: list[str], said: str) -> None:
    result = kvmnet_in_process(*argv)
    assert result.returncode == Exit.USAGE, result.stderr
    assert said in result.stderr
    if said.startswith("kvmnet "):
        assert result.stderr.splitlines()[-1] == SUMMARY, result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_that_reads_a_profile_shows_its_warnings(tmp_path: Path) -> None:
    """`image`, `vm` and `lab up` dropped the plan's warnings; each now shows them, located
    as `build` does, once."""
    text = DEFAULT.read_text().replace(
        "        rx-ring: 1024\n", "        rx-ring: 1024\n        queues: 16\n", 1
    )
    line = text.splitlines().index("        queues: 16") + 1
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    warning = (
        f"{profile}:{line}:17: guests.web1.interfaces[0].queues: warning: 16 queue pairs for 4 vCPUs: "
        "the guest uses at most 4; the rest only cost memory"
    )
    expected_exit = {"lab": Exit.USAGE, "vm": Exit.USAGE, "image": Exit.USAGE}
    for command, argv in _commands(profile, tmp_path).items():
        result = kvmnet_in_process(*argv)
        assert result.returncode == expected_exit.get(command, Exit.OK), (command, result.stderr)
        assert result.stderr.splitlines().count(warning) == 1, (command, result.stderr)
        assert result.stderr.startswith(warning + "\n"), (command, result.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        ["build", str(DEFAULT), "-o", "unused"],
        ["validate", str(DEFAULT)],
        ["plan", str(DEFAULT)],
        ["graph", str(DEFAULT)],
        ["lab", "up", str(DEFAULT)],
        ["vm", "test", str(GUESTS)],
        ["image", str(GUESTS), "--role", "guest", "--machine", "app1"],
    ],
)
def test_an_internal_error_is_one_line_and_a_traceback_only_with_debug(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(self: Session, profile: Path) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Session, "plan", bug)
    result = kvmnet_in_process(*argv)
    assert result.returncode == Exit.INTERNAL
    assert result.stderr == (
        "kvmnet: internal error: RuntimeError: a bug (run with --debug for the traceback, and please report it)\n"
    )
    with pytest.raises(RuntimeError, match="a bug"):
        kvmnet_in_process("--debug", *argv)


def test_verify_internal_error_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from generator.verify import command

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(command, "verify", bug)
    result = kvmnet_in_process("verify", "-o", str(tmp_path), "hv1")
    assert (result.returncode, result.stderr.count("\n")) == (Exit.INTERNAL, 1), result.stderr
    with pytest.raises(RuntimeError, match="a bug"):
        kvmnet_in_process("--debug", "verify", "-o", str(tmp_path), "hv1")


def test_exit_codes_are_the_documented_numbers() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 70, 130]


def test_the_exit_code_is_the_error_class() -> None:
    from generator.errors import LoadError, PlanError, ProfileError, WriteError
    from generator.image.errors import ImageError
    from generator.lab.names import LabError
    from generator.verify.errors import VerifyError
    from generator.vm.errors import VmTierError

    for problem in (LoadError, ProfileError, PlanError, WriteError, LabError, ImageError, VmTierError):
        assert session.exit_code(problem([Diagnostic("x")])) == Exit.PROBLEMS, problem
    for usage in (UsageError, VerifyError):
        assert session.exit_code(usage([Diagnostic("x")])) == Exit.USAGE, usage
