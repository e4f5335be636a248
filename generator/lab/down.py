"""`kvmnet lab down`: remove every namespace and process of a lab, and its state directory.

Works from names alone (names.py), so it also cleans up after a `lab up` that was killed
half-way, and it is idempotent: a lab that is not there is nothing to do. Processes go
first: a namespace that still holds a process outlives `ip netns delete`, and with it
every link in it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

from generator.lab.names import LabError, Names
from generator.live.commands import run
from generator.live.processes import alive, in_namespace, named, stop

ROUNDS = 5


@dataclass(frozen=True)
class Removed:
    namespaces: tuple[str, ...]
    processes: tuple[int, ...]
    state_dir: bool


def namespaces(names: Names) -> list[str]:
    """The lab's network namespaces that exist now."""
    result = run("ip", "-j", "netns", "list", check=False)
    listed = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    return sorted(str(n["name"]) for n in listed if str(n["name"]).startswith(names.prefix))


def processes(names: Names, spaces: list[str]) -> list[int]:
    """The lab's processes that are alive: named for it, or in one of its namespaces."""
    pids = set(named(names.process_prefix))
    for ns in spaces:
        pids.update(in_namespace(ns))
    return sorted(pid for pid in pids if alive(pid))


def leftovers(names: Names) -> tuple[list[str], list[int]]:
    spaces = namespaces(names)
    return spaces, processes(names, spaces)


def down(names: Names) -> Removed:
    removed_spaces: set[str] = set()
    removed_pids: set[int] = set()
    # A process that was being started when `lab up` died is named (and enters its
    # namespace) a moment later: look again until a round finds nothing.
    for _ in range(ROUNDS):
        spaces, pids = leftovers(names)
        if not spaces and not pids:
            break
        if survivors := stop(pids):
            raise LabError.single(f"lab {names.lab_id!r}: processes {survivors} survive SIGKILL")
        for ns in spaces:
            run("ip", "netns", "delete", ns, check=False)
        removed_spaces.update(spaces)
        removed_pids.update(pids)
        time.sleep(0.2)
    spaces_left, pids_left = leftovers(names)
    if spaces_left or pids_left:
        raise LabError.single(
            f"lab {names.lab_id!r} could not be removed completely: namespaces {spaces_left}, "
            f"processes {pids_left}"
        )
    had_state = names.state_dir.exists()
    shutil.rmtree(names.state_dir, ignore_errors=True)
    return Removed(tuple(sorted(removed_spaces)), tuple(sorted(removed_pids)), had_state)
