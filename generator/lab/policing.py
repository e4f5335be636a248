"""Policed interfaces, measured: UDP offered above the policer's rate, what passes counted.

A policer drops what exceeds its rate (no queue, so TCP would measure its own backing
off, not the policer): iperf3 sends UDP from a namespace on the NIC's wire at half as
much again as the configured rate, in datagrams that fill the NIC's MTU (a jumbo frame
must pass a 9000-MTU policer: the `mtu` kvmnet writes), and its server on the host
counts what arrived. The policer lets through its rate plus, once, its burst; what
arrived must be that, within the tolerance of the shaping check. A lab that could not
offer the rate says so (skipped), as the shaping check does.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Mapping

from generator.lab.layout import Layout, free_address, kernel_name
from generator.lab.results import Result, failed, passed, skipped
from generator.lab.shaping import PORT, RUN_S, TOLERANCE, Probes, used_addresses
from generator.live.commands import run, wait_for
from generator.live.processes import named_in, spawn, stop
from generator.plan.types import HostPlan, Kind, Plan, TcPlan

OFFERED = 1.5  # times the policed rate
IPV4_UDP_HEADERS = 28
#: Probe namespaces of this check are numbered from here (the shaping check's from 0).
FIRST_PROBE = 100


def _path(
    probes: Probes, layout: Layout, host: HostPlan, tc: TcPlan, used: set[str]
) -> tuple[str, str] | str:
    """(sender namespace, destination address) on the policed NIC's wire, or why not."""
    iface = host.get(tc.device_id)
    ipv4 = [ipaddress.IPv4Interface(a) for a in iface.addresses if ipaddress.ip_interface(a).version == 4]
    if iface.kind is not Kind.ETHERNET or not ipv4:
        return f"{tc.device} has no IPv4 address of its own to receive test traffic at"
    free = free_address(ipv4[0].network, used)
    if free is None:
        return f"no free address in {ipv4[0].network} for a sender"
    sender = probes.plug(
        layout.names.switch, kernel_name(iface), iface.mtu, f"{free}/{ipv4[0].network.prefixlen}"
    )
    return sender, str(ipv4[0].ip)


def _offer(
    layout: Layout, host_ns: str, sender: str, destination: str, rate: int, mtu: int
) -> dict[str, float]:
    """iperf3's UDP run: what was sent and what arrived (bytes, seconds), or its complaint."""
    names = layout.names
    server = spawn(
        host_ns,
        names.process("iperf3", f"police-{host_ns.removeprefix(names.prefix)}"),
        ["iperf3", "--server", "--one-off", "--bind", destination, "--port", str(PORT)],
    )
    try:
        # iperf3's control connection is TCP, for a UDP test too
        listening = wait_for(
            lambda: bool(
                run("ip", "netns", "exec", host_ns, "ss", "-Hltn", f"sport = :{PORT}").stdout.strip()
            ),
            5,
        )
        if not listening:
            raise RuntimeError("iperf3 server did not start")
        argv = [
            *("iperf3", "--client", destination, "--port", str(PORT), "--udp"),
            *("--bitrate", str(round(rate * OFFERED)), "--length", str(mtu - IPV4_UDP_HEADERS)),
            *("--time", f"{RUN_S:g}", "--json"),
        ]
        client = subprocess.run(
            named_in(sender, names.process("iperf3", "police-client"), argv),
            capture_output=True,
            text=True,
            timeout=RUN_S + 15,
            check=False,
        )
    finally:
        stop([server.pid], timeout=2)
        server.wait(timeout=5)
    try:
        end = json.loads(client.stdout)["end"]
        return {
            "sent_bytes": float(end["sum_sent"]["bytes"]),
            "sent_s": float(end["sum_sent"]["seconds"]),
            "received_bytes": float(end["sum_received"]["bytes"]),
            "received_s": float(end["sum_received"]["seconds"]),
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"iperf3: {(client.stderr or client.stdout).strip()[:200]}") from exc


def check(
    plan: Plan,
    layout: Layout,
    missing: Mapping[str, str],
    cannot_queue: Mapping[str, str],
    blocked: Mapping[tuple[str, str], str],
) -> list[Result]:
    """Measure every policed device. `missing`: device kinds this kernel lacks;
    `cannot_queue`: what tc cannot set up here ("police"); `blocked`: (host, device) ->
    why it cannot pass traffic."""
    used = used_addresses(plan)
    results = []
    probes = Probes(layout.names, missing, first=FIRST_PROBE)
    for host in plan.hosts:
        for tc in host.tc:
            if tc.police is None:
                continue
            subject = f"{host.name}/{tc.device}"
            if "police" in cannot_queue:
                results.append(skipped("policing", subject, f"not measured: {cannot_queue['police']}"))
                continue
            if why := blocked.get((host.name, tc.device)):
                results.append(skipped("policing", subject, f"not measured: {why}"))
                continue
            try:
                path = _path(probes, layout, host, tc, used)
                if isinstance(path, str):
                    results.append(skipped("policing", subject, f"not measured: {path}"))
                    continue
                sender, destination = path
                try:
                    got = _offer(
                        layout, layout.names.host(host.name), sender, destination, tc.police.rate, tc.mtu
                    )
                except RuntimeError as exc:
                    results.append(failed("policing", subject, str(exc)))
                    continue
            finally:
                probes.close()
            results.append(_judge(subject, tc, got))
    return results


def _judge(subject: str, tc: TcPlan, got: dict[str, float]) -> Result:
    assert tc.police is not None
    rate, burst = tc.police.rate, tc.police.burst
    offered = got["sent_bytes"] * 8 / got["sent_s"] if got["sent_s"] > 0 else 0.0
    arrived = got["received_bytes"] * 8 / got["received_s"] if got["received_s"] > 0 else 0.0
    # The bucket starts full: its burst passes once, on top of the rate, over the run.
    ceiling = rate * (1 + TOLERANCE) + burst * 8 / max(got["received_s"], 1e-9)
    values: dict[str, float | int | str] = {
        "configured_bps": rate,
        "burst_bytes": burst,
        "offered_bps": round(offered),
        "arrived_bps": round(arrived),
        "datagram_bytes": tc.mtu - IPV4_UDP_HEADERS,
    }
    said = (
        f"police rate {rate / 1e6:g} Mbit/s: UDP offered at {offered / 1e6:.1f} Mbit/s in "
        f"{tc.mtu}-byte packets, {arrived / 1e6:.1f} Mbit/s arrived"
    )
    if offered < rate:
        return skipped(
            "policing",
            subject,
            f"the lab could not offer more than {offered / 1e6:.1f} Mbit/s: police rate "
            f"{rate / 1e6:g} Mbit/s cannot be measured here",
            **values,
        )
    if rate * (1 - TOLERANCE) <= arrived <= ceiling:
        return passed("policing", subject, f"{said} (the rate, plus its burst once)", **values)
    return failed(
        "policing",
        subject,
        f"{said}; expected {rate * (1 - TOLERANCE) / 1e6:.1f} to {ceiling / 1e6:.1f} (rate ±{TOLERANCE:.0%}, "
        "plus the burst once)",
        **values,
    )
