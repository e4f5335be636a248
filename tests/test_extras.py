"""A plain install is the generator: pytest, testinfra, xdist, pyroute2 and libvirt-python
are extras (generator/extras.py), and the commands that need one say which to install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from generator import extras
from generator.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OPTIONAL = {p.module for packages in extras.EXTRAS.values() for p in packages}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_pyproject_installs_what_the_table_says() -> None:
    optional = PROJECT["optional-dependencies"]
    every = set()
    for extra, packages in extras.EXTRAS.items():
        assert _names(optional[extra]) == {p.distribution for p in packages}, extra
        every |= {p.distribution for p in packages}
    assert not every & _names(PROJECT["dependencies"]), "a plain install pulls an extra's package"
    assert every <= _names(optional["test"]), "the test extra runs every command"


def test_require_names_the_extra_and_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "_installed", lambda module: module != "pyroute2")
    extras.require("verify")
    with pytest.raises(UsageError) as caught:
        extras.require("lab")
    assert [d.message for d in caught.value.diagnostics] == [
        "needs the 'lab' extra: pip install 'kvmnet[lab]' (missing: pyroute2)"
    ]


#: A fresh interpreter in which none of the extras' packages can be imported (a meta-path
#: finder refuses them, and records each time one is asked for), running `kvmnet` in-process.
_WITHOUT_EXTRAS = textwrap.dedent(
    """
    import contextlib, io, json, sys

    BLOCKED = tuple(sys.argv[1].split(","))
    asked = []

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                asked.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    for name in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
        del sys.modules[name]

    from generator.cli import run

    results = []
    for argv in json.loads(sys.argv[2]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(argv)
        results.append({"argv": argv, "code": code, "err": err.getvalue(), "asked": list(asked)})
    print(json.dumps(results))
    """
)


def test_the_generator_runs_without_the_extras_and_verify_names_its_extra(tmp_path: Path) -> None:
    import json

    out = tmp_path / "out"
    generator_commands = [
        ["build", "-o", str(out)],
        ["validate", str(REPO / "profiles" / "default.yaml")],
        ["plan", "--json"],
        ["schema"],
        ["graph"],
    ]
    blocked = sorted(OPTIONAL | {"_pytest"})
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_EXTRAS,
            ",".join(blocked),
            json.dumps([*generator_commands, ["verify", "-o", str(out), "hv1"]]),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    *generated, verify = json.loads(ran.stdout.splitlines()[-1])
    for result in generated:
        assert (result["code"], result["err"]) == (0, ""), result
        # Not even asked for: start-up and the generator's commands import none of them.
        assert result["asked"] == [], result
    assert (out / "tests" / "kvmnet_checks.py").is_file()
    assert verify["code"] == 2
    assert verify["err"] == (
        "kvmnet verify: needs the 'verify' extra: pip install 'kvmnet[verify]' "
        "(missing: pytest, pytest-testinfra, pytest-xdist)\n"
        "kvmnet: 1 problem; nothing was written\n"
    )
