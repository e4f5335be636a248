"""Benchmark (a): one host with N VLANs + N bridges + N VXLANs, kvmnet vs netplan 0.106.

The same netplan `network:` document goes to Debian's netplan `generate` and, as the
only host of a kvmnet profile, to `kvmnet build`. Both run as fresh processes,
alternating, several rounds, writing to the same file system; medians are compared.
Both write one .netdev and one .network per device (kvmnet also a manifest).

    python -m bench.render_vs_netplan [--devices 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from bench.common import fresh, kvmnet_argv, machine, measure, median, scratch_root, tree_size
from tests.support.netplan import fetch


def network_yaml(n: int) -> str:
    lines = [
        "network:",
        "  version: 2",
        "  ethernets:",
        "    eno1:",
        "      mtu: 9000",
        "      addresses: [192.0.2.11/24]",
        "  vlans:",
    ]
    for i in range(n):
        lines += [f"    vl{i}:", f"      id: {i % 4094 + 1}", "      link: eno1"]
    lines.append("  bridges:")
    for i in range(n):
        lines += [f"    br{i}:", f"      interfaces: [vl{i}]"]
    lines.append("  tunnels:")
    for i in range(n):
        lines += [
            f"    vx{i}:",
            "      mode: vxlan",
            f"      id: {i + 1}",
            "      link: eno1",
            "      local: 192.0.2.11",
        ]
    return "\n".join(lines) + "\n"


def profile_yaml(network: str) -> str:
    # el9: a Debian preseed cannot carry a host this large (its late_command is one
    # `sh -c` argument, limited to 128 KiB); kvmnet refuses it and says so.
    return "hosts:\n  h1:\n    distro: el9\n" + "".join(f"    {line}\n" for line in network.splitlines())


def stages(profile: Path, out: Path) -> dict[str, float]:
    """kvmnet's own stages, in process, to show where its time goes."""
    t0 = time.perf_counter()
    from generator.load import load
    from generator.model import validate, with_defaults
    from generator.plan import make_plan
    from generator.renderers import render_all
    from generator.write import manifest, write

    gc.set_threshold(100_000, 50, 100)  # as the CLI does
    marks = [("import", time.perf_counter())]
    doc = with_defaults(load(profile))
    marks.append(("load", time.perf_counter()))
    model = validate(doc)
    marks.append(("validate", time.perf_counter()))
    plan = make_plan(model)
    marks.append(("plan", time.perf_counter()))
    artifacts = render_all(plan)
    marks.append(("render", time.perf_counter()))
    listing = manifest(artifacts, doc.digest)
    marks.append(("manifest", time.perf_counter()))
    write(fresh(out), [*artifacts, listing])
    marks.append(("write", time.perf_counter()))
    result = {}
    previous = t0
    for name, at in marks:
        result[name] = at - previous
        previous = at
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=3000, help="N: VLANs, bridges and VXLANs each")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    netplan = fetch()
    work = scratch_root()
    network = network_yaml(args.devices)
    profile = work / "profile.yaml"
    profile.write_text(profile_yaml(network))
    np_root = work / "netplan-root"
    kv_out = work / "kvmnet-out"

    kv_runs, np_runs = [], []
    for _ in range(args.rounds):
        fresh(np_root)
        config = np_root / "etc/netplan"
        config.mkdir(parents=True)
        (config / "10-bench.yaml").write_text(network)
        (config / "10-bench.yaml").chmod(0o600)
        np_runs.append(measure([str(netplan.generate), "--root-dir", str(np_root)], env=netplan.env()))
        fresh(kv_out)
        kv_runs.append(measure(kvmnet_argv("build", str(profile), "-o", str(kv_out))))
    np_files, np_bytes = tree_size(np_root / "run/systemd/network")
    kv_files, kv_bytes = tree_size(kv_out)
    kv, np = median(kv_runs), median(np_runs)
    breakdown = stages(profile, work / "stages-out")

    print(f"machine: {machine()}")
    print(f"output on: {work}")
    print(f"input: 1 host, {args.devices} VLANs + {args.devices} bridges + {args.devices} VXLANs")
    print(f"rounds: {args.rounds} (median)")
    print()
    print("| tool | wall s | cpu s | peak RSS MiB | files | bytes |")
    print("|---|---|---|---|---|---|")
    print(
        f"| netplan 0.106 generate | {np.wall:.2f} | {np.cpu:.2f} | {np.max_rss_kib / 1024:.0f} "
        f"| {np_files} | {np_bytes} |"
    )
    print(
        f"| kvmnet build | {kv.wall:.2f} | {kv.cpu:.2f} | {kv.max_rss_kib / 1024:.0f} | {kv_files} | {kv_bytes} |"
    )
    print()
    print(f"ratio kvmnet / netplan (wall): {kv.wall / np.wall:.2f}")
    print("kvmnet stages (s): " + ", ".join(f"{k} {v:.3f}" for k, v in breakdown.items()))
    fresh(work)


if __name__ == "__main__":
    main()
