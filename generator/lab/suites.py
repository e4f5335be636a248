"""The generated testinfra suites (output/tests/), run by `kvmnet verify` against each
namespace of the lab: each hypervisor and each guest is checked by its own suite, exactly
as a real machine would be."""

from __future__ import annotations

from generator.lab.layout import Layout
from generator.lab.results import Result
from generator.lab.state import State


def check(state: State, layout: Layout) -> list[Result]:
    try:
        from generator.verify.runner import verify  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        return [
            Result(
                "suite",
                "all",
                "skipped",
                f"the generated suites cannot run: kvmnet verify is not available ({exc})",
            )
        ]
    machines = [(h.name, h.ns) for h in layout.hosts] + [(g.name, g.ns) for g in layout.guests]
    results = []
    for machine, ns in machines:
        report = verify(state.output, [machine], f"netns:{ns}", scope="netns")
        for r in report.results:
            results.append(Result("suite", f"{r.machine}: {r.check}", str(r.outcome), str(r.message)))
    return results
