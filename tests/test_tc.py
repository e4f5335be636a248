"""Traffic control, checked by its consumers: `tc -batch` on a veth in a network namespace
(read back with `tc -j` and netlink), systemd-analyze for the unit, and systemd-networkd
252 for the networkd engine.

Exactness: rates come back from the kernel in bytes per second and must equal the
profile's exactly. A burst is kept by the kernel as the time it takes to send it at the
rate, in whole microseconds (tc_calc_xmittime), so the burst read back is the one
configured to within one microsecond of traffic at that rate (25 bytes at 200 Mbit/s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import NetNS

from generator import layout
from generator.lab import tcunit
from generator.lab.layout import kernel_name
from generator.pipeline import artifacts_for, plan_profile
from generator.plan.types import HTB_CLASS, HostPlan, Kind, TcPlan
from tests.support.kernel_gaps import kernel_gap
from tests.support.networkd import Lab, run, wait_for

pytestmark = pytest.mark.networkd

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
#: Ingress policing alone (no root qdisc of kvmnet's): no bundled profile has it.
POLICE_ONLY = REPO / "tests" / "tc" / "police-only.yaml"
#: Leaves under both engines' shapers and a plain qdisc, in kinds the sandbox kernel has.
LEAVES = REPO / "tests" / "tc" / "leaves.yaml"
ALL = [(p, h, t) for p in (*PROFILES, POLICE_ONLY, LEAVES) for h in plan_profile(p).plan.hosts for t in h.tc]
SERVICE = [
    pytest.param(p, h.name, t.device_id, id=f"{p.stem}/{h.name}/{t.device_id}")
    for p, h, t in ALL
    if t.engine == "service"
]
NETWORKD = [
    pytest.param(p, h.name, t.device_id, id=f"{p.stem}/{h.name}/{t.device_id}")
    for p, h, t in ALL
    if t.engine == "networkd"
]


def host_of(profile: Path, host: str) -> HostPlan:
    return next(h for h in plan_profile(profile).plan.hosts if h.name == host)


def tc_of(profile: Path, host: str, device: str) -> TcPlan:
    return next(t for t in host_of(profile, host).tc if t.device_id == device)


def files_of(profile: Path, host: str) -> dict[str, bytes]:
    return {a.path: a.content for a in artifacts_for(plan_profile(profile))}


def test_every_bundled_engine_and_shape_is_covered() -> None:
    kinds = {(t.engine, t.shape.kind if t.shape else None, t.qdisc, t.police is not None) for _, _, t in ALL}
    assert {k[1] for k in kinds} >= {"tbf", "htb", None}
    assert {k[0] for k in kinds} == {"service", "networkd"}
    assert any(k[3] for k in kinds), "some profile polices ingress"


def test_police_alone_writes_only_the_ingress_filter() -> None:
    """Issue 12: policing with no qdisc or shaper validated, then `build` failed (KeyError: 'None')."""
    files = files_of(POLICE_ONLY, "hv1")
    batch = files[layout.rootfs_file("hv1", layout.tc_batch("eno1"))].decode()
    assert [line for line in batch.splitlines() if not line.startswith("#")] == [
        "qdisc replace dev eno1 ingress",
        "filter replace dev eno1 parent ffff: protocol all pref 1 handle 1 matchall "
        "action police rate 5000000000bit burst 4194304b mtu 65536b conform-exceed drop",
    ]
    network = files[layout.rootfs_file("hv1", layout.networkd_file("eno1", "network"))].decode()
    assert "Parent=" not in network  # the service engine polices; networkd sets no qdisc
    # The expected state has no root qdisc to compare, so the checks test none.
    state = json.loads(files[layout.expected_state("host", "hv1")])
    assert state["qdiscs"] == [
        {
            "device": "eno1",
            "engine": "service",
            "police": {
                "rate": 5_000_000_000,
                "burst": 4_194_304,
                "mtu": 65_536,
                "needs": ["sch_ingress", "cls_matchall", "act_police"],
            },
            "unit": "kvmnet-tc@eno1.service",
        }
    ]
    checks = files[layout.suite("host", "hv1")].decode()
    assert "def test_ingress_policing(" in checks
    assert "def test_root_qdisc(" not in checks and "def test_shaping_rate(" not in checks


# --- the unit --------------------------------------------------------------------------


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    units = [
        (a.path, a.content)
        for p in PROFILES
        for a in artifacts_for(plan_profile(p))
        if a.path.endswith(layout.TC_UNIT)
    ]
    assert units
    for profile, host, tc in ALL:
        if tc.engine != "service":
            continue
        unit = files_of(profile, host.name)[layout.rootfs_file(host.name, layout.TC_UNIT)]
        # An instance file is what systemd-analyze can check (a template alone is skipped).
        instance = tmp_path / tc.unit
        instance.write_bytes(unit)
        result = subprocess.run(
            ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0 and not result.stdout and not result.stderr, (
            tc.unit,
            result.stdout + result.stderr,
        )
        instance.unlink()
    # The check can fail: a unit with an unknown key is reported.
    bogus = tmp_path / "kvmnet-tc@bogus.service"
    bogus.write_bytes(units[0][1].replace(b"[Service]", b"[Service]\nNoSuchKey=1"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(bogus)], capture_output=True, text=True, check=False
    )
    assert "Unknown key" in result.stdout + result.stderr


def test_unit_instances_are_escaped_like_systemd_escape() -> None:
    from generator.plan.tuning import systemd_escape

    for name in ("eno1", "br-guests", "bond0.10", "a_b", "x-y-z"):
        expected = subprocess.run(
            ["systemd-escape", "--", name], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert systemd_escape(name) == expected


# --- tc itself ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    bench = Lab(tmp_path_factory.mktemp("tc"))
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture(scope="module")
def kernel_lacks(lab: Lab) -> Mapping[str, str]:
    """What this kernel cannot do, probed once: qdisc kind or "police" -> tc's error."""
    ns = lab.namespace("tc-probe")
    lab.veth(ns, "p0", peer_ns=ns, peer_name="p1")
    missing = {}
    for number, kind in enumerate(
        ("tbf rate 1mbit burst 10kb latency 50ms", "htb", "fq_codel", "fq", "cake", "pfifo", "bfifo"), 1
    ):
        # A handle of its own per kind: the kernel refuses to turn one qdisc into another kind.
        result = run(
            "tc",
            "-n",
            ns,
            "qdisc",
            "replace",
            "dev",
            "p0",
            "root",
            "handle",
            f"{number}:",
            *kind.split(),
            check=False,
        )
        if result.returncode != 0:
            missing[kind.split()[0]] = result.stderr.strip()
    run("tc", "-n", ns, "qdisc", "add", "dev", "p0", "ingress")
    result = run(
        *("tc", "-n", ns, "filter", "add", "dev", "p0", "parent", "ffff:", "protocol", "all", "pref", "1"),
        *("matchall", "action", "police", "rate", "1mbit", "burst", "100kb", "conform-exceed", "drop"),
        check=False,
    )
    if result.returncode != 0:
        missing["police"] = result.stderr.strip()
    return missing


def psched_ticks_per_us() -> float:
    t2us, us2t, *_ = (int(v, 16) for v in Path("/proc/net/psched").read_text().split())
    return t2us / us2t


def qdiscs(ns: str, dev: str) -> list[dict[str, Any]]:
    out = run("tc", "-n", ns, "-j", "qdisc", "show", "dev", dev).stdout
    data: list[dict[str, Any]] = json.loads(out)
    return data


def htb_class(ns: str, dev: str, classid: int) -> dict[str, Any]:
    with NetNS(ns) as netns:
        index = netns.link_lookup(ifname=dev)[0]
        for cls in netns.get_classes(index):
            if cls["handle"] == classid:
                parms: dict[str, Any] = cls.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_PARMS")
                return parms
    raise AssertionError(f"no class {classid:x} on {dev}")


def close_to_burst(read_back: int, burst: int, rate_bits: int) -> bool:
    """Within one microsecond of traffic: how precisely the kernel keeps a burst."""
    return abs(read_back - burst) <= max(1, rate_bits // 8 // 1_000_000)


def needs(tc: TcPlan, lacks: Mapping[str, str]) -> list[str]:
    wanted = [k for k in (tc.shape.kind if tc.shape else None, tc.qdisc) if k]
    if tc.police is not None:
        wanted.append("police")
    return [f"{k}: {lacks[k]}" for k in wanted if k in lacks]


@pytest.mark.parametrize(("profile", "host", "device"), SERVICE)
def test_batch_applies_and_reads_back_exactly(
    profile: Path, host: str, device: str, lab: Lab, kernel_lacks: Mapping[str, str], tmp_path: Path
) -> None:
    tc = tc_of(profile, host, device)
    missing = needs(tc, kernel_lacks)
    if missing:
        kernel_gap(
            f"sandbox kernel cannot: {'; '.join(missing)}; not checked on this kernel (the VM tier applies "
            "fq, fq_codel, htb, tbf and policing on Debian's: tests/test_vm.py)"
        )
    batch = tmp_path / f"{tc.device}.tc"
    batch.write_bytes(files_of(profile, host)[layout.rootfs_file(host, layout.tc_batch(tc.device))])
    ns = lab.namespace(f"tc-{device}")
    lab.veth(ns, tc.device, peer_ns=ns, peer_name="peer0", mtu=tc.mtu)
    for attempt in (1, 2):  # idempotent: the unit may run again at any time
        result = run("tc", "-n", ns, "-batch", str(batch), check=False)
        assert result.returncode == 0, f"run {attempt}: {result.stderr}"
    found = {q["handle"]: q for q in qdiscs(ns, tc.device)}
    if tc.root_handle is None:  # only policed: the veth keeps its root (noqueue, shown when up)
        assert {q["kind"] for q in found.values()} <= {"noqueue", "ingress"}, found
    else:
        assert_root_as_planned(ns, tc, next(q for q in found.values() if q.get("root")), tc.root_handle)
    if tc.leaf_handle is not None:
        assert_leaf_as_planned(tc, found[f"{tc.leaf_handle:x}:"])
    if tc.police is not None:
        assert "ffff:" in found and found["ffff:"]["kind"] == "ingress"
        assert police_rates(ns, tc.device) == [tc.police.rate]


def assert_leaf_as_planned(tc: TcPlan, leaf: Mapping[str, Any]) -> None:
    """The leaf is the planned kind, under the shaper's class (not the shaper's own FIFO),
    and a FIFO has the limit kvmnet wrote (the kernel would use 0 from networkd)."""
    assert (leaf["kind"], leaf["parent"]) == (tc.qdisc, tc.shaper_class)
    if tc.fifo_limit is not None:
        assert leaf["options"]["limit"] == tc.fifo_limit
    if tc.shape is not None and tc.shape.kind == "tbf":
        assert tc.shaper_class == f"{tc.root_handle:x}:1"  # tbf's one class


# --- the unit's mq step: a plain qdisc on a multiqueue device -------------------------------

PER_QUEUE = [
    pytest.param(p, h.name, t.device_id, id=f"{p.stem}/{h.name}/{t.device_id}")
    for p, h, t in ALL
    if t.per_queue
]


@pytest.mark.parametrize(("profile", "host", "device"), PER_QUEUE)
def test_unit_keeps_mq_and_puts_the_qdisc_under_each_tx_queue(
    profile: Path, host: str, device: str, lab: Lab, kernel_lacks: Mapping[str, str], tmp_path: Path
) -> None:
    """The generated unit's own command lines (run as systemd would: generator/lab/tcunit.py)
    on a veth with 4 TX queues, then on one with 1: mq stays the root with the qdisc under
    each queue; a single queue gets the qdisc at the root. Twice each: idempotent. Then
    traffic: 64 UDP flows leave by several queues, each through its own qdisc (seen here:
    19, 14, 12 and 20 packets on the four)."""
    tc = tc_of(profile, host, device)
    missing = needs(tc, {k: v for k, v in kernel_lacks.items() if k != "police"})
    if missing:
        kernel_gap(f"sandbox kernel cannot: {'; '.join(missing)}; the VM tier applies it on Debian's kernel")
    files = files_of(profile, host)
    rootfs = tmp_path / "rootfs"
    for path, content in files.items():
        if path.startswith(layout.rootfs_file(host, "/")):
            target = rootfs / path.removeprefix(layout.rootfs_file(host, "/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    unit = (rootfs / layout.TC_UNIT.lstrip("/")).read_text()
    for queues in (4, 1):
        ns, far = lab.namespace(f"mq{queues}-{device}"), lab.namespace(f"mq{queues}-{device}-far")
        run(
            *("ip", "-n", ns, "link", "add", tc.device, "numtxqueues", str(queues), "numrxqueues", "1"),
            *("type", "veth", "peer", "name", "peer0", "netns", far),
        )
        for attempt in (1, 2):
            started = tcunit.start(ns, host, unit, tc.device, tc.device, rootfs)
            # Policing needs act_police: the unit then fails after the qdiscs, on the filter.
            assert started.ok or ("police" in kernel_lacks and tc.police is not None), (attempt, started)
        found = qdiscs(ns, tc.device)
        root = next(q for q in found if q.get("root"))
        if queues == 1:
            assert (root["kind"], root["handle"]) == (tc.qdisc, tc.root_id)
            continue
        assert (root["kind"], root["handle"]) == ("mq", tc.mq_id)
        children = {q["parent"]: q["kind"] for q in found if q.get("parent", "").startswith(f"{tc.mq_id}")}
        assert children == {f"{tc.mq_id}{n}": tc.qdisc for n in range(1, queues + 1)}
        sent = _send_udp_flows(ns, far, tc.device, flows=64)
        counted = {q["parent"]: q["packets"] for q in _stats(ns, tc.device) if q.get("parent") in children}
        # Every datagram (and the ARP before them) went through one of the per-queue qdiscs,
        # and the flows spread over queues: what the one root qdisc of before could not do.
        assert sum(counted.values()) >= sent, counted
        assert sum(1 for n in counted.values() if n) >= 2, counted


def _send_udp_flows(ns: str, far: str, device: str, flows: int) -> int:
    """`flows` datagrams from as many sockets (each its own flow hash) out of `device`."""
    run("ip", "-n", ns, "address", "add", "198.51.100.1/24", "dev", device)
    run("ip", "-n", far, "address", "add", "198.51.100.2/24", "dev", "peer0")
    run("ip", "-n", far, "link", "set", "peer0", "up")
    run("ip", "-n", ns, "link", "set", device, "up")
    script = (
        "import socket\n"
        f"for _ in range({flows}):\n"
        "    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
        "        s.sendto(b'x', ('198.51.100.2', 9))\n"
    )
    run("ip", "netns", "exec", ns, sys.executable, "-c", script)
    return flows


def _stats(ns: str, device: str) -> list[dict[str, Any]]:
    out = run("tc", "-n", ns, "-s", "-j", "qdisc", "show", "dev", device).stdout
    data: list[dict[str, Any]] = json.loads(out)
    return data


def assert_root_as_planned(ns: str, tc: TcPlan, root: Mapping[str, Any], handle: int) -> None:
    assert root["handle"] == f"{handle:x}:"
    if tc.shape is not None and tc.shape.kind == "tbf":
        assert root["kind"] == "tbf"
        assert root["options"]["rate"] == tc.shape.rate // 8
        assert tc.shape.burst is not None and close_to_burst(
            root["options"]["burst"], tc.shape.burst, tc.shape.rate
        )
        assert root["options"]["lat"] == tc.shape.latency_us
    elif tc.shape is not None:
        assert root["kind"] == "htb"
        assert root["options"]["default"] == f"{HTB_CLASS:#x}"
        parms = htb_class(ns, tc.device, (handle << 16) | HTB_CLASS)
        assert parms["rate"] == tc.shape.rate // 8
        assert parms["ceil"] == (tc.shape.ceil or tc.shape.rate) // 8
        assert parms["quantum"] == tc.shape.quantum
        if tc.shape.burst is not None:
            burst = parms["rate"] * parms["buffer"] / psched_ticks_per_us() / 1_000_000
            assert close_to_burst(round(burst), tc.shape.burst, tc.shape.rate)
    else:
        assert root["kind"] == tc.qdisc


def police_rates(ns: str, dev: str) -> list[int]:
    """Rates (bit/s) of the police actions on the ingress, from tc's text: iproute2 6.1's
    `tc -j filter show` leaves a police action's rate out (the generated checks read the
    text too: police_rates in generator/checks/kvmnet_checks.py)."""
    text = run("tc", "-n", ns, "filter", "show", "dev", dev, "ingress").stdout
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    found = re.findall(r"\bpolice 0x[0-9a-f]+ rate ([0-9.]+)([KMGT]?)bit\b", text)
    return [round(float(number) * scale[unit]) for number, unit in found]


# --- the networkd engine -------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "host", "device"), NETWORKD)
def test_networkd_engine_applies_qdiscs(
    profile: Path, host: str, device: str, lab: Lab, kernel_lacks: Mapping[str, str]
) -> None:
    tc = tc_of(profile, host, device)
    missing = needs(tc, kernel_lacks)
    if missing:
        kernel_gap(
            f"sandbox kernel cannot: {'; '.join(missing)}; not checked on this kernel (the VM tier applies "
            "fq, fq_codel, htb, tbf and policing on Debian's: tests/test_vm.py)"
        )
    plan = host_of(profile, host)
    files = {
        path.rsplit("/", 1)[1]: content
        for path, content in files_of(profile, host).items()
        if path.startswith(f"{layout.rootfs_file(host, layout.NETWORKD_DIR)}/")
    }
    ns = lab.namespace(f"nd-tc-{device}")
    wire = lab.namespace(f"nd-tc-{device}-wire")
    for number, nic in enumerate(i for i in plan.interfaces if i.kind is Kind.ETHERNET):
        lab.veth(ns, kernel_name(nic), peer_ns=wire, peer_name=f"w{number}", mac=nic.match.mac)
    lab.networkd(ns, files, seed=f"tc/{host}")

    def shaped() -> bool:
        result = run("tc", "-n", ns, "-j", "qdisc", "show", "dev", tc.device, check=False)
        return result.returncode == 0 and any(
            q.get("root") and q["kind"] != "noqueue" for q in json.loads(result.stdout or "[]")
        )

    assert wait_for(shaped, 15), f"networkd did not set a root qdisc on {tc.device}"
    root = next(q for q in qdiscs(ns, tc.device) if q.get("root"))
    assert root["handle"] == f"{tc.root_handle:x}:"
    if tc.shape is not None and tc.shape.kind == "tbf":
        assert root["kind"] == "tbf"
        assert root["options"]["rate"] == tc.shape.rate // 8
        assert tc.shape.burst is not None and close_to_burst(
            root["options"]["burst"], tc.shape.burst, tc.shape.rate
        )
        assert root["options"]["lat"] == tc.shape.latency_us
    else:
        assert root["kind"] == (tc.shape.kind if tc.shape else tc.qdisc)
    if tc.leaf_handle is not None:
        leaf = next(q for q in qdiscs(ns, tc.device) if q["handle"] == f"{tc.leaf_handle:x}:")
        assert_leaf_as_planned(tc, leaf)
