"""The lab's latency-under-load numbers, read from ping's output (iputils 20221126, as
Debian 12 prints it), with percentiles worked out by hand."""

from __future__ import annotations

import pytest

from generator.lab.shaping import latency_of

PING = """\
PING 198.18.0.2 (198.18.0.2) from 198.18.0.1 : 56(84) bytes of data.
64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=9.00 ms
64 bytes from 198.18.0.2: icmp_seq=2 ttl=64 time=1.00 ms
64 bytes from 198.18.0.2: icmp_seq=4 ttl=64 time=2.00 ms

--- 198.18.0.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 31ms
rtt min/avg/max/mdev = 1.000/4.000/9.000/3.559 ms
"""


def test_percentiles_of_the_replies() -> None:
    latency = latency_of(PING, 4)
    assert latency is not None
    assert latency.rtts == (9.0, 1.0, 2.0)  # the summary's min/avg/max line is not a reply
    assert latency.sent == 4
    assert latency.p50 == 2.0
    # sorted 1, 2, 9: rank 0.99 * (3 - 1) = 1.98, so 2 + 0.98 * (9 - 2) = 8.86
    assert latency.p99 == pytest.approx(8.86)


def test_no_reply_is_no_latency() -> None:
    lost = "PING 198.18.0.2 (198.18.0.2) 56(84) bytes of data.\n\n--- 198.18.0.2 ping statistics ---\n"
    assert latency_of(lost + "3 packets transmitted, 0 received, 100% packet loss\n", 3) is None


def test_one_reply_is_its_own_p99() -> None:
    latency = latency_of("64 bytes from 192.0.2.2: icmp_seq=1 ttl=64 time=0.045 ms\n", 1)
    assert latency is not None and latency.p50 == latency.p99 == 0.045
