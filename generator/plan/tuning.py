"""Host tuning: traffic control, sysctls, kernel modules and the kernel command line.

Every number here is settled once (rates in bits/s, sizes in bytes, times in µs) and
every rule that needs more than one value is checked, so the renderers only format.
"""

from __future__ import annotations

import ipaddress

from generator import layout
from generator.errors import Diagnostic, KeyPath
from generator.model import sysctls
from generator.model.host import Bootstrap, HtbShaping, Kernel, TbfShaping, TrafficControl
from generator.model.profile import Host
from generator.plan.types import (
    DEFAULT_LEAF,
    IPV6_OFF,
    KIND_MODULES,
    POLICE_MODULES,
    QDISC_MODULES,
    BootstrapPlan,
    Interface,
    KernelPlan,
    Kind,
    Police,
    ProbeFrom,
    Shape,
    Shaper,
    Sysctl,
    TcEngine,
    TcPlan,
)

ETHERNET_HEADER = 14
HTB_R2Q = 10
HTB_MAX_QUANTUM = 200_000
DEFAULT_TBF_LATENCY_US = 50_000
#: A device's default transmit queue length (packets): what the kernel sizes a FIFO by.
DEFAULT_TXQUEUELEN = 1000

#: Modules a KVM host always loads, and why.
BASE_MODULES = (
    ("vhost_net", "virtio-net guests with driver name='vhost': packet processing in the kernel"),
    ("sch_htb", "libvirt <bandwidth> on guest taps (inbound shaping)"),
    ("sch_sfq", "libvirt <bandwidth> on guest taps (leaf qdisc)"),
    ("sch_ingress", "libvirt <bandwidth> on guest taps (outbound policing)"),
    ("act_police", "libvirt <bandwidth> on guest taps (outbound policing)"),
    # libvirt's outbound policer is `tc filter ... u32 match u32 0 0 police ... mtu 64kb`
    # (src/util/virnetdevbandwidth.c): a u32 classifier, not kvmnet's own matchall.
    ("cls_u32", "libvirt <bandwidth> on guest taps (outbound policing: its u32 filter)"),
)
#: The kernel argument of `kernel.ipv6: removed`.
IPV6_REMOVED_ARG = "ipv6.disable=1"
_BRIDGE_NF = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
)


def systemd_escape(name: str) -> str:
    """`systemd-escape NAME` for a unit instance (systemd's unit_name_escape)."""
    out = []
    for index, char in enumerate(name):
        if char == "/":
            out.append("-")
        elif (char.isascii() and (char.isalnum() or char in ":_.")) and not (index == 0 and char == "."):
            out.append(char)
        else:
            out.append("".join(f"\\x{b:02x}" for b in char.encode()))
    return "".join(out)


def plan_tc(
    host: str, spec: Host, interfaces: dict[str, Interface], problems: list[Diagnostic]
) -> tuple[TcPlan, ...]:
    out = []
    for ident, tc in sorted(spec.tc.items()):
        path: KeyPath = ("hosts", host, "tc", ident)
        iface = interfaces.get(ident)
        if iface is None:
            known = ", ".join(sorted(interfaces)) or "none"
            problems.append(
                Diagnostic(f"no device {ident!r} on host {host} (devices: {known})", path, on_key=True)
            )
            continue
        if iface.name is None:
            problems.append(
                Diagnostic(
                    f"{ident} is matched by MAC address only, so its name is not known; give it set-name "
                    "to shape it",
                    path,
                    on_key=True,
                )
            )
            continue
        if iface.kind is Kind.BRIDGE:
            ports = sorted(i.id for i in interfaces.values() if i.master == iface.id)
            problems.append(Diagnostic(_bridge_tc_problem(ident, ports), path, on_key=True))
            continue
        plan = _tc(tc, iface, path, problems)
        if plan is not None:
            out.append(plan)
    return tuple(out)


def _bridge_tc_problem(bridge: str, ports: list[str]) -> str:
    # Measured in namespaces: a 10 Mbit/s tbf on a bridge let 12.5 Gbit/s pass between two
    # of its ports. A bridged frame is queued on the egress port; the bridge device's own
    # qdisc (and its ingress) sees only what the host itself sends or receives on it.
    where = f"its ports: {', '.join(ports)}" if ports else "it has no ports yet"
    return (
        f"{bridge} is a bridge: it forwards a guest's frame by queueing it on the port the frame "
        f"leaves by, so tc on {bridge} would see only the host's own traffic, never the bridged "
        f"traffic. Put qdisc, shape and police on the port traffic leaves by ({where}), or "
        "limit a guest with its interface's bandwidth (libvirt <bandwidth> on its tap)"
    )


def _tc(tc: TrafficControl, iface: Interface, path: KeyPath, problems: list[Diagnostic]) -> TcPlan | None:
    if tc.qdisc is None and tc.shape is None and tc.police is None:
        problems.append(Diagnostic("nothing to do: give qdisc, shape or police", path))
        return None
    frame = iface.mtu + ETHERNET_HEADER
    shape = None
    if tc.shape is not None:
        s = tc.shape
        spath = (*path, "shape")
        if isinstance(s, TbfShaping) and s.burst is None:
            problems.append(
                Diagnostic(f"tbf needs burst (at least one frame: {frame} bytes on {iface.id})", spath)
            )
        if isinstance(s, HtbShaping) and s.ceil is not None and s.ceil < s.rate:
            problems.append(
                Diagnostic(f"ceil ({s.ceil} bit/s) is below rate ({s.rate} bit/s)", (*spath, "ceil"))
            )
        _burst_fits(s.burst, frame, iface, (*spath, "burst"), problems)
        if isinstance(s, TbfShaping):
            latency = s.latency or DEFAULT_TBF_LATENCY_US
            shape = Shape(Shaper.TBF, s.rate, None, s.burst, latency)
        else:
            shape = Shape(Shaper.HTB, s.rate, s.ceil or s.rate, s.burst, None, _quantum(s.rate, frame))
    police = None
    if tc.police is not None:
        if tc.engine == "networkd":
            problems.append(
                Diagnostic(
                    "systemd-networkd 252 has no tc filters, so it cannot police ingress; "
                    "use engine: service",
                    (*path, "police"),
                )
            )
        _burst_fits(tc.police.burst, frame, iface, (*path, "police", "burst"), problems)
        police = Police(tc.police.rate, tc.police.burst)
    if tc.engine == "networkd" and shape is not None and shape.kind is Shaper.TBF:
        problems.append(
            Diagnostic(
                "systemd-networkd 252 cannot put a qdisc under tbf (its Parent= takes only a class "
                "networkd made itself, and tbf's class is the kernel's: the link waits in 'configuring' "
                "for ever), so tbf there would queue in a plain FIFO; use kind: htb (networkd puts "
                f"{tc.qdisc or DEFAULT_LEAF} under its class) or engine: service",
                (*path, "shape", "kind"),
            )
        )
    if tc.engine == "networkd" and shape is None and tc.qdisc is not None and iface.kind in _MAYBE_MULTIQUEUE:
        problems.append(
            Diagnostic(
                f"{iface.id} is {_article(iface.kind.word)} {iface.kind.word}, which may have several TX "
                f"queues: networkd 252 can only put {tc.qdisc} at the root, in place of the kernel's mq "
                "(one queue and one lock for every CPU), and cannot know the queue count; use engine: "
                f"service (its unit keeps mq and puts {tc.qdisc} under each TX queue), or shape the device",
                (*path, "qdisc"),
            )
        )
    qdisc = tc.qdisc or (DEFAULT_LEAF if shape is not None else None)
    return TcPlan(
        device_id=iface.id,
        device=iface.netdev_name,
        unit=layout.tc_unit(systemd_escape(iface.netdev_name)),
        engine=TcEngine(tc.engine),
        qdisc=qdisc,
        shape=shape,
        police=police,
        mtu=iface.mtu,
        default_leaf=shape is not None and tc.qdisc is None,
        fifo_limit=_fifo_limit(qdisc, frame),
    )


def _fifo_limit(qdisc: str | None, frame: int) -> int | None:
    """What the kernel gives a FIFO created without options: txqueuelen packets (pfifo),
    or txqueuelen full frames in bytes (bfifo)."""
    if qdisc == "pfifo":
        return DEFAULT_TXQUEUELEN
    if qdisc == "bfifo":
        return DEFAULT_TXQUEUELEN * frame
    return None


#: Devices that can have several TX queues (NICs, bonds, and VLANs, which take their
#: parent's count); VXLAN and GRE devices are created with one.
_MAYBE_MULTIQUEUE = (Kind.ETHERNET, Kind.BOND, Kind.VLAN)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _quantum(rate: int, frame: int) -> int:
    """What the kernel would pick (rate / r2q, r2q = 10), kept between one full frame and
    200,000 bytes. The kernel clamps to 1,000..200,000 by itself, but warns ("quantum of
    class is big") every time; below one frame HTB cannot share fairly."""
    return min(max(rate // 8 // HTB_R2Q, frame), HTB_MAX_QUANTUM)


def _burst_fits(
    burst: int | None, frame: int, iface: Interface, path: KeyPath, problems: list[Diagnostic]
) -> None:
    if burst is not None and burst < frame:
        problems.append(
            Diagnostic(
                f"burst {burst} bytes is smaller than one full frame on {iface.id} (MTU {iface.mtu} + "
                f"{ETHERNET_HEADER}-byte Ethernet header = {frame}): it could never let one through",
                path,
            )
        )


def plan_kernel(
    host: str,
    spec: Kernel,
    interfaces: tuple[Interface, ...],
    tc: tuple[TcPlan, ...],
    problems: list[Diagnostic],
) -> KernelPlan:
    base: KeyPath = ("hosts", host, "kernel")
    wanted: dict[str, Sysctl] = {}
    if spec.ipv6 == "disabled":
        wanted.update((s.key, s) for s in IPV6_OFF)
    value = "1" if spec.bridge_netfilter else "0"
    for key in _BRIDGE_NF:
        wanted[key] = Sysctl(key, value, optional=not spec.bridge_netfilter)
    for key, given in sorted(spec.sysctl.items()):
        kpath = (*base, "sysctl", key)
        problem = sysctls.problem(key, given)
        if problem:
            problems.append(Diagnostic(problem, kpath, on_key=sysctls.template_of(key) is None))
            continue
        if spec.ipv6 == "removed" and key.startswith("net.ipv6."):
            problems.append(
                Diagnostic(
                    "ipv6: removed takes the IPv6 stack away (ipv6.disable=1), so net.ipv6.* does not exist",
                    kpath,
                    on_key=True,
                )
            )
            continue
        derived = wanted.get(key)
        if derived is not None and derived.value != given:
            why = "kernel.ipv6" if key.startswith("net.ipv6") else "kernel.bridge-netfilter"
            problems.append(
                Diagnostic(
                    f"{key} is set by {why} to {derived.value}; change {why} instead", kpath, on_key=True
                )
            )
            continue
        wanted[key] = Sysctl(key, given)
    _ipv6_consistent(host, spec.ipv6, interfaces, problems)
    for index, argument in enumerate(spec.cmdline):
        if argument == IPV6_REMOVED_ARG and spec.ipv6 != "removed":
            # Written by hand it would pass every IPv6 check (addresses, dhcp6, net.ipv6.*
            # sysctls) and then fail at boot: the stack would not be there.
            problems.append(
                Diagnostic(
                    f"{IPV6_REMOVED_ARG} takes the IPv6 stack away, but kernel.ipv6 is {spec.ipv6}: "
                    "write `kernel.ipv6: removed` instead (kvmnet adds the argument and refuses "
                    "what would need IPv6)",
                    (*base, "cmdline", index),
                )
            )
    cmdline = list(dict.fromkeys(spec.cmdline))
    if spec.ipv6 == "removed" and IPV6_REMOVED_ARG not in cmdline:
        cmdline.insert(0, IPV6_REMOVED_ARG)
    return KernelPlan(
        ipv6=spec.ipv6,
        sysctls=tuple(wanted[k] for k in sorted(wanted)),
        modules=_modules(spec, interfaces, tc),
        cmdline=tuple(cmdline),
    )


def _ipv6_consistent(
    host: str, ipv6: str, interfaces: tuple[Interface, ...], problems: list[Diagnostic]
) -> None:
    if ipv6 == "enabled":
        return
    for iface in interfaces:
        v6 = [a for a in iface.addresses if ipaddress.ip_interface(a).version == 6]
        if v6 or iface.dhcp in ("ipv6", "yes"):
            problems.append(
                Diagnostic(
                    f"{iface.id} has IPv6 configuration (addresses or dhcp6) but "
                    f"hosts.{host}.kernel.ipv6 is {ipv6}",
                    iface.origin,
                )
            )


def _modules(
    spec: Kernel, interfaces: tuple[Interface, ...], tc: tuple[TcPlan, ...]
) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = dict(BASE_MODULES)
    for iface in interfaces:
        if iface.kind in KIND_MODULES:
            module, why = KIND_MODULES[iface.kind]
            found.setdefault(module, why)
    for t in tc:
        for kind in filter(None, (t.shape.kind if t.shape else None, t.qdisc)):
            if (qdisc_module := QDISC_MODULES[kind]) is not None:  # None: built into every kernel
                found.setdefault(qdisc_module, f"tc on {t.device}")
        if t.police is not None:
            for module in POLICE_MODULES:
                found.setdefault(module, f"ingress policing on {t.device}")
    if spec.bridge_netfilter:
        found.setdefault("br_netfilter", "kernel.bridge-netfilter: bridged guest traffic through iptables")
    for module in spec.modules:
        found.setdefault(module, "asked for in the profile")
    return tuple(sorted(found.items()))


def plan_bootstrap(spec: Bootstrap, interfaces: tuple[Interface, ...]) -> BootstrapPlan:
    seconds = spec.rollback_after // 1_000_000  # whole, at least 5: the model checks it
    if spec.probe == "none":
        return BootstrapPlan(None, ProbeFrom.NONE, seconds)
    if spec.probe is not None:
        return BootstrapPlan(spec.probe, ProbeFrom.PROFILE, seconds)
    gateways = [g for i in interfaces for g in i.gateways] + [
        r.gateway
        for i in interfaces
        for r in i.routes
        if r.gateway and r.destination in ("0.0.0.0/0", "::/0")
    ]
    ordered = sorted(gateways, key=lambda g: ipaddress.ip_address(g).version)  # IPv4 first
    if ordered:
        return BootstrapPlan(ordered[0], ProbeFrom.ROUTE, seconds)
    # A DHCP host: the bootstrap asks the kernel for the default gateway before it changes anything.
    return BootstrapPlan(None, ProbeFrom.RUNTIME, seconds)
