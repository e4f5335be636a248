"""Helpers shared by the benchmarks: run a command in a fresh process and measure it."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child
    max_rss_kib: int


def measure(argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> Run:
    """Run `argv` to completion; its own wall time, CPU time and peak memory (wait4)."""
    started = time.perf_counter()
    with subprocess.Popen(
        argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        max(r.max_rss_kib for r in runs),
    )


def scratch_root() -> Path:
    """Where outputs go: tmpfs if there is one, so the disk's state does not dominate.

    Deleting and writing tens of thousands of files leaves an ext4 disk busy with
    write-back for seconds, which made the same command vary 3x from run to run.
    """
    chosen = os.environ.get("KVMNET_BENCH_DIR")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="kvmnet-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="kvmnet-bench-"))


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def kvmnet_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "generator", *args]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def tree_size(root: Path) -> tuple[int, int]:
    files = 0
    size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return files, size
