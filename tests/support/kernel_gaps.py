"""The sandbox kernel's known gaps: the only reason a test may skip in CI.

CI (CI=true) turns every other skip into a failure (tests/conftest.py): a missing tool
or package is an install step .ci/run lacks, and a test that needs root runs as root
there. What this kernel cannot do is found by trying it (generator/live/kernel.py and
the probes in the tests); a test skips for it through `kernel_gap`, and the VM tier,
whose Debian 6.1 kernel has all of these, covers what was skipped (docs/vm.md).
"""

from __future__ import annotations

from typing import NoReturn

import pytest

#: What the sandbox kernel lacks (the 6.x kernel this workplace's machines run), and
#: where the same thing is proven instead.
SANDBOX_GAPS: dict[str, str] = {
    "8021q": "no VLAN devices; VLANs on hv1 are checked by the VM tier's hypervisor",
    "bonding": "no bonds (networkd parses them, the kernel refuses to create one)",
    "ip_gre": "no gre/gretap tunnels; the VM tier's hypervisor runs GRE",
    "bridge VLAN filtering": "no VLAN-aware bridges ([BridgeVLAN], VLANFiltering=)",
    "act_police": "no ingress policing; the VM tier's tuned hypervisor polices",
    "cls_matchall": "no matchall classifier, which kvmnet's policers attach with",
    "sch_fq": "no fq qdisc; the VM tier applies it",
    "sch_fq_codel": "no fq_codel qdisc; the VM tier applies it",
    "sch_cake": "no cake qdisc",
    "sch_sfq": "no sfq qdisc",
    "sch_netem": "no netem (used by lab/test profiles only)",
    "tcp_bbr": "no bbr congestion control; the VM tier's tuned hypervisor sets it",
    "vhost_net": "no /dev/vhost-net: libvirt with type='qemu' skips vhost",
    "dummy": "no dummy devices",
}

#: Every kernel-gap skip reason starts with this; CI lets only these through.
PREFIX = "kernel gap: "


def kernel_gap(why: str) -> NoReturn:
    """Skip because this kernel cannot do what the test needs (allowed in CI)."""
    pytest.skip(PREFIX + why)


def is_kernel_gap(reason: str) -> bool:
    return reason.startswith((PREFIX, "Skipped: " + PREFIX))
