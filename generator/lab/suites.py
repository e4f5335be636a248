"""The generated testinfra suites (output/tests/), run by `kvmnet verify` against each
namespace of the lab: each hypervisor and each guest is checked by its own suite, exactly
as a real machine would be (scope `netns`: what a namespace can show)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from generator.lab.layout import Layout
from generator.lab.results import Result
from generator.lab.state import State
from generator.verify.runner import verify


def check(state: State, layout: Layout) -> list[Result]:
    machines = [(h.name, h.ns) for h in layout.hosts] + [(g.name, g.ns) for g in layout.guests]

    def one(machine: str, ns: str) -> list[Result]:
        report = verify(state.output, [machine], f"netns:{ns}", scope="netns")
        return [
            Result("suite", f"{r.machine}: {r.check}", str(r.outcome), str(r.message)) for r in report.results
        ]

    # One pytest process per namespace; they wait on their own subprocesses, so a few
    # at a time keep both cores busy. Results stay in machine order.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) * 2)) as pool:
        done = pool.map(lambda m: one(*m), machines)
        return [r for results in done for r in results]
