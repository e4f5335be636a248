"""Run the generated suites (output/tests/) against a target with pytest, testinfra and
xdist, and read the results back from pytest's own JUnit XML.

This is the API `kvmnet verify` and `kvmnet lab` share:

    report = verify(Path("output"), ["hv1"], "netns:lab-hv1", scope="netns")
    report.ok, report.results

pytest runs in a child process (under `ip netns exec` for a namespace target), with the
suites' own pytest.ini, no cache and no bytecode files, so that the output tree stays
exactly as `kvmnet build` wrote it. Parallel runs are pytest-xdist's (`workers`), one
module, i.e. one machine, per worker at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from generator import layout
from generator.verify.errors import VerifyError
from generator.verify.targets import Target, inventory_hosts, parse

Outcome = Literal["passed", "failed", "skipped"]
Scope = Literal["all", "netns"]

#: pytest's exit codes that still mean "the checks ran" (0 all passed, 1 some failed,
#: 5 none selected: e.g. a machine without `netns` checks).
_RAN = (0, 1, 5)
_TAIL = 40  # lines of pytest's output shown when pytest itself fails


@dataclass(frozen=True)
class CheckResult:
    machine: str
    check: str  # the test and what it checked, e.g. "test_mtu[eno1]"
    outcome: Outcome
    message: str  # the failure, or why it was skipped; "" when passed


@dataclass(frozen=True)
class Report:
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """No failure, and at least one check passed (all skipped proves nothing)."""
        outcomes = {r.outcome for r in self.results}
        return "failed" not in outcomes and "passed" in outcomes

    def count(self, machine: str, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.machine == machine and r.outcome == outcome)

    @property
    def machines(self) -> list[str]:
        return sorted({r.machine for r in self.results})

    def to_json(self) -> str:
        totals = {o: sum(1 for r in self.results if r.outcome == o) for o in ("passed", "failed", "skipped")}
        data = {"ok": self.ok, "totals": totals, "results": [asdict(r) for r in self.results]}
        return json.dumps(data, indent=2) + "\n"


# --- the suites in an output tree ------------------------------------------------------


def suites(output: Path) -> dict[str, Path]:
    """Machine name -> its generated test module, from the expected-state files."""
    tests = output / layout.TESTS
    if not (output / layout.CHECKS_LIBRARY).is_file():
        raise VerifyError.of(f"no generated check suites in {tests}: run `kvmnet build -o {output}` first")
    found: dict[str, Path] = {}
    for data in sorted(tests.glob("*.json")):
        suite = layout.suite_for_state(f"{layout.TESTS}/{data.name}")
        if suite is not None and (output / suite).is_file():
            machine = json.loads(data.read_text(encoding="utf-8"))["machine"]
            found[str(machine)] = output / suite
    return found


def _select(available: dict[str, Path], machines: Sequence[str], target: Target) -> list[str]:
    unknown = [m for m in machines if m not in available]
    if unknown:
        known = ", ".join(sorted(available)) or "none"
        raise VerifyError.of(f"not a machine of this output: {', '.join(unknown)} (its machines: {known})")
    if not machines and not target.fleet:
        raise VerifyError.of(
            f"name the machine(s) target {target.text} is, e.g. `kvmnet verify --target {target.text} "
            f"{next(iter(sorted(available)), 'hv1')}` (machines: {', '.join(sorted(available))}); "
            "only --target ansible knows machines by name"
        )
    chosen = list(dict.fromkeys(machines)) or sorted(available)
    if target.kind == "ansible" and target.inventory is not None:
        missing = [m for m in chosen if m not in inventory_hosts(target.inventory)]
        if missing and machines:
            raise VerifyError.of(f"not in the Ansible inventory {target.inventory}: {', '.join(missing)}")
        chosen = [m for m in chosen if m not in missing]  # fleet-wide: what the inventory has
    return chosen


# --- running pytest --------------------------------------------------------------------


def _command(
    target: Target,
    machines: list[str],
    modules: list[Path],
    tests: Path,
    junit: Path,
    scope: Scope,
    workers: int | None,
    sudo: bool = False,
) -> list[str]:
    command = [*target.prefix(), sys.executable, "-m", "pytest", *map(str, modules)]
    command += ["-c", str(tests / "pytest.ini"), "--rootdir", str(tests), "-q", "--junitxml", str(junit)]
    # user properties (machine, check) are written per test case in the xunit1 dialect
    command += ["-o", "junit_family=xunit1", "-o", "junit_suite_name=kvmnet"]
    if scope == "netns":
        command += ["-m", "netns"]
    if workers:
        command += ["-n", str(workers), "--dist", "loadfile"]
    if sudo:
        # testinfra's own option: every command on the machine through `sudo`, for a
        # login that is not root (a host's admin user with `sudo: true`).
        command += ["--sudo"]
    return command + target.testinfra_args(machines if target.kind == "ansible" else [])


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # testinfra's ansible backend runs `ansible-inventory` from PATH: prefer kvmnet's own.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the output tree
    return env


def _results(junit: Path) -> tuple[CheckResult, ...]:
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value", "") for p in case.iter("property")}
        outcome: Outcome = "passed"
        message = ""
        for tag, kind in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome = "failed" if kind == "failed" else "skipped"
                message = element.get("message") or (element.text or "").strip()
                break
        machine = props.get("kvmnet.machine") or case.get("classname", "")
        check = props.get("kvmnet.check") or case.get("name", "")
        out.append(CheckResult(str(machine), str(check), outcome, _clean(message, outcome)))
    return tuple(out)


def _clean(message: str, outcome: Outcome) -> str:
    """pytest prefixes what the check said; keep only what it said."""
    for prefix in ("Failed: ", "Skipped: "):
        message = message.removeprefix(prefix)
    return message.strip()


def verify(
    output: Path,
    machines: Sequence[str],
    target: str,
    *,
    scope: Scope = "all",
    junit: Path | None = None,
    json_report: Path | None = None,
    workers: int | None = None,
    sudo: bool = False,
) -> Report:
    """Run the suites of `machines` (all of them for an ansible target if none) on `target`."""
    if scope not in ("all", "netns"):
        raise VerifyError.of(f"unknown scope {scope!r}: all or netns")
    parsed = parse(target, output)
    available = suites(output)
    chosen = _select(available, machines, parsed)
    if not chosen:
        raise VerifyError.of(f"none of this output's machines is in the inventory {parsed.inventory}")
    tests = (output / layout.TESTS).resolve()
    modules = [available[m].resolve() for m in chosen]
    with tempfile.TemporaryDirectory(prefix="kvmnet-verify-") as scratch:
        xml = (junit or Path(scratch) / "junit.xml").resolve()
        xml.parent.mkdir(parents=True, exist_ok=True)
        command = _command(parsed, chosen, modules, tests, xml, scope, workers, sudo)
        result = subprocess.run(command, capture_output=True, text=True, env=_environment(), check=False)
        if result.returncode not in _RAN or not xml.exists():
            said = "\n".join((result.stdout + result.stderr).strip().splitlines()[-_TAIL:])
            raise VerifyError.of(f"pytest could not run the suites (exit {result.returncode}):\n{said}")
        report = Report(_results(xml))
    if json_report is not None:
        json_report.parent.mkdir(parents=True, exist_ok=True)
        json_report.write_text(report.to_json(), encoding="utf-8")
    return report
