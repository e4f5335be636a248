"""The error `kvmnet verify` raises for what a user can fix: a bad target, an unknown machine,
no generated suites, suites pytest could not run. Check failures are results, not errors.
The checks could not run as asked, so it is a usage error (exit 2)."""

from __future__ import annotations

from generator.errors import Diagnostic, UsageError


class VerifyError(UsageError):
    @classmethod
    def of(cls, message: str) -> VerifyError:
        return cls([Diagnostic(message)])
