"""The error `kvmnet verify` raises for what a user can fix: a bad target, an unknown machine,
no generated suites. Check failures are results, not errors."""

from __future__ import annotations

from generator.errors import Diagnostic, KvmnetError


class VerifyError(KvmnetError):
    @classmethod
    def of(cls, message: str) -> VerifyError:
        return cls([Diagnostic(message)])
