"""How a kvmnet command speaks to its user, whichever sub-command it is.

One definition of the exit codes, and one way of telling problems and warnings:

    profile.yaml:6:11: hosts.hv1.network.ethernets.eno1.adresses: unknown key 'adresses'; did you mean ...
    profile.yaml:30:17: guests.web1.interfaces[0].queues: warning: 16 queue pairs for 4 vCPUs: ...
    kvmnet lab: must run as root: it creates network namespaces and runs systemd-networkd
    kvmnet: 2 problems; nothing was written

A problem with no place in a file (not root, a program missing, a bad `--id`) names the
command that says it, as `grep: x: No such file or directory` does. An internal error (a bug) is one
line; its traceback shows only with --debug.

cli.py makes one `Session` per run and hands it to the sub-command, which prints its own
results (tables, progress) and raises a `KvmnetError` for a problem; it plans a profile
through `Session.plan`, so that every command that reads a profile shows its warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from rich.console import Console

from generator.errors import Diagnostic, KvmnetError, UsageError
from generator.pipeline import Planned, plan_profile


class Exit(IntEnum):
    """kvmnet's exit codes, the same for every sub-command."""

    OK = 0
    #: the profile has problems; `build --check` found drift; a check failed; a lab, an
    #: image or a VM did not come up
    PROBLEMS = 1
    #: the command cannot run as asked: bad arguments, an unknown machine, not root, a
    #: program or an optional extra missing (argparse's own usage errors are 2 as well)
    USAGE = 2
    #: a bug in kvmnet (sysexits' EX_SOFTWARE): run with --debug and report it
    INTERNAL = 70
    #: Ctrl-C, as a shell reports a command ended by SIGINT (128 + 2)
    INTERRUPTED = 130


def exit_code(error: KvmnetError) -> Exit:
    return Exit.USAGE if isinstance(error, UsageError) else Exit.PROBLEMS


def consoles() -> tuple[Console, Console]:
    """Standard output and standard error, as every command prints to them."""
    # emoji=False: rich would turn "profile.yaml:100:9" into "profile.yaml💯9" (found by
    # tests/test_fuzz.py); markup=False: values from profiles are printed as they are.
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    return out, err


@dataclass(frozen=True)
class Session:
    command: str  # the sub-command, e.g. "lab"
    out: Console
    err: Console

    def plan(self, profile: Path) -> Planned:
        """Plan `profile` and show its warnings (its problems are raised, as `plan_profile`'s)."""
        planned = plan_profile(profile)
        for warning in planned.warnings:
            self.warn(warning)
        return planned

    def warn(self, warning: Diagnostic) -> None:
        self.err.print(self.line(warning, "warning"), markup=False, highlight=False)

    def problems(self, error: KvmnetError) -> Exit:
        """Print every problem of `error` and the summary line; the exit code it means."""
        for diagnostic in error.diagnostics:
            self.err.print(self.line(diagnostic), markup=False, highlight=False)
        count = len(error.diagnostics)
        tail = "; nothing was written" if error.wrote_nothing else ""
        self.err.print(f"kvmnet: {count} problem{'s' if count != 1 else ''}{tail}", markup=False)
        return exit_code(error)

    def internal(self, error: Exception) -> Exit:
        self.err.print(
            f"kvmnet: internal error: {type(error).__name__}: {error} "
            "(run with --debug for the traceback, and please report it)",
            markup=False,
            highlight=False,
        )
        return Exit.INTERNAL

    def line(self, diagnostic: Diagnostic, severity: str = "") -> str:
        text = diagnostic.format(severity)
        return text if diagnostic.location is not None else f"kvmnet {self.command}: {text}"
