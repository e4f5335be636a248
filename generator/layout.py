"""The output tree, and where kvmnet's files live on the machines: the one module that spells them.

DESIGN.md's "The output tree" is a contract other tools rely on (CI, image builds, PXE,
Vagrant, `kvmnet verify`, the lab and the VM tier read it), so its paths are spelled here
and nowhere else. Two kinds of path:

- **output paths** are relative, with POSIX separators: what `Artifact.path` and
  `manifest.json` hold (`hosts/hv1/bootstrap.sh`). Join them to an output directory
  with `/` (`Path(output) / bootstrap("hv1")`).
- **machine paths** are absolute: where a file lands on a hypervisor or guest
  (`/etc/sysctl.d/90-kvmnet.conf`). A host's `rootfs/` holds each of its files at its
  machine path: `rootfs_file("hv1", HOST_SYSCTL)` is
  `hosts/hv1/rootfs/etc/sysctl.d/90-kvmnet.conf`.

```
manifest.json  inventory.yaml
hosts/<host>/rootfs/...                     HOST_* and the directories below, as they land
hosts/<host>/bootstrap.sh                   bootstrap()
hosts/<host>/pxe/<answer file>              pxe_answer()
hosts/<host>/pxe/bundle.tar.gz              pxe_bundle() (only when the answer file cannot embed it)
hosts/<host>/libvirt/networks/<net>.xml     libvirt_network()
guests/<guest>/domain.xml                   domain_xml()
guests/<guest>/nocloud/*, seed.iso          guest_seed()
tests/...                                   CHECKS_*, suite(), expected_state()
images/dib/<machine>/elements/<element>/    element_dir()
pxe/dnsmasq.conf, pxe/http/...              PXE_DNSMASQ, pxe_http()
vagrant/Vagrantfile, vagrant/hosts/<host>/  VAGRANTFILE, vagrant_seed()
```

The lowest layer of the package (pyproject.toml's import contract): it imports nothing
of kvmnet, so every stage and every tool beside the pipeline can use it. It holds paths
only; which files exist is the renderers' business (tests/test_layout.py checks the two
against the built manifest of every bundled profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

#: The two kinds of machine, as the generated suites and the image elements name them.
Role = Literal["host", "guest"]
#: networkd's file kinds (systemd.netdev(5), systemd.network(5), systemd.link(5)).
NetworkdKind = Literal["netdev", "network", "link"]

# --- the top of the output tree ------------------------------------------------------

MANIFEST = "manifest.json"
INVENTORY = "inventory.yaml"
HOSTS = "hosts"
GUESTS = "guests"
TESTS = "tests"
IMAGES = "images"
VAGRANT = "vagrant"
PXE = "pxe"
#: Every top-level entry a build may write (`ansible/` comes with its issue).
TOP_LEVEL = frozenset({MANIFEST, INVENTORY, HOSTS, GUESTS, TESTS, IMAGES, VAGRANT, PXE})


# --- on a hypervisor: the files of rootfs/ ---------------------------------------------

NETWORKD_DIR = "/etc/systemd/network"
UNIT_DIR = "/etc/systemd/system"
SYSCTL_DIR = "/etc/sysctl.d"
MODULES_LOAD_DIR = "/etc/modules-load.d"
GRUB_DIR = "/etc/default/grub.d"
#: kvmnet's own configuration: files no other program reads by itself.
ETC_DIR = "/etc/kvmnet"
#: Sorts before netplan's `10-netplan-*` and udev's `99-default.link`, so ours apply.
NETWORKD_PREFIX = "10-kvmnet-"
HOST_SYSCTL = f"{SYSCTL_DIR}/90-kvmnet.conf"
HOST_MODULES = f"{MODULES_LOAD_DIR}/kvmnet.conf"
HOST_GRUB = f"{GRUB_DIR}/90-kvmnet.cfg"
UDEV_RULES_DIR = "/etc/udev/rules.d"
#: Applies the net.bridge.* sysctls again when br_netfilter loads (KernelPlan).
HOST_BR_NETFILTER_RULE = f"{UDEV_RULES_DIR}/90-kvmnet-br-netfilter.rules"
#: The kernel arguments kvmnet adds, one a line (the bootstrap gives them to grubby on EL).
KERNEL_CMDLINE = f"{ETC_DIR}/kernel-cmdline"
TC_DIR = f"{ETC_DIR}/tc"
TC_SUFFIX = ".tc"
#: The template unit that applies a device's tc batch (instance: the escaped device name).
TC_UNIT_PREFIX, TC_UNIT_SUFFIX = "kvmnet-tc@", ".service"
TC_UNIT_NAME = f"{TC_UNIT_PREFIX}{TC_UNIT_SUFFIX}"
TC_UNIT = f"{UNIT_DIR}/{TC_UNIT_NAME}"


def networkd_file(device_id: str, kind: NetworkdKind) -> str:
    """A device's networkd file, named after its profile id."""
    return f"{NETWORKD_DIR}/{NETWORKD_PREFIX}{device_id}.{kind}"


def sudoers_file(user: str) -> str:
    return f"{SUDOERS_DIR}/90-kvmnet-{user}"


def tc_batch(device: str) -> str:
    """The `tc -batch` file of a device (the unit passes `%I` for the device)."""
    return f"{TC_DIR}/{device}{TC_SUFFIX}"


def tc_unit(instance: str) -> str:
    """The kvmnet-tc@ unit instance for a systemd-escaped device name."""
    return f"{TC_UNIT_PREFIX}{instance}{TC_UNIT_SUFFIX}"


def tc_instance(unit: str) -> str:
    """The instance part of a kvmnet-tc@ unit name (`tc_unit`'s inverse)."""
    return unit.removeprefix(TC_UNIT_PREFIX).removesuffix(TC_UNIT_SUFFIX)


def from_root(path: str) -> str:
    """A machine path relative to the root (`etc/...`): how the bootstrap, tarballs and
    `--root` installs name it."""
    return path.lstrip("/")


# --- on a hypervisor: kvmnet's state ---------------------------------------------------

STATE_DIR = "/var/lib/kvmnet"
#: Where a host's bundle (bootstrap.sh and rootfs/) is unpacked by an installer or image.
BUNDLE_DIR = f"{STATE_DIR}/bundle"
#: Where an installer puts a host's bundle it fetched (PXE_BUNDLE), until it is unpacked.
FETCHED_BUNDLE = f"{STATE_DIR}/bundle.tar.gz"
#: What bootstrap.sh leaves when the kernel command line changed, until the host reboots.
REBOOT_MARKER = f"{STATE_DIR}/reboot-required"
#: The PXE install step, written by the installer and run in the installed system.
INSTALL_STEP = f"{STATE_DIR}/install.sh"
#: The sha256 of each libvirt network definition the bootstrap last defined, by name.
NETWORK_STATE = f"{STATE_DIR}/libvirt-networks"
#: A user's sudo rule (sudo skips names with a dot or ending in ~: user names have neither).
SUDOERS_DIR = "/etc/sudoers.d"
#: Where the install step keeps the network files the installer wrote.
INSTALLER_NETWORK = f"{STATE_DIR}/installer-network"
FIRSTBOOT_DONE = f"{STATE_DIR}/firstboot.done"
FIRSTBOOT_UNIT_NAME = "kvmnet-firstboot.service"
FIRSTBOOT_UNIT = f"{UNIT_DIR}/{FIRSTBOOT_UNIT_NAME}"
CLOUD_CFG_DIR = "/etc/cloud/cloud.cfg.d"
#: Ubuntu: turns cloud-init's network handling off once networkd owns the host.
CLOUD_NETWORK_OFF = f"{CLOUD_CFG_DIR}/99-kvmnet-network.cfg"
#: Host images: NoCloud only, and cloud-init's network off (kvmnet's files own the NICs).
CLOUD_HOST_IMAGE = f"{CLOUD_CFG_DIR}/99-kvmnet-host.cfg"
#: The resolver file; a host with nameservers points it at systemd-resolved's stub.
RESOLV_CONF = "/etc/resolv.conf"
#: Where Debian's systemd-resolved postinst keeps the resolv.conf it replaces (first install).
RESOLVED_BACKUP = "/etc/.resolv.conf.systemd-resolved.bak"
RESOLVED_UNIT = "systemd-resolved.service"
#: libvirt's default storage pool: guests' disks and seeds (the domain XML names them).
LIBVIRT_IMAGES = "/var/lib/libvirt/images"


def guest_disk(guest: str) -> str:
    return f"{LIBVIRT_IMAGES}/{guest}.qcow2"


def guest_seed_image(guest: str) -> str:
    """Where the domain XML expects the guest's seed ISO on its hypervisor."""
    return f"{LIBVIRT_IMAGES}/{guest}-seed.iso"


# --- on a guest: the files its user-data writes (and its image element carries) --------

GUEST_SYSCTL = f"{SYSCTL_DIR}/90-kvmnet.conf"
NIC_TUNING_SCRIPT = "/usr/local/sbin/kvmnet-nic-tuning"
NIC_TUNING_UNIT_NAME = "kvmnet-nic-tuning.service"
NIC_TUNING_UNIT = f"{UNIT_DIR}/{NIC_TUNING_UNIT_NAME}"
#: Before the host-side `10-kvmnet-` files would sort (guests have none; one scheme each).
GUEST_LINK_PREFIX = f"{NETWORKD_DIR}/05-kvmnet-"


def guest_link(nic: str) -> str:
    return f"{GUEST_LINK_PREFIX}{nic}.link"


# --- hosts/<host>/ ---------------------------------------------------------------------

ROOTFS = "rootfs"
BOOTSTRAP = "bootstrap.sh"
#: bootstrap.sh inside an unpacked bundle.
BUNDLED_BOOTSTRAP = f"{BUNDLE_DIR}/{BOOTSTRAP}"
#: The PXE answer file of each distro.
ANSWER_FILES = {
    "el9": "kickstart.cfg",
    "debian12": "preseed.cfg",
    "ubuntu2204": "autoinstall.yaml",
    "ubuntu2404": "autoinstall.yaml",
}


def host_dir(host: str) -> str:
    """A host's directory: what its bundle, Vagrant and the VM tier copy to it."""
    return f"{HOSTS}/{host}"


def rootfs_dir(host: str) -> str:
    return f"{host_dir(host)}/{ROOTFS}"


def rootfs_file(host: str, path: str) -> str:
    """The output path of the file that lands at machine path `path` on `host`."""
    if not path.startswith("/"):
        raise ValueError(f"a machine path is absolute: {path!r}")
    return f"{rootfs_dir(host)}{path}"


def bootstrap(host: str) -> str:
    return f"{host_dir(host)}/{BOOTSTRAP}"


def pxe_dir(host: str) -> str:
    return f"{host_dir(host)}/pxe"


def pxe_answer(host: str, distro: str) -> str:
    return f"{pxe_dir(host)}/{ANSWER_FILES[distro]}"


#: The bundle beside a host's answer file, when the answer file cannot carry it.
PXE_BUNDLE = "bundle.tar.gz"


def pxe_bundle(host: str) -> str:
    """The host's bundle as a file next to its answer file: written only for the answer
    files too small for it (renderers/pxe.py), which fetch it from beside their own URL."""
    return f"{pxe_dir(host)}/{PXE_BUNDLE}"


#: A host's libvirt networks, relative to its directory (and to an unpacked bundle).
LIBVIRT_NETWORKS = "libvirt/networks"
LIBVIRT_NETWORK_SUFFIX = ".xml"


def libvirt_network(host: str, network: str) -> str:
    return f"{host_dir(host)}/{LIBVIRT_NETWORKS}/{network}{LIBVIRT_NETWORK_SUFFIX}"


def host_of(path: str) -> str | None:
    """The host whose directory holds output path `path`, if one does."""
    top, _, rest = path.partition("/")
    host, slash, _ = rest.partition("/")
    return host if top == HOSTS and slash else None


def in_bundle(host: str, path: str) -> bool:
    """Does the host's bundle carry output path `path`? It carries bootstrap.sh, rootfs/
    and the libvirt networks the bootstrap defines (at their paths under the host's
    directory), not the vehicles that carry it (PXE answer files)."""
    carried = (f"{rootfs_dir(host)}/", f"{host_dir(host)}/{LIBVIRT_NETWORKS}/")
    return path == bootstrap(host) or path.startswith(carried)


# --- pxe/: the fleet's boot service ---------------------------------------------------
#
# pxe/dnsmasq.conf is the DHCP/TFTP half; pxe/http/ is the HTTP tree any static web
# server serves at the profile's `pxe.url`. Paths in the tree are spelled twice: as URL
# paths (relative to `pxe.url`, what iPXE scripts and kernel command lines name) and as
# output paths (`pxe_http(url_path)`). The tree also names files kvmnet does not build
# (the installers' kernels, the deploy ramdisk, the hosts' images): a site puts them
# there, `kvmnet pxe serve --assets DIR` serves them from DIR.

PXE_DNSMASQ = f"{PXE}/dnsmasq.conf"
#: What `kvmnet pxe serve` reads: the URL, and the files the tree names that kvmnet does
#: not build (kernels, initrds, the deploy ramdisk, images), which a site provides.
PXE_SERVICE = f"{PXE}/service.json"
PXE_HTTP = f"{PXE}/http"
#: The script every iPXE client is handed by DHCP; it chains its MAC's script.
BOOT_SCRIPT = "boot.ipxe"
#: Each distro's installer kernel and initrd, as its netboot files name them.
INSTALLER_FILES = {
    "debian12": ("linux", "initrd.gz"),
    "el9": ("vmlinuz", "initrd.img"),
    "ubuntu2204": ("vmlinuz", "initrd"),
    "ubuntu2404": ("vmlinuz", "initrd"),
}
#: Ubuntu's live server ISO, which its installer's initrd fetches (`url=`).
UBUNTU_ISO = "live-server.iso"


def pxe_http(url_path: str) -> str:
    """The output path of URL path `url_path` of the boot service's HTTP tree."""
    return f"{PXE_HTTP}/{url_path}"


def boot_script_named(stem: str) -> str:
    """URL path of the iPXE script named `stem` (a MAC as iPXE's `${mac:hexhyp}` spells it)."""
    return f"boot/{stem}.ipxe"


def boot_script(mac: str) -> str:
    """URL path of the iPXE script of the NIC with `mac`."""
    return boot_script_named(mac.lower().replace(":", "-"))


def installer_file(distro: str, name: str) -> str:
    return f"installers/{distro}/{name}"


def boot_host_dir(host: str) -> str:
    """URL path of the directory serving a host's answer files (and Ubuntu's seed)."""
    return f"{HOSTS}/{host}/"


def host_image(host: str) -> str:
    """URL path of a host's golden image; `<it>.sha256` beside it (sha256sum's format)."""
    return f"{IMAGES}/{host}.qcow2"


# --- NoCloud seeds: guests/<guest>/ and vagrant/hosts/<host>/ ----------------------------

NOCLOUD_FILES = ("user-data", "meta-data", "network-config")


@dataclass(frozen=True, slots=True)
class Seed:
    """A machine's NoCloud seed in the output tree: the three files and their ISO."""

    directory: str

    @property
    def nocloud_dir(self) -> str:
        return f"{self.directory}/nocloud"

    def nocloud(self, name: str) -> str:
        if name not in NOCLOUD_FILES:
            raise ValueError(f"not a NoCloud file: {name!r}")
        return f"{self.nocloud_dir}/{name}"

    @property
    def user_data(self) -> str:
        return self.nocloud("user-data")

    @property
    def meta_data(self) -> str:
        return self.nocloud("meta-data")

    @property
    def network_config(self) -> str:
        return self.nocloud("network-config")

    @property
    def image(self) -> str:
        """The seed ISO (`kvmnet build --seed-iso`)."""
        return f"{self.directory}/seed.iso"


# --- guests/<guest>/ -------------------------------------------------------------------


def guest_dir(guest: str) -> str:
    return f"{GUESTS}/{guest}"


def domain_xml(guest: str) -> str:
    return f"{guest_dir(guest)}/domain.xml"


def guest_seed(guest: str) -> Seed:
    return Seed(guest_dir(guest))


# --- tests/: the generated check suites ------------------------------------------------

CHECKS_PYTEST_INI = f"{TESTS}/pytest.ini"
CHECKS_CONFTEST = f"{TESTS}/conftest.py"
CHECKS_LIBRARY = f"{TESTS}/kvmnet_checks.py"
#: The files every build's tests/ holds, whatever its machines.
CHECKS_COMMON = (CHECKS_PYTEST_INI, CHECKS_CONFTEST, CHECKS_LIBRARY)


def module_stem(name: str) -> str:
    """A machine's name as a Python module name (`hv-1` -> `hv_1`; names have no `_`)."""
    return name.lower().replace("-", "_")


def suite(role: Role, name: str) -> str:
    """The generated test module of a machine."""
    return f"{TESTS}/test_{role}_{module_stem(name)}.py"


def expected_state(role: Role, name: str) -> str:
    """The expected-state JSON its suite reads (renderers/expected.py)."""
    return f"{TESTS}/{role}_{module_stem(name)}.json"


def suite_for_state(path: str) -> str | None:
    """The suite beside expected-state file `path` (`expected_state`'s output path), or
    None when `path` is not one: how `kvmnet verify` finds the suites of a tree."""
    pure = PurePosixPath(path)
    role, _, stem = pure.stem.partition("_")
    if str(pure.parent) != TESTS or pure.suffix != ".json" or role not in ("host", "guest") or not stem:
        return None
    return f"{TESTS}/test_{role}_{stem}.py"


def name_in_tests(path: str) -> str:
    """An output path under tests/ as the suites refer to it: relative to tests/."""
    return str(PurePosixPath(path).relative_to(TESTS))


# --- images/: diskimage-builder elements ------------------------------------------------

GUEST_ELEMENT = "kvmnet-guest"
HOST_ELEMENT = "kvmnet-host"
ELEMENTS: dict[Role, str] = {"host": HOST_ELEMENT, "guest": GUEST_ELEMENT}


def elements_dir(machine: str) -> str:
    """The `ELEMENTS_PATH` of one machine (its elements' content is the machine's own)."""
    return f"{IMAGES}/dib/{machine}/elements"


def element_dir(machine: str, role: Role) -> str:
    return f"{elements_dir(machine)}/{ELEMENTS[role]}"


# --- what `kvmnet image` writes beside an image, and the deploy ramdisk ------------------

#: The sidecar of every image `kvmnet image` builds: `<image>.sha256`, in sha256sum's
#: format; the deploy ramdisk fetches `<image URL>.sha256` and checks the image with it.
SHA256_SUFFIX = ".sha256"
#: The deploy ramdisk's element (written from the package's templates for one build: the
#: ramdisk is the same for every machine, so it is no part of a profile's output tree).
DEPLOY_ELEMENT = "kvmnet-deploy"
#: `kvmnet image --role deploy -o PREFIX` writes PREFIX.kernel and PREFIX.initramfs.
DEPLOY_PREFIX = "kvmnet-deploy"
DEPLOY_KERNEL_SUFFIX = ".kernel"
DEPLOY_INITRAMFS_SUFFIX = ".initramfs"


def sha256_sidecar(image: str) -> str:
    return f"{image}{SHA256_SUFFIX}"


def deploy_kernel(prefix: str) -> str:
    return f"{prefix}{DEPLOY_KERNEL_SUFFIX}"


def deploy_initramfs(prefix: str) -> str:
    return f"{prefix}{DEPLOY_INITRAMFS_SUFFIX}"


# --- vagrant/ --------------------------------------------------------------------------

VAGRANTFILE = f"{VAGRANT}/Vagrantfile"


def vagrant_seed(host: str) -> Seed:
    """The seed a host boots with under Vagrant (its network handling off)."""
    return Seed(f"{VAGRANT}/{HOSTS}/{host}")


#: Machine path of the .network by which a Vagrant box (`kvmnet image --vagrant`) takes
#: DHCP on Vagrant's management NIC (last: kvmnet's and cloud-init's files match first).
VAGRANT_DHCP_NETWORK = f"{NETWORKD_DIR}/99-vagrant-dhcp.network"


def vagrant_rename_link(name: str) -> str:
    """Machine path of the .link file by which the Vagrantfile names a host's NIC in its VM
    (before the host's own `10-kvmnet-` files, which then match the name)."""
    return f"{NETWORKD_DIR}/09-kvmnet-vagrant-{name}.link"


#: The deploy ramdisk in the boot service's tree (`kvmnet image --role deploy -o
#: <assets>/deploy/kvmnet-deploy`): URL paths.
DEPLOY_KERNEL = deploy_kernel(f"deploy/{DEPLOY_PREFIX}")
DEPLOY_INITRD = deploy_initramfs(f"deploy/{DEPLOY_PREFIX}")
