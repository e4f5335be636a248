"""The sysctls a profile may set, and what values each takes.

A typo in a sysctl name is silently ignored at boot (systemd-sysctl logs one line
nobody reads), so kvmnet accepts only names it knows, suggesting the nearest one, and
checks the value's shape. The table covers what KVM hosts tune (networking, memory,
scheduling, limits) on Debian 12's kernel 6.1; it is deliberately not every sysctl
the kernel has. Per-interface keys (`net.ipv4.conf.<iface>.rp_filter`) accept `all`,
`default` or an interface name in place of `<iface>`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from generator.model.types import interface_name_problem


@dataclass(frozen=True)
class Kind:
    """How a value is written and checked."""

    describe: str
    check: Callable[[str], bool]


def _int(lo: int, hi: int) -> Kind:
    def check(text: str) -> bool:
        return bool(re.fullmatch(r"-?[0-9]+", text)) and lo <= int(text) <= hi

    return Kind(f"a whole number from {lo} to {hi}", check)


def _ints(count: int) -> Kind:
    def check(text: str) -> bool:
        parts = text.split()
        return len(parts) == count and all(p.isdigit() for p in parts)

    return Kind(f"{count} whole numbers separated by spaces", check)


def _one_of(*choices: str) -> Kind:
    return Kind("one of " + ", ".join(choices), lambda text: text in choices)


BOOL = _int(0, 1)
U32 = _int(0, 4_294_967_295)
I32 = _int(0, 2_147_483_647)
RP_FILTER = _int(0, 2)
CONGESTION = _one_of("reno", "cubic", "bbr", "htcp", "dctcp", "vegas", "westwood", "bic", "illinois")
QDISC = _one_of("pfifo_fast", "fq", "fq_codel", "cake", "sfq", "fq_pie")

_IFACE = "<iface>"

KNOWN: dict[str, Kind] = {
    # core networking
    "net.core.rmem_max": I32,
    "net.core.wmem_max": I32,
    "net.core.rmem_default": I32,
    "net.core.wmem_default": I32,
    "net.core.optmem_max": I32,
    "net.core.netdev_max_backlog": I32,
    "net.core.netdev_budget": I32,
    "net.core.netdev_budget_usecs": I32,
    "net.core.dev_weight": I32,
    "net.core.somaxconn": I32,
    "net.core.busy_poll": I32,
    "net.core.busy_read": I32,
    "net.core.default_qdisc": QDISC,
    "net.core.bpf_jit_enable": _int(0, 2),
    # IPv4
    "net.ipv4.ip_forward": BOOL,
    "net.ipv4.ip_nonlocal_bind": BOOL,
    "net.ipv4.ip_local_port_range": _ints(2),
    "net.ipv4.ip_no_pmtu_disc": _int(0, 3),
    "net.ipv4.fib_multipath_hash_policy": _int(0, 3),
    "net.ipv4.icmp_echo_ignore_broadcasts": BOOL,
    "net.ipv4.icmp_ratelimit": I32,
    "net.ipv4.tcp_congestion_control": CONGESTION,
    "net.ipv4.tcp_rmem": _ints(3),
    "net.ipv4.tcp_wmem": _ints(3),
    "net.ipv4.tcp_mem": _ints(3),
    "net.ipv4.udp_mem": _ints(3),
    "net.ipv4.udp_rmem_min": I32,
    "net.ipv4.udp_wmem_min": I32,
    "net.ipv4.tcp_mtu_probing": _int(0, 2),
    "net.ipv4.tcp_base_mss": I32,
    "net.ipv4.tcp_retries1": _int(0, 255),
    "net.ipv4.tcp_retries2": _int(0, 255),
    "net.ipv4.tcp_syn_retries": _int(1, 127),
    "net.ipv4.tcp_synack_retries": _int(0, 255),
    "net.ipv4.tcp_fastopen": _int(0, 0x7FF),
    "net.ipv4.tcp_tw_reuse": _int(0, 2),
    "net.ipv4.tcp_fin_timeout": I32,
    "net.ipv4.tcp_keepalive_time": I32,
    "net.ipv4.tcp_keepalive_intvl": I32,
    "net.ipv4.tcp_keepalive_probes": _int(0, 127),
    "net.ipv4.tcp_slow_start_after_idle": BOOL,
    "net.ipv4.tcp_window_scaling": BOOL,
    "net.ipv4.tcp_timestamps": _int(0, 2),
    "net.ipv4.tcp_sack": BOOL,
    "net.ipv4.tcp_ecn": _int(0, 2),
    "net.ipv4.tcp_no_metrics_save": BOOL,
    "net.ipv4.tcp_max_syn_backlog": I32,
    "net.ipv4.tcp_notsent_lowat": U32,
    "net.ipv4.tcp_adv_win_scale": _int(-31, 31),
    "net.ipv4.neigh.default.gc_thresh1": I32,
    "net.ipv4.neigh.default.gc_thresh2": I32,
    "net.ipv4.neigh.default.gc_thresh3": I32,
    f"net.ipv4.conf.{_IFACE}.forwarding": BOOL,
    f"net.ipv4.conf.{_IFACE}.rp_filter": RP_FILTER,
    f"net.ipv4.conf.{_IFACE}.arp_ignore": _int(0, 8),
    f"net.ipv4.conf.{_IFACE}.arp_announce": _int(0, 2),
    f"net.ipv4.conf.{_IFACE}.arp_filter": BOOL,
    f"net.ipv4.conf.{_IFACE}.proxy_arp": BOOL,
    f"net.ipv4.conf.{_IFACE}.accept_redirects": BOOL,
    f"net.ipv4.conf.{_IFACE}.send_redirects": BOOL,
    f"net.ipv4.conf.{_IFACE}.secure_redirects": BOOL,
    f"net.ipv4.conf.{_IFACE}.accept_source_route": BOOL,
    f"net.ipv4.conf.{_IFACE}.log_martians": BOOL,
    # IPv6
    "net.ipv6.neigh.default.gc_thresh1": I32,
    "net.ipv6.neigh.default.gc_thresh2": I32,
    "net.ipv6.neigh.default.gc_thresh3": I32,
    f"net.ipv6.conf.{_IFACE}.disable_ipv6": BOOL,
    f"net.ipv6.conf.{_IFACE}.forwarding": BOOL,
    f"net.ipv6.conf.{_IFACE}.accept_ra": _int(0, 2),
    f"net.ipv6.conf.{_IFACE}.autoconf": BOOL,
    f"net.ipv6.conf.{_IFACE}.accept_redirects": BOOL,
    f"net.ipv6.conf.{_IFACE}.use_tempaddr": _int(-1, 2),
    # bridged guest traffic through the host's firewall (br_netfilter)
    "net.bridge.bridge-nf-call-iptables": BOOL,
    "net.bridge.bridge-nf-call-ip6tables": BOOL,
    "net.bridge.bridge-nf-call-arptables": BOOL,
    "net.bridge.bridge-nf-filter-vlan-tagged": BOOL,
    # connection tracking
    "net.netfilter.nf_conntrack_max": I32,
    "net.netfilter.nf_conntrack_tcp_timeout_established": I32,
    # memory
    "vm.swappiness": _int(0, 200),
    "vm.dirty_ratio": _int(0, 100),
    "vm.dirty_background_ratio": _int(0, 100),
    "vm.dirty_bytes": U32,
    "vm.dirty_background_bytes": U32,
    "vm.nr_hugepages": U32,
    "vm.overcommit_memory": _int(0, 2),
    "vm.overcommit_ratio": I32,
    "vm.max_map_count": I32,
    "vm.min_free_kbytes": I32,
    "vm.zone_reclaim_mode": _int(0, 7),
    "vm.vfs_cache_pressure": I32,
    "vm.stat_interval": I32,
    # kernel
    "kernel.numa_balancing": BOOL,
    "kernel.sched_autogroup_enabled": BOOL,
    "kernel.pid_max": _int(301, 4_194_304),
    "kernel.panic": _int(-1, 2_147_483_647),
    "kernel.panic_on_oops": BOOL,
    "kernel.kptr_restrict": _int(0, 2),
    "kernel.dmesg_restrict": BOOL,
    "kernel.perf_event_paranoid": _int(-1, 4),
    "kernel.nmi_watchdog": BOOL,
    "kernel.watchdog": BOOL,
    # limits
    "fs.file-max": U32,
    "fs.aio-max-nr": U32,
    "fs.inotify.max_user_watches": I32,
    "fs.inotify.max_user_instances": I32,
}

_PER_IFACE = re.compile(r"^(net\.ipv[46]\.conf)\.([^.]+)\.([a-z_0-9]+)$")


def template_of(key: str) -> str | None:
    """The table entry `key` falls under, or None if kvmnet does not know it."""
    if key in KNOWN:
        return key
    match = _PER_IFACE.match(key)
    if match:
        generic = f"{match.group(1)}.{_IFACE}.{match.group(3)}"
        iface = match.group(2)
        if generic in KNOWN and (iface in ("all", "default") or interface_name_problem(iface) is None):
            return generic
    return None


def problem(key: str, value: str) -> str | None:
    """Why `key = value` cannot be written, or None."""
    entry = template_of(key)
    if entry is None:
        close = difflib.get_close_matches(key, [k.replace(_IFACE, "all") for k in KNOWN], n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (
            f"unknown sysctl {key!r}{hint} (kvmnet writes only sysctls it knows, so a typo cannot pass "
            "silently; the list is in generator/model/sysctls.py)"
        )
    kind = KNOWN[entry]
    if not kind.check(value):
        return f"{key} must be {kind.describe}, got {value!r}"
    return None
