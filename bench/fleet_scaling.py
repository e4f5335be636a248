"""Benchmark (b): fleets of 10, 100 and 1000 hosts with one overlay across all of them.

A full-mesh overlay writes, on each of H hosts, one FDB entry per other host: the
output grows as H^2 by nature. What must not grow faster is the time per byte of
output: this prints time, output size and peak memory per fleet size, the time
spent beyond a fixed start-up cost (an empty profile built in the same run), and how
that time grows against the output.

    python -m bench.fleet_scaling [--sizes 10 100 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
from pathlib import Path

from bench.common import fresh, kvmnet_argv, machine, measure, median, scratch_root, tree_size


def fleet_yaml(hosts: int) -> str:
    network = ipaddress.ip_network("10.0.0.0/16")
    lines = ["hosts:"]
    for i in range(hosts):
        address = network[i + 10]
        lines += [
            f"  hv{i}:",
            "    network:",
            "      ethernets:",
            "        eno1:",
            "          mtu: 9000",
            f"          addresses: [{address}/16]",
            "          routes: [{to: default, via: 10.0.0.1}]",
        ]
    lines += [
        "overlays:",
        "  fleet:",
        "    vni: 4242",
        "    underlay: eno1",
        "    bridge: br-fleet",
        "    hosts: [" + ", ".join(f"hv{i}" for i in range(hosts)) + "]",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = scratch_root()

    empty = work / "empty.yaml"
    empty.write_text("hosts: {}\n")
    base = median(
        [measure(kvmnet_argv("build", str(empty), "-o", str(fresh(work / "e")))) for _ in range(args.rounds)]
    )

    rows = []
    for size in args.sizes:
        profile = work / f"fleet-{size}.yaml"
        profile.write_text(fleet_yaml(size))
        out = work / f"out-{size}"
        runs = [
            measure(kvmnet_argv("build", str(profile), "-o", str(fresh(out)))) for _ in range(args.rounds)
        ]
        files, size_bytes = tree_size(out)
        rows.append((size, median(runs), files, size_bytes, Path(profile).stat().st_size))
        fresh(out)

    print(f"machine: {machine()}")
    print(f"output on: {work}; rounds: {args.rounds} (median); start-up (empty profile): {base.wall:.2f} s")
    print()
    print(
        "| hosts | profile KiB | files | output MiB | wall s | beyond start-up s | µs per output KiB | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size, run, files, size_bytes, profile_bytes in rows:
        extra = max(run.wall - base.wall, 0.0)
        per_kib = extra / (size_bytes / 1024) * 1e6
        print(
            f"| {size} | {profile_bytes / 1024:.0f} | {files} | {size_bytes / 2**20:.1f} | {run.wall:.2f} "
            f"| {extra:.2f} | {per_kib:.1f} | {run.max_rss_kib / 1024:.0f} |"
        )
    print()
    for (s1, r1, _, b1, _), (s2, r2, _, b2, _) in itertools.pairwise(rows):
        growth_time = max(r2.wall - base.wall, 1e-9) / max(r1.wall - base.wall, 1e-9)
        growth_bytes = b2 / b1
        print(
            f"{s1} -> {s2} hosts: output x{growth_bytes:.1f}, time beyond start-up x{growth_time:.1f} "
            f"(time/output growth {growth_time / growth_bytes:.2f}; 1.0 = proportional)"
        )
    fresh(work)


if __name__ == "__main__":
    main()
