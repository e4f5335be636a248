"""`vagrant/Vagrantfile` for the vagrant-libvirt provider (issue 6).

One Vagrant machine per host and guest of the profile, on the machine that runs Vagrant:

- guests get the planned vCPUs, memory, machine type, disk bus and virtio NICs with the
  planned MAC, queue pairs and MTU, on the libvirt network kvmnet writes for the planned
  bridge (`hosts/<host>/libvirt/networks/<bridge>.xml`, named like the bridge); their
  NoCloud seed (`kvmnet build --seed-iso`) is attached as a CD-ROM, because Vagrant's own
  `cloud_init` does not reach libvirt machines;
- hosts get one NIC per planned ethernet, with the MAC the profile matches, cabled like
  in `kvmnet lab`: every host's NIC of one name on one isolated libvirt network (a wire);
  their provisioning uploads `hosts/<host>/` and runs its `bootstrap.sh`. They boot with
  a seed of their own (`vagrant/hosts/<host>/seed.iso`) that turns cloud-init's network
  handling off: without one, cloud-init 22.4 finds no datasource and writes a fallback
  DHCP `.network` for the first NIC by name (eno1), which sorts before kvmnet's files and
  takes the host's NIC. The box's own DHCP file serves Vagrant's management NIC;
- then `kvmnet verify` runs the machine's generated suite over Vagrant's SSH connection.

Every vagrant-libvirt option used here was read in vagrant-libvirt 0.11.2's source
(Debian 12's, /usr/share/rubygems-integration/all/gems/vagrant-libvirt-0.11.2). Knobs it
lacks (ring sizes per NIC, bandwidth, offloads, a VLAN tag) are said in the file, not
faked; rings are raised for the whole machine through QEMU's `-global`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from generator import layout
from generator.plan.guests import SEED_TARGETS
from generator.plan.types import GuestPlan, HostPlan, Interface, Kind, Plan
from generator.renderers import yamltext
from generator.renderers.artifact import MODE_SECRET, Artifact
from generator.templating import GENERATED
from generator.templating import render as render_template

#: vagrant-libvirt's default: eight NICs, the management network's included.
NIC_SLOTS = 8


def ruby(value: str | int) -> str:
    """A Ruby literal: integers as they are, text single-quoted (no `#{}` interpolation)."""
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class VagrantNic:
    """One `config.vm.network :private_network` of a machine; values are Ruby literals."""

    mac: str
    network: str  # the libvirt network (guests: kvmnet's network for the bridge; hosts: a wire)
    options: tuple[tuple[str, str], ...]  # (option, Ruby literal), in the order written
    note: str  # a comment: where the NIC comes from, what vagrant-libvirt cannot carry


@dataclass(frozen=True, slots=True)
class VagrantMachine:
    name: str
    kind: str  # "host" | "guest"
    driver: str | None  # the planned libvirt domain type (guests); hosts have none in the plan
    cpus: int | None
    memory_mib: int | None
    machine_type: str | None
    disk_bus: str | None
    disk_device: str | None
    disk_gib: int | None
    loader: bool  # UEFI firmware
    seed: tuple[str, str, str] | None  # (path from the output directory, target dev, bus)
    rx_ring: int | None  # QEMU's virtio-net rx_queue_size for the whole machine
    nics: tuple[VagrantNic, ...]
    renames: tuple[tuple[str, str], ...]  # hosts: (MAC, name) of NICs the VM names (see named_by_its_link)
    nic_slots: int | None  # set only when more NICs than vagrant-libvirt's default slots


def derived_mac(*parts: str) -> str:
    """A stable locally administered MAC in QEMU's 52:54:00 range, as the plan makes them."""
    digest = hashlib.sha256("/".join(("vagrant", *parts)).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def wire(iface: Interface) -> str:
    """The isolated libvirt network every host's NIC of this name is cabled to, as in the lab."""
    return f"kvmnet-{iface.concrete_name or iface.id}"[:64]


def named_by_its_link(iface: Interface) -> bool:
    """Whether kvmnet's own .link names the NIC in the VM: set-name on a NIC matched by MAC
    alone, which the VM's NIC has. A .link matched by name cannot (OriginalName=, or the
    ID_NET_NAME_* property of the name udev is about to give, plan/naming.py): the VM's
    NIC has a name of its own."""
    return iface.link is not None and iface.link.name is not None and iface.link.match.name is None


def _host_nics(plan: Plan) -> dict[str, list[Interface]]:
    return {host.name: [i for i in host.interfaces if i.kind is Kind.ETHERNET] for host in plan.hosts}


def _wire_mtus(plan: Plan) -> dict[str, int]:
    """A wire carries the largest MTU of its NICs, like the lab's switch: the hosts' own
    MTUs (networkd's) are what limits a frame, as behind a jumbo-frame switch."""
    mtus: dict[str, int] = {}
    for nics in _host_nics(plan).values():
        for iface in nics:
            mtus[wire(iface)] = max(mtus.get(wire(iface), 0), iface.mtu)
    return mtus


def host_machine(host: HostPlan, nics: list[Interface], mtus: dict[str, int]) -> VagrantMachine:
    out: list[VagrantNic] = []
    renames: list[tuple[str, str]] = []
    for iface in nics:
        mac = iface.match.mac or derived_mac(host.name, iface.id)
        name = iface.concrete_name
        if name is not None and not named_by_its_link(iface):
            # The name the lab gives it, which the host's own files select (plan/ifnames.py).
            renames.append((mac, name))
        network = wire(iface)
        options = (
            ("libvirt__network_name", ruby(network)),
            ("libvirt__forward_mode", ruby("veryisolated")),
            ("libvirt__dhcp_enabled", "false"),
            # A wire forwards at once, like the lab's switch: no STP listening.
            ("libvirt__bridge_stp", "false"),
            ("libvirt__mtu", ruby(mtus[network])),
            ("auto_config", "false"),
        )
        label = name or "no name that its [Match] selects (see kvmnet validate)"
        out.append(VagrantNic(mac, network, options, f"{label} (hosts.{host.name}.network: {iface.id})"))
    return VagrantMachine(
        name=host.name,
        kind="host",
        driver=None,
        cpus=None,
        memory_mib=None,
        machine_type=None,
        disk_bus=None,
        disk_device=None,
        disk_gib=None,
        loader=False,
        # vagrant-libvirt leaves the machine type to libvirt: pc, whose CD-ROM is IDE.
        seed=(layout.vagrant_seed(host.name).image, *SEED_TARGETS["pc"]),
        rx_ring=None,
        nics=tuple(out),
        renames=tuple(renames),
        nic_slots=len(out) + 1 if len(out) + 1 > NIC_SLOTS else None,
    )


def host_seed(host: HostPlan) -> list[Artifact]:
    """The NoCloud seed a host boots with under Vagrant: its name, and cloud-init's
    network handling off (`network: {config: disabled}` from the datasource, which
    cloud-init 22.4's `_find_networking_config` honours), so kvmnet's networkd files own
    the host's NICs. No users or keys: Vagrant brings its own in the box."""
    seed = layout.vagrant_seed(host.name)
    header = f"# {GENERATED}\n"
    return [
        # Nothing secret in it, but every user-data kvmnet writes is 0600: one rule.
        Artifact.text(seed.user_data, "#cloud-config\n" + header + yamltext.dump({}), MODE_SECRET),
        Artifact.text(
            seed.meta_data,
            header
            + yamltext.dump({"instance-id": f"iid-kvmnet-vagrant-{host.name}", "local-hostname": host.name}),
        ),
        Artifact.text(seed.network_config, header + yamltext.dump({"network": {"config": "disabled"}})),
    ]


def guest_machine(guest: GuestPlan) -> VagrantMachine:
    nics = []
    for nic in guest.nics:
        options: list[tuple[str, str]] = [
            ("libvirt__network_name", ruby(nic.source)),
            ("libvirt__model_type", ruby(nic.model)),
        ]
        if nic.model == "virtio":
            # As the domain XML: vhost-net where the host has it (libvirt skips it for
            # type='qemu' domains), the planned queue pairs, and the tap's MTU.
            options.append(("libvirt__driver_name", ruby("vhost")))
            if nic.queues is not None:
                options.append(("libvirt__driver_queues", ruby(nic.queues)))
            options.append(("libvirt__mtu", ruby(nic.mtu)))
        if nic.target is not None:
            options.append(("libvirt__iface_name", ruby(nic.target)))
        # The network is kvmnet's (defined from its network XML), not Vagrant's: without
        # this, `vagrant destroy` would destroy it with the last machine using it.
        options.append(("libvirt__always_destroy", "false"))
        # cloud-init configures the NIC from the seed; Vagrant's own configuration
        # (ifupdown files written over SSH) would fight it.
        options.append(("auto_config", "false"))
        lacking = [
            what
            for what, present in (
                ("bandwidth", nic.bandwidth is not None),
                ("offloads", bool(nic.host_offloads or nic.guest_offloads)),
                ("VLAN tag", nic.vlan is not None),
            )
            if present
        ]
        note = f"{nic.name} (guests.{guest.name}.interfaces[{nic.index}]: {nic.attach} {nic.source})"
        if lacking:
            note += "; vagrant-libvirt 0.11.2 has no option for its " + ", ".join(lacking)
        nics.append(VagrantNic(nic.mac, nic.source, tuple(options), note))
    rings = [nic.rx_ring for nic in guest.nics if nic.model == "virtio" and nic.rx_ring is not None]
    return VagrantMachine(
        name=guest.name,
        kind="guest",
        driver=guest.virt_type,
        cpus=guest.vcpus,
        memory_mib=guest.memory_kib // 1024,
        machine_type=guest.machine,
        disk_bus=guest.disk_bus,
        disk_device=guest.disk_target,
        disk_gib=math.ceil(guest.disk_size / 2**30),
        loader=guest.firmware == "uefi",
        seed=(layout.guest_seed(guest.name).image, guest.seed_target, guest.seed_bus),
        # One value for every virtio NIC of the machine (QEMU's -global): the largest
        # planned ring is every NIC's maximum, and each guest NIC sets its own below it.
        rx_ring=max(rings) if rings else None,
        nics=tuple(nics),
        renames=(),
        nic_slots=len(nics) + 1 if len(nics) + 1 > NIC_SLOTS else None,
    )


def render(plan: Plan) -> list[Artifact]:
    nics = _host_nics(plan)
    mtus = _wire_mtus(plan)
    machines = [host_machine(host, nics[host.name], mtus) for host in plan.hosts]
    machines += [guest_machine(guest) for guest in plan.guests]
    text = render_template(
        "vagrant/Vagrantfile.j2",
        machines=machines,
        ruby=ruby,
        host_dir=layout.host_dir,
        bootstrap=layout.BOOTSTRAP,
        rename_link=layout.vagrant_rename_link,
    )
    return [Artifact.text(layout.VAGRANTFILE, text), *(a for host in plan.hosts for a in host_seed(host))]
