"""`kvmnet build` in a child process that stops at a known point and waits for the test.

Tests that interrupt a build must interrupt it at a point they know, not after a sleep
that lands elsewhere on a faster or busier machine. kvmnet has no hook for that (test-only
branches in product code are what STYLE.md tells us to avoid): the child runs this
module, which wraps one function of kvmnet's writer before running the real entry point.
On reaching the point, the child writes the point's name to one pipe and reads a byte from
another; meanwhile the test looks at the output directory and sends a signal, then lets
it go on (or not, if the signal ended it).

Points, in the order a build passes them:
- `planned`: profile planned, artifacts rendered, the writer not yet called;
- `writing`: half of the new tree's files written in its hidden staging directory;
- `staged`: the new tree complete and flushed, the swap (commit point) next;
- `swapped`: the swap done, before the writer flushes the directory and removes the old
  tree, inside the commit's signal block.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
POINTS = ("planned", "writing", "staged", "swapped")


class _Halfway(list[Any]):
    """The artifacts to write, pausing when half of them have been written."""

    def __init__(self, items: Sequence[Any], pause: Callable[[], None]) -> None:
        super().__init__(items)
        self._pause = pause

    def __iter__(self) -> Iterator[Any]:
        half = len(self) // 2
        for index, item in enumerate(super().__iter__()):
            if index == half:
                self._pause()
            yield item


def _install(point: str, pause: Callable[[], None]) -> None:
    from generator import pipeline, write

    def before(module: Any, name: str) -> None:
        real = getattr(module, name)

        def paused(*args: Any) -> Any:
            pause()
            return real(*args)

        setattr(module, name, paused)

    if point == "planned":
        before(pipeline, "write")  # the pipeline's own reference to the writer
    elif point == "writing":
        real_tree = write._write_tree
        write._write_tree = lambda base, artifacts: real_tree(base, _Halfway(artifacts, pause))
    elif point == "staged":
        before(write, "_commit")
    elif point == "swapped":
        before(write, "_flush_parent")  # the first step after the swap, in every branch
    else:
        raise SystemExit(f"unknown point {point!r}; one of {', '.join(POINTS)}")


def _child(argv: list[str]) -> int:
    point, ready, go, *args = argv
    ready_fd, go_fd = int(ready), int(go)

    def pause() -> None:
        os.write(ready_fd, f"{point}\n".encode())
        os.read(go_fd, 1)

    _install(point, pause)
    from generator.__main__ import entry

    sys.argv = ["kvmnet", *args]
    return entry()


class PausedBuild:
    """`kvmnet ARGS` in a child that stops at `point` (see the module's docstring)."""

    def __init__(self, point: str, *args: str) -> None:
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.paused_build", point, str(ready_w), str(go_r), *args],
            cwd=REPO,
            pass_fds=(ready_w, go_r),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(ready_w)
        os.close(go_r)
        self._ready, self._go = ready_r, go_w
        self.point = point

    def reached(self, timeout: float = 120) -> None:
        """Wait until the child is stopped at its point; fail if it ended without reaching it."""
        readable, _, _ = select.select([self._ready], [], [], timeout)
        said = os.read(self._ready, 64).decode() if readable else ""
        if said.strip() != self.point:
            self.process.kill()
            _, err = self.process.communicate()
            raise AssertionError(
                f"the build never reached {self.point!r} (exit {self.process.returncode}): {err}"
            )

    def signal(self, signal_number: int) -> None:
        os.kill(self.process.pid, signal_number)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Let the child go on (if it still runs) and wait for it: exit code, stdout, stderr."""
        with contextlib.suppress(BrokenPipeError):  # the signal ended it
            os.write(self._go, b"x")
        os.close(self._go)
        os.close(self._ready)
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
