"""Reachability, isolation and MTU between the lab's endpoints, with real pings.

For each pair segments.pairs() yields:
- `reach`: a ping gets its replies;
- `mtu` (pairs that reach): a ping with Don't Fragment of exactly the pair's planned MTU
  passes, and one byte more does not (refused by the sender's own MTU, or lost on the
  way); and each end's interface has its planned MTU. An end whose MTU was raised above
  the path's is shown sending a packet of its own MTU into a black hole;
- `isolated`: a ping gets no reply.
Pairs are independent, so they are pinged in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from generator.lab.results import Result, failed, passed, skipped
from generator.lab.segments import Endpoint, Pair
from generator.live.commands import ping
from generator.live.snapshot import Snapshot

#: Pings spend their time waiting (an isolation check waits its whole second for a reply
#: that must not come), not computing: 32 at once took the 8x4 benchmark lab's matrix
#: from 45 s to 11.5 s on two cores.
WORKERS = 32


def _overhead(e: Endpoint) -> int:
    """IP and ICMP echo headers: ping's payload is the packet size minus these."""
    return 28 if e.address.version == 4 else 48


def _to(e: Endpoint) -> str:
    return f"{e.label} ({e.ip})"


def _passes(src: Endpoint, dst: Endpoint, size: int, count: int = 2) -> bool:
    return ping(src.ns, dst.ip, size - _overhead(src), count=count, deadline=3).returncode == 0


def _reach(pair: Pair) -> Result:
    subject = pair.label
    if pair.expect == "isolated":
        if pair.blocked:
            return skipped("isolation", subject, f"not testable here: {pair.blocked}")
        if ping(pair.a.ns, pair.b.ip, 56, count=1, deadline=1).returncode == 0:
            return failed(
                "isolation",
                subject,
                f"{_to(pair.a)} reaches {_to(pair.b)}, though the plan puts them on different segments",
            )
        return passed("isolation", subject, "no reply: different segments, as planned")
    if pair.blocked:
        return skipped("reach", subject, f"not testable here: {pair.blocked}")
    if ping(pair.a.ns, pair.b.ip, 56, count=2, deadline=3).returncode != 0:
        return failed(
            "reach", subject, f"{_to(pair.a)} gets no reply from {_to(pair.b)} (same segment and subnet)"
        )
    return passed("reach", subject, "replies")


def _mtu(pair: Pair, live: Mapping[tuple[str, str], int]) -> Result:
    a, b, mtu = pair.a, pair.b, pair.mtu
    problems = []
    if not _passes(a, b, mtu):
        problems.append(f"{mtu}-byte DF packets from {_to(a)} to {_to(b)} are lost (planned path MTU {mtu})")
    if _passes(a, b, mtu + 1, count=1):
        problems.append(
            f"{mtu + 1}-byte DF packets get through: the path is not limited to the planned {mtu}"
        )
    for end, other in ((a, b), (b, a)):
        actual = live.get((end.ns, end.interface))
        if actual is None:
            problems.append(f"{end.label} does not exist")
        elif actual != end.mtu:
            lost = (
                ""
                if actual < mtu or _passes(end, other, actual, count=1)
                else (f"; {actual}-byte DF packets to {other.label} are lost")
            )
            problems.append(f"{end.label} has MTU {actual}, planned {end.mtu}{lost}")
    if problems:
        return failed("mtu", pair.label, "; ".join(problems), planned=mtu)
    return passed("mtu", pair.label, f"{mtu}-byte DF packets pass, {mtu + 1} do not", planned=mtu)


def check(pairs: Iterable[Pair], snapshots: Mapping[str, Snapshot]) -> list[Result]:
    live = {(ns, name): link.mtu for ns, snap in snapshots.items() for name, link in snap.links.items()}
    todo = list(pairs)

    def one(pair: Pair) -> list[Result]:
        first = _reach(pair)
        if first.area == "reach" and first.outcome == "passed":
            return [first, _mtu(pair, live)]
        return [first]

    with ThreadPoolExecutor(WORKERS) as pool:
        return [r for results in pool.map(one, todo) for r in results]
