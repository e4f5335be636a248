"""Kernel tuning of a hypervisor: sysctl drop-in, modules to load, kernel arguments."""

from __future__ import annotations

from generator import layout
from generator.errors import format_path
from generator.plan.types import HostPlan, Plan
from generator.renderers.artifact import Artifact
from generator.templating import render as render_template

#: Distros whose update-grub reads /etc/default/grub.d/; EL9's grub2 takes arguments
#: through grubby instead (BLS entries), which the bootstrap runs from layout.KERNEL_CMDLINE.
GRUB_DROP_IN = frozenset(("debian12", "ubuntu2204", "ubuntu2404"))


def host_files(host: HostPlan) -> list[Artifact]:
    kernel = host.kernel
    source = format_path(("hosts", host.name, "kernel"))

    def path(on_host: str) -> str:
        return layout.rootfs_file(host.name, on_host)

    out = [
        Artifact.text(
            path(layout.HOST_MODULES), render_template("kernel/modules.conf.j2", kernel=kernel, source=source)
        )
    ]
    if kernel.sysctls:
        text = render_template("kernel/sysctl.conf.j2", kernel=kernel, source=source)
        out.append(Artifact.text(path(layout.HOST_SYSCTL), text))
    if kernel.bridge_sysctls_reapplied:
        text = render_template("kernel/br-netfilter.rules.j2", source=source)
        out.append(Artifact.text(path(layout.HOST_BR_NETFILTER_RULE), text))
    if kernel.cmdline:
        text = render_template("kernel/cmdline.j2", kernel=kernel, source=source)
        out.append(Artifact.text(path(layout.KERNEL_CMDLINE), text))
        if host.install.distro in GRUB_DROP_IN:
            text = render_template("kernel/grub.cfg.j2", kernel=kernel, source=source)
            out.append(Artifact.text(path(layout.HOST_GRUB), text))
    return out


def render(plan: Plan) -> list[Artifact]:
    return [artifact for host in plan.hosts for artifact in host_files(host)]
