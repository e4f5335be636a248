"""The error `kvmnet image` raises when diskimage-builder, or packing the box, failed.
What the machine lacks (a program, the mirror, sudo) is a `UsageError` instead."""

from __future__ import annotations

from generator.errors import Diagnostic, KvmnetError


class ImageError(KvmnetError):
    wrote_nothing = False  # the output tree was written (kept with --output-dir); the image not

    @classmethod
    def of(cls, message: str) -> ImageError:
        return cls([Diagnostic(message)])
