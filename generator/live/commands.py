"""Running programs for the live tiers (lab, verify, tests): one place for timeouts and errors."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

COMMAND_TIMEOUT = 20.0


def run(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def ping(
    ns: str, destination: str, payload: int, count: int = 3, deadline: int = 5
) -> subprocess.CompletedProcess[str]:
    """ICMP echo with Don't Fragment set, so a frame too big anywhere on the path is lost.

    Succeeds only if all `count` replies arrive within `deadline` seconds.
    """
    return run(
        *("ip", "netns", "exec", ns, "ping", "-n", "-M", "do", "-s", str(payload)),
        *("-c", str(count), "-i", "0.2", "-w", str(deadline), destination),
        check=False,
    )


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
