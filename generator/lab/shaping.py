"""Shaped interfaces, measured: iperf3 through the device while its root qdisc counts.

Like is compared with like: the rate a tbf or htb enforces is in bytes it dequeues
(Ethernet header included), so the measure is the root qdisc's own byte counter over a
window in the middle of a TCP run that the qdisc throttles (start-up and the initial
burst excluded). iperf3's TCP goodput is shown beside it, with what the rate allows
after headers (a 1500-byte frame of 1514 bytes on the qdisc carries 1448 bytes of
payload, so 200 Mbit/s of shaping gives ~191 Mbit/s of goodput).

Traffic must leave through the shaped device, so the lab adds, for the test only:
- a NIC with an address: the host sends, from that address, to a receiver cabled to the
  same wire of the lab switch (an address of the subnet no one in the plan uses);
- a bridge port: a sender plugged into the bridge, a receiver on the port's wire
  (RFC 2544 benchmarking addresses, 198.18.0.0/15): bridged traffic, as a guest's.
A tbf must send at its rate; an htb at its ceil (the profile's `ceil`, or its rate
without one), since nothing else shares the device in the lab.

Latency under load, the jitter users feel: while TCP saturates the shaper, a ping every
10 ms takes the same path, and its RTT percentiles (p50, p99) are reported beside the
rate. They show what the shaper's leaf does with the standing queue TCP builds: a FIFO
leaf holds every packet behind it, fq_codel (kvmnet's default leaf) serves the sparse
ping flow first and keeps the bulk flow's queue at its 5 ms target.
"""

from __future__ import annotations

import ipaddress
import json
import re
import statistics
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from generator.lab.layout import Layout, free_address, kernel_name
from generator.lab.names import Names
from generator.lab.qdiscs import root
from generator.lab.results import Result, failed, passed, skipped
from generator.live.commands import run, wait_for
from generator.live.processes import named_in, spawn, stop
from generator.plan.types import HostPlan, Interface, Kind, Plan, TcPlan

TOLERANCE = 0.05
RUN_S = 3.0
WINDOW_S = (0.8, 2.8)  # counters are read at these times into the run
PORT = 5201
#: TCP flows at once: one flow backs off on each drop of an AQM leaf and, under software
#: emulation, leaves the shaper idle between; several keep it saturated, as a host's
#: guests do.
STREAMS = 4
BENCH_NET = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544
ETHERNET_HEADER = 14
TCP_IPV4_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps 12
PING_INTERVAL_S = 0.01  # root may ping this often; ~200 samples in the window
_RTT = re.compile(r"time=([0-9.]+) ms")


@dataclass(frozen=True)
class Latency:
    """RTTs of the pings sent through the saturated shaper, in ms."""

    sent: int
    rtts: tuple[float, ...]

    @property
    def p50(self) -> float:
        return statistics.median(self.rtts)

    @property
    def p99(self) -> float:
        # Linear interpolation between the closest ranks (numpy's default): never beyond
        # the largest RTT, as the default "exclusive" method can be with few samples.
        return (
            statistics.quantiles(self.rtts, n=100, method="inclusive")[98]
            if len(self.rtts) > 1
            else self.rtts[0]
        )


def latency_of(ping_output: str, sent: int) -> Latency | None:
    """The RTTs of `ping`'s per-reply lines ("... time=1.23 ms"); None without a reply."""
    rtts = tuple(float(m) for m in _RTT.findall(ping_output))
    return Latency(sent, rtts) if rtts else None


@dataclass(frozen=True)
class Route:
    """Where test traffic starts and ends: it leaves through the shaped device."""

    sender_ns: str
    source: str
    receiver_ns: str
    destination: str
    mtu: int


class Probes:
    """Namespaces plugged in for test traffic, all removed by close()."""

    def __init__(self, names: Names, missing: Mapping[str, str], first: int = 0) -> None:
        self.names = names
        self.missing = missing
        self.made: list[str] = []
        self.ports: list[tuple[str, str]] = []  # (namespace, name) of the plugged-in ends
        # Never reused, not even by another check's probes (`first`): a deleted
        # namespace's links go away asynchronously.
        self.count = first

    def _new(self) -> tuple[str, int]:
        number = self.count
        self.count += 1
        ns = self.names.traffic(number)
        self.made.append(ns)
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        return ns, number

    def plug(
        self, ns: str, bridge: str, mtu: int, address: str, pvid: int | None = None, tag: int | None = None
    ) -> str:
        """A namespace with one NIC `t0` at `address`, its peer a port of `bridge` in `ns`;
        with `tag`, the address is on a VLAN device `t0.<tag>` (a receiver of tagged frames)."""
        probe, number = self._new()
        port = f"kvl-t{number}"
        run(
            *("ip", "-n", ns, "link", "add", "name", port, "mtu", str(mtu), "type", "veth"),
            *("peer", "name", "t0", "mtu", str(mtu), "netns", probe),
        )
        self.ports.append((ns, port))
        run("ip", "-n", ns, "link", "set", "dev", port, "master", bridge, "up")
        if pvid is not None:
            run("bridge", "-n", ns, "vlan", "add", "dev", port, "vid", str(pvid), "pvid", "untagged")
        nic = "t0"
        if tag is not None:
            nic = f"t0.{tag}"
            run("ip", "-n", probe, "link", "add", "link", "t0", "name", nic, "type", "vlan", "id", str(tag))
        run("ip", "-n", probe, "link", "set", "dev", "t0", "up")
        run("ip", "-n", probe, "address", "add", address, "dev", nic)
        run("ip", "-n", probe, "link", "set", "dev", nic, "up")
        return probe

    def close(self) -> None:
        # The ports first, at once: the kernel removes a deleted namespace's links later.
        for ns, port in self.ports:
            run("ip", "-n", ns, "link", "delete", "dev", port, check=False)
        for ns in self.made:
            run("ip", "netns", "delete", ns, check=False)
        self.ports.clear()
        self.made.clear()


def _route(
    probes: Probes, layout: Layout, host: HostPlan, iface: Interface, number: int, used: set[str]
) -> Route | str:
    """The traffic path through `iface`, or why the lab cannot build one."""
    host_ns = layout.names.host(host.name)
    switch = layout.names.switch
    ipv4 = [ipaddress.IPv4Interface(a) for a in iface.addresses if ipaddress.ip_interface(a).version == 4]
    if iface.kind is Kind.ETHERNET and iface.master is None:
        if not ipv4:
            return f"{kernel_name(iface)} has no IPv4 address and no bridge: nothing sends through it"
        free = free_address(ipv4[0].network, used)
        if free is None:
            return f"no free address in {ipv4[0].network} for a receiver"
        receiver = probes.plug(switch, kernel_name(iface), iface.mtu, f"{free}/{ipv4[0].network.prefixlen}")
        return Route(host_ns, str(ipv4[0].ip), receiver, free, iface.mtu)
    if iface.kind is Kind.ETHERNET and iface.master_kind is Kind.BRIDGE and iface.master:
        bridge = host.get(iface.master)
        pvid = tag = None
        if (
            bridge.bridge is not None
            and bridge.bridge.vlan_filtering
            and "vlan-filtering" not in probes.missing
        ):
            vlans = iface.port_vlans
            untagged = {v for lo, hi in (vlans.untagged if vlans else ()) for v in range(lo, hi + 1)}
            carried = sorted({v for lo, hi in (vlans.vlans if vlans else ()) for v in range(lo, hi + 1)})
            pvid = next((v for v in sorted(untagged)), None)
            if pvid is None and carried:
                # Only tagged VLANs leave by the port: the sender joins the first one
                # untagged, and the receiver on the wire takes its frames on a VLAN device.
                if "vlan" in probes.missing:
                    return f"{kernel_name(iface)} carries only tagged VLANs: {probes.missing['vlan']}"
                pvid = tag = carried[0]
            elif pvid is None:
                return f"{kernel_name(iface)} carries no VLAN: nothing leaves by it"
        net = ipaddress.IPv4Network(list(BENCH_NET.subnets(new_prefix=24))[number])
        a, b = str(net[1]), str(net[2])
        sender = probes.plug(host_ns, bridge.netdev_name, iface.mtu, f"{a}/24", pvid)
        receiver = probes.plug(switch, kernel_name(iface), iface.mtu, f"{b}/24", tag=tag)
        return Route(sender, a, receiver, b, iface.mtu)
    # (A bridge has no tc: the plan refuses it, since bridged frames queue on the port.)
    return f"no lab traffic path through a {iface.kind.value} device (NICs and bridge ports are measured)"


@dataclass(frozen=True)
class Sample:
    at: float
    sent: int
    overlimits: int


def _sample(ns: str, device: str) -> Sample:
    # The counters were read somewhere between the two clock readings: under software
    # emulation (the lab inside the VM tier) one `tc` run takes tens of milliseconds.
    before = time.monotonic()
    qdisc = root(ns, device) or {}
    at = (before + time.monotonic()) / 2
    return Sample(at, int(qdisc.get("bytes", 0)), int(qdisc.get("overlimits", 0)))


def _measure(
    names: Names, host_ns: str, device: str, route: Route
) -> tuple[Sample, Sample, float | None, str, Latency | None]:
    """Counters at both ends of the window, iperf3's goodput (bit/s), iperf3's complaint,
    and the RTTs of pings sent through the shaper during the window."""
    server = spawn(
        route.receiver_ns,
        names.process("iperf3", route.receiver_ns.removeprefix(names.prefix)),
        ["iperf3", "--server", "--one-off", "--bind", route.destination, "--port", str(PORT)],
    )
    # A receiver of an earlier run had this address with another MAC: forget it.
    run("ip", "-n", route.sender_ns, "neigh", "flush", "to", route.destination, check=False)
    try:
        listening = wait_for(
            lambda: bool(
                run(
                    "ip", "netns", "exec", route.receiver_ns, "ss", "-Hltn", f"sport = :{PORT}"
                ).stdout.strip()
            ),
            5,
        )
        if not listening:
            now = _sample(host_ns, device)
            return now, now, None, "iperf3 server did not start", None
        client_argv = [
            *("iperf3", "--client", route.destination, "--bind", route.source, "--port", str(PORT)),
            *("--time", f"{RUN_S:g}", "--parallel", str(STREAMS), "--json"),
        ]
        started = time.monotonic()
        client = subprocess.Popen(
            named_in(route.sender_ns, names.process("iperf3", "client"), client_argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(max(0.0, started + WINDOW_S[0] - time.monotonic()))
        first = _sample(host_ns, device)
        count = int((WINDOW_S[1] - WINDOW_S[0]) / PING_INTERVAL_S)
        ping = subprocess.Popen(
            [
                *("ip", "netns", "exec", route.sender_ns, "ping", "-n", "-I", route.source),
                *("-i", f"{PING_INTERVAL_S:g}", "-c", str(count), "-W", "2", route.destination),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(max(0.0, started + WINDOW_S[1] - time.monotonic()))
        last = _sample(host_ns, device)
        try:
            pinged, _ = ping.communicate(timeout=RUN_S + 5)
        except subprocess.TimeoutExpired:
            ping.kill()
            pinged, _ = ping.communicate()
        latency = latency_of(pinged, count)
        try:
            out, err = client.communicate(timeout=RUN_S + 10)
        except subprocess.TimeoutExpired:
            client.kill()
            out, err = client.communicate()
            err = f"no result after {RUN_S + 10:g} s; {err}"
    finally:
        stop([server.pid], timeout=2)
        server.wait(timeout=5)
    try:
        goodput = float(json.loads(out)["end"]["sum_received"]["bits_per_second"])
        problem = ""
    except (ValueError, KeyError, TypeError):
        goodput, problem = None, f"iperf3: {(err or out).strip()[:200]}"
    return first, last, goodput, problem, latency


def _configured(tc: TcPlan) -> int:
    assert tc.shape is not None
    return (tc.shape.ceil or tc.shape.rate) if tc.shape.kind == "htb" else tc.shape.rate


def used_addresses(plan: Plan) -> set[str]:
    """Every address the plan gives a host or a guest: a probe must take none of them."""
    return {
        str(ipaddress.ip_interface(a).ip) for h in plan.hosts for i in h.interfaces for a in i.addresses
    } | {str(ipaddress.ip_interface(a).ip) for g in plan.guests for n in g.nics for a in n.addresses}


def check(
    plan: Plan, layout: Layout, missing: Mapping[str, str], blocked: Mapping[tuple[str, str], str]
) -> list[Result]:
    """Measure every shaped device; `blocked`: (host, device) -> why it cannot pass traffic."""
    used = used_addresses(plan)
    results = []
    number = 0
    probes = Probes(layout.names, missing)
    for host in plan.hosts:
        for tc in host.tc:
            if tc.shape is None:
                continue
            subject = f"{host.name}/{tc.device}"
            kind = f"{tc.shape.kind} {'ceil' if tc.shape.kind == 'htb' else 'rate'}"
            if why := blocked.get((host.name, tc.device)):
                results.append(skipped("shaping", subject, f"not measured: {why}"))
                continue
            try:
                route = _route(probes, layout, host, host.get(tc.device_id), number, used)
                number += 1
                if isinstance(route, str):
                    results.append(skipped("shaping", subject, f"not measured: {route}"))
                    continue
                first, last, goodput, problem, latency = _measure(
                    layout.names, layout.names.host(host.name), tc.device, route
                )
            finally:
                probes.close()
            configured = _configured(tc)
            seconds = last.at - first.at
            measured = (last.sent - first.sent) * 8 / seconds if seconds > 0 else 0.0
            deviation = measured / configured - 1
            expected_goodput = configured * (route.mtu - TCP_IPV4_HEADERS) / (route.mtu + ETHERNET_HEADER)
            values: dict[str, float | int | str] = {
                "configured_bps": configured,
                "measured_bps": round(measured),
                "deviation": round(deviation, 4),
                "window_s": round(seconds, 3),
                "goodput_expected_bps": round(expected_goodput),
                "mtu": route.mtu,
            }
            if goodput is not None:
                values["goodput_bps"] = round(goodput)
            said = (
                f"{kind} {configured / 1e6:g} Mbit/s configured, the qdisc sent {measured / 1e6:.1f} Mbit/s "
                f"over {seconds:.1f} s ({deviation:+.1%}); TCP goodput "
                f"{'-' if goodput is None else f'{goodput / 1e6:.1f}'} Mbit/s, "
                f"{expected_goodput / 1e6:.1f} expected after headers"
            )
            if latency is not None:
                values |= {
                    "rtt_p50_ms": round(latency.p50, 3),
                    "rtt_p99_ms": round(latency.p99, 3),
                    "pings_sent": latency.sent,
                    "pings_answered": len(latency.rtts),
                }
                said += f"; ping under load p50 {latency.p50:.1f} ms, p99 {latency.p99:.1f} ms"
            else:
                said += "; no ping through it was answered under load"
            borrows = tc.shape.kind == "htb" and tc.shape.ceil and tc.shape.ceil > tc.shape.rate
            if borrows and abs(measured / tc.shape.rate - 1) <= TOLERANCE:
                said += (
                    f" (it sends at its rate, {tc.shape.rate / 1e6:g} Mbit/s: the one htb class is a root "
                    "class, which has no parent to borrow up to its ceil from)"
                )
            if abs(deviation) <= TOLERANCE:
                results.append(passed("shaping", subject, said, **values))
            elif measured < configured and last.overlimits == first.overlimits:
                results.append(
                    skipped(
                        "shaping",
                        subject,
                        f"the lab could not offer more than {measured / 1e6:.1f} Mbit/s, and the qdisc never "
                        f"throttled: {kind} {configured / 1e6:g} Mbit/s cannot be measured here"
                        + (f" ({problem})" if problem else ""),
                        **values,
                    )
                )
            else:
                results.append(failed("shaping", subject, f"{said}; allowed ±{TOLERANCE:.0%}", **values))
    return results
