"""Graphviz's `dot`, for `kvmnet graph -o FILE.svg`."""

from __future__ import annotations

import shutil
import subprocess

from generator.errors import Diagnostic, KvmnetError, UsageError

DOT_TIMEOUT_S = 60.0


class GraphvizError(KvmnetError):
    """`dot` refused the graph."""


def to_svg(dot_text: str) -> bytes:
    binary = shutil.which("dot")
    if binary is None:  # a program missing: a usage error, as in every other command
        raise UsageError.single(
            "graphviz's `dot` is not installed (apt-get install graphviz); write a .dot file instead"
        )
    result = subprocess.run(
        [binary, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=DOT_TIMEOUT_S, check=False
    )
    if result.returncode != 0 or result.stderr.strip():
        said = result.stderr.decode(errors="replace").strip()
        raise GraphvizError([Diagnostic(f"dot could not draw the graph (exit {result.returncode}): {said}")])
    return result.stdout
