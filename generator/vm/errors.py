"""The error the VM tier raises for what a user can fix: no image, no seed, a guest that
cannot be reached. A failed check is a result, not an error."""

from __future__ import annotations

from generator.errors import Diagnostic, KvmnetError


class VmTierError(KvmnetError):
    wrote_nothing = False  # a --workdir keeps what was built and booted so far

    @classmethod
    def of(cls, message: str) -> VmTierError:
        return cls([Diagnostic(message)])
