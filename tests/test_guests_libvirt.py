"""libvirt reads what kvmnet writes: the domain and network XML, checked by their consumer.

Every bundled profile's XML validates against libvirt's RelaxNG schemas (`virt-xml-validate`)
and is defined in libvirt's test driver with the VALIDATE flag (without it libvirt drops
unknown attributes without a word: shown below). What libvirt keeps is read back and compared
with the plan, value by value. Then: the limits libvirt does not check (QEMU's and the
kernel's) pass libvirt, which is why the plan refuses them; bandwidth is converted to
libvirt's units exactly or refused; and a completeness guard, as in virt-manager's tests,
fails when the domain template can emit an element or attribute no bundled profile exercises.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import libvirt  # libvirt-python ships no type information (mypy override in pyproject.toml)
import pytest

from generator import layout
from generator.errors import KvmnetError
from generator.model.guest import MAX_QUEUES, RINGS, GuestOffloads, HostOffloads
from generator.pipeline import Planned, artifacts_for, plan_profile
from generator.plan.guests import RESERVED_TAPS
from generator.plan.types import GuestNic, GuestPlan, Kind

pytestmark = pytest.mark.consumer

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
TEMPLATES = REPO / "templates" / "libvirt"
#: FACTS: q35 has no IDE, so the NoCloud seed's cdrom goes on SATA there.
SEED_BUS = {"q35": "sata", "pc": "ide"}
VALIDATE = libvirt.VIR_DOMAIN_DEFINE_VALIDATE

Xml = ET.Element


# --- building the bundled profiles, once -------------------------------------------------


@cache
def build(profile: Path) -> tuple[Planned, Mapping[str, str]]:
    """The plan and the libvirt XML (artifact path -> text) of one profile: every XML file
    of the tree is a domain or a network."""
    planned = plan_profile(profile)
    xml = {a.path: a.content.decode() for a in artifacts_for(planned) if a.path.endswith(".xml")}
    return planned, xml


def bundled(kind: str) -> list[tuple[str, str]]:
    """(label, text) of every bundled domain or network XML."""
    return [
        (f"{profile.stem}:{path}", text)
        for profile in PROFILES
        for path, text in sorted(build(profile)[1].items())
        if (kind == "domain") == (layout.host_of(path) is None)  # networks are the hosts'
    ]


def bundled_domain(wanted: Callable[[Xml], bool]) -> Xml:
    """The first bundled domain that has what a test needs, so no profile is named here."""
    for _, text in bundled("domain"):
        root = ET.fromstring(text)
        if wanted(root):
            return root
    pytest.fail("no bundled profile has a domain this test can use")


def text_of(root: Xml) -> str:
    return ET.tostring(root, encoding="unicode")


# --- the consumers -------------------------------------------------------------------------


def _quiet(_ctx: object, _error: object) -> None:
    """libvirt raises its errors as exceptions; its default handler also prints them."""


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    libvirt.registerErrorHandler(_quiet, None)
    # test:///default needs no daemon; its state is shared within the process, so every
    # definition below is undefined again (the driver also holds a domain "test" and a
    # network "default" of its own).
    connection = libvirt.open("test:///default")
    yield connection
    connection.close()
    libvirt.registerErrorHandler(None, None)


@contextmanager
def defined(conn: Any, kind: str, xml: str, flags: int | None = None) -> Iterator[Xml]:
    """Define `xml`, yield libvirt's own reading of it, undefine it."""
    if kind == "domain":
        obj = conn.defineXMLFlags(xml, VALIDATE if flags is None else flags)
    else:
        obj = conn.networkDefineXMLFlags(xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE if flags is None else flags)
    try:
        yield ET.fromstring(obj.XMLDesc())
    finally:
        obj.undefine()


def schema_check(tmp_path: Path, name: str, xml: str, kind: str) -> tuple[bool, str]:
    """virt-xml-validate's verdict on `xml` as a `kind` document, and what it said."""
    assert shutil.which("virt-xml-validate"), "virt-xml-validate is missing: apt-get install libvirt-clients"
    path = tmp_path / name
    path.write_text(xml)
    result = subprocess.run(
        ["virt-xml-validate", str(path), kind], capture_output=True, text=True, check=False, timeout=60
    )
    said = result.stdout + result.stderr
    ok = result.returncode == 0 and f"{path} validates" in said
    return ok, said


# --- comparing ------------------------------------------------------------------------------


def walk(root: Xml, prefix: str = "") -> Iterator[tuple[str, Xml]]:
    path = f"{prefix}/{root.tag}" if prefix else root.tag
    yield path, root
    for sub in root:
        yield from walk(sub, path)


def dropped(ours: Xml, theirs: Xml) -> list[str]:
    """What we wrote that libvirt's reading lacks: an element, an attribute or a text."""
    have: dict[str, list[Xml]] = {}
    for path, element in walk(theirs):
        have.setdefault(path, []).append(element)
    missing = []
    for path, element in walk(ours):
        text = (element.text or "").strip()
        if not any(
            element.attrib.items() <= other.attrib.items()
            and (not text or (other.text or "").strip() == text)
            for other in have.get(path, [])
        ):
            missing.append(f"{path} {element.attrib} {text!r}".rstrip(" '"))
    return missing


def attrs(element: Xml | None) -> dict[str, str]:
    return dict(element.attrib) if element is not None else {}


def compact(**values: int | None) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def child(root: Xml, path: str) -> Xml:
    found = root.find(path)
    assert found is not None, f"libvirt's definition has no {path}"
    return found


def check_guest(guest: GuestPlan, root: Xml) -> None:
    """libvirt's definition of `guest` holds exactly what the plan says."""
    assert root.get("type") == guest.virt_type
    assert root.findtext("name") == guest.name
    assert root.findtext("uuid") == guest.uuid
    assert attrs(child(root, "memory")) == {"unit": "KiB"}
    assert root.findtext("memory") == root.findtext("currentMemory") == str(guest.memory_kib)
    assert root.findtext("vcpu") == str(guest.vcpus)
    assert child(root, "os/type").get("machine") == guest.machine
    assert child(root, "os").get("firmware") == ("efi" if guest.firmware == "uefi" else None)
    cpu = root.find("cpu")
    # Host CPU passthrough only with KVM: software emulation cannot pass a CPU through.
    assert (cpu is not None and cpu.get("mode") == "host-passthrough") == (guest.virt_type == "kvm")

    disks = {str(d.get("device")): d for d in root.iterfind("devices/disk")}
    assert sorted(disks) == ["cdrom", "disk"]
    assert child(disks["disk"], "source").get("file") == guest.disk_path
    assert child(disks["disk"], "target").get("bus") == guest.disk_bus
    if guest.disk_bus == "scsi":
        assert root.find("devices/controller[@type='scsi'][@model='virtio-scsi']") is not None
    cdrom = disks["cdrom"]
    bus = SEED_BUS[guest.machine]
    assert child(cdrom, "source").get("file") == guest.seed_path
    assert child(cdrom, "target").get("bus") == bus
    assert cdrom.find("readonly") is not None
    # libvirt placed it on a controller of that bus, which it added to the machine.
    index = child(cdrom, "address").get("controller")
    assert root.find(f"devices/controller[@type='{bus}'][@index='{index}']") is not None

    interfaces = root.findall("devices/interface")
    assert [child(i, "mac").get("address") for i in interfaces] == [n.mac for n in guest.nics]
    for nic, interface in zip(guest.nics, interfaces, strict=True):
        check_nic(nic, interface)


def check_nic(nic: GuestNic, interface: Xml) -> None:
    assert interface.get("type") == nic.attach
    assert attrs(interface.find("source")) == {nic.attach: nic.source}
    assert child(interface, "model").get("type") == nic.model
    if nic.target is not None:
        assert child(interface, "target").get("dev") == nic.target
    assert [t.get("id") for t in interface.iterfind("vlan/tag")] == (
        [str(nic.vlan)] if nic.vlan is not None else []
    )
    driver = interface.find("driver")
    if nic.model == "virtio":
        assert driver is not None
        assert {k: v for k, v in driver.attrib.items() if k != "name"} == compact(
            queues=nic.queues, rx_queue_size=nic.rx_ring
        )
        assert attrs(driver.find("host")) == {k: "on" if on else "off" for k, on in nic.host_offloads}
        assert attrs(driver.find("guest")) == {k: "on" if on else "off" for k, on in nic.guest_offloads}
        assert attrs(interface.find("mtu")) == {"size": str(nic.mtu)}
    else:
        # Queues, rings, offloads and the guest MTU are virtio-net's: none is written.
        assert driver is None
        assert interface.find("mtu") is None
    bandwidth = interface.find("bandwidth")
    if nic.bandwidth is None:
        assert bandwidth is None
        return
    b = nic.bandwidth
    assert bandwidth is not None
    assert attrs(bandwidth.find("inbound")) == compact(
        average=b.inbound_average, peak=b.inbound_peak, burst=b.inbound_burst
    )
    assert attrs(bandwidth.find("outbound")) == compact(average=b.outbound_average, burst=b.outbound_burst)


# --- every bundled profile --------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_domains_validate_and_libvirt_keeps_what_the_plan_says(
    profile: Path, conn: Any, tmp_path: Path
) -> None:
    planned, xml = build(profile)
    guests = planned.plan.guests
    assert {p for p in xml if layout.host_of(p) is None} == {layout.domain_xml(g.name) for g in guests}
    for guest in guests:
        ours = xml[layout.domain_xml(guest.name)]
        ok, said = schema_check(tmp_path, f"{guest.name}.xml", ours, "domain")
        assert ok, said
        with defined(conn, "domain", ours) as theirs:
            assert dropped(ET.fromstring(ours), theirs) == [], guest.name
            check_guest(guest, theirs)


@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_networks_validate_and_libvirt_keeps_them(profile: Path, conn: Any, tmp_path: Path) -> None:
    planned, xml = build(profile)
    bridges = {
        (host.name, i.netdev_name)
        for host in planned.plan.hosts
        for i in host.interfaces
        if i.kind is Kind.BRIDGE
    }
    networks = {p: t for p, t in xml.items() if layout.host_of(p) is not None}
    # One libvirt network per host bridge, named after it.
    assert set(networks) == {layout.libvirt_network(h, b) for h, b in bridges}
    for host, bridge in sorted(bridges):
        path = layout.libvirt_network(host, bridge)
        ours = networks[path]
        ok, said = schema_check(tmp_path, f"{host}-{bridge}.xml", ours, "network")
        assert ok, said
        with defined(conn, "network", ours) as theirs:
            assert dropped(ET.fromstring(ours), theirs) == [], path
            assert theirs.findtext("name") == bridge
            assert attrs(theirs.find("forward")) == {"mode": "bridge"}
            assert attrs(theirs.find("bridge")) == {"name": bridge}


@pytest.mark.parametrize(
    ("element", "attribute", "value"),
    [
        ("devices/interface/mac", "address", "52:54:00:00:00:01"),
        ("devices/interface/driver", "queues", "3"),
        ("devices/interface/mtu", "size", "1280"),
        ("devices/interface/bandwidth/inbound", "average", "1000"),
        ("devices/disk[@device='cdrom']/target", "bus", "usb"),
        ("os/type", "machine", "pc-i440fx-7.2"),
    ],
)
def test_the_comparison_with_the_plan_catches_a_changed_value(
    element: str, attribute: str, value: str, conn: Any
) -> None:
    """Each check above can fail: one value changed after rendering is caught."""
    guest, root = next(
        (g, ET.fromstring(xml[layout.domain_xml(g.name)]))
        for p in PROFILES
        for planned, xml in [build(p)]
        for g in planned.plan.guests
        if g.nics and g.nics[0].model == "virtio" and g.nics[0].bandwidth is not None
    )
    child(root, element).set(attribute, value)
    with defined(conn, "domain", text_of(root)) as theirs:
        assert dropped(root, theirs) == []  # libvirt took it: only the plan knows it is wrong
        with pytest.raises(AssertionError):
            check_guest(guest, theirs)


def test_the_checks_above_saw_guests_and_networks() -> None:
    domains, networks = bundled("domain"), bundled("network")
    assert domains and networks, "no bundled profile has guests or bridges: the consumer checks saw nothing"
    nics = [n for p in PROFILES for g in build(p)[0].plan.guests for n in g.nics]
    assert {n.attach for n in nics} == {"bridge", "network"}
    assert any(n.model != "virtio" for n in nics) and any(n.model == "virtio" for n in nics)


# --- what libvirt would let through -------------------------------------------------------------


def test_unknown_attributes_are_refused_only_with_the_validate_flag(conn: Any, tmp_path: Path) -> None:
    root = bundled_domain(first_nic_is_virtio)
    driver = child(root, "devices/interface/driver")
    driver.set("queus", "4")  # a typo of queues
    bad = text_of(root)

    ok, said = schema_check(tmp_path, "bad.xml", bad, "domain")
    assert not ok and "fails to validate" in said

    with pytest.raises(libvirt.libvirtError) as refused:
        conn.defineXMLFlags(bad, VALIDATE)
    assert refused.value.get_error_code() == libvirt.VIR_ERR_XML_INVALID_SCHEMA
    assert "failed to validate against schema" in str(refused.value)

    # FACTS: without the flag the same XML is taken, and the attribute is gone.
    with defined(conn, "domain", bad, flags=0) as theirs:
        kept = child(theirs, "devices/interface/driver")
        assert "queus" not in kept.attrib
        assert kept.get("queues") == driver.get("queues")
        # ...which the read-back comparison the bundled profiles go through would catch.
        (lost,) = dropped(root, theirs)
        assert lost.startswith("domain/devices/interface/driver {") and "'queus': '4'" in lost


HOST = """\
hosts:
  hv1:
    network:
      ethernets:
        eno1: {}
      bridges:
        br0: {interfaces: [eno1]}
guests:
  g1:
    host: hv1
    interfaces:
"""


def refusals(tmp_path: Path, interface: str) -> list[str]:
    """The plan's messages for a guest with one interface (YAML flow mapping)."""
    profile = tmp_path / "p.yaml"
    profile.write_text(HOST + f"      - {interface}\n")
    with pytest.raises(KvmnetError) as info:
        plan_profile(profile)
    return [d.message for d in info.value.diagnostics]


def _set(path: str, attribute: str, value: str) -> Callable[[Xml], None]:
    """A change to the domain's first interface: `<path attribute=value>`, added if missing."""

    def change(root: Xml) -> None:
        interface = child(root, "devices/interface")
        element = interface.find(path)
        if element is None:
            element = ET.SubElement(interface, path)
        element.set(attribute, value)

    return change


def first_nic_has(path: str) -> Callable[[Xml], bool]:
    """Whether a domain's first interface has `path` (the changes above act on that one)."""

    def wanted(root: Xml) -> bool:
        interface = root.find("devices/interface")
        return interface is not None and interface.find(path) is not None

    return wanted


first_nic_is_virtio = first_nic_has("model[@type='virtio']")


@pytest.mark.parametrize(
    ("change", "kvmnet", "refusal"),
    [
        pytest.param(
            _set("driver", "queues", "300"),
            "{bridge: br0, queues: 300}",
            f"queues must be 1–{MAX_QUEUES} ",
            id="queues-300",
        ),
        pytest.param(
            _set("driver", "rx_queue_size", "128"),
            "{bridge: br0, rx-ring: 128}",
            f"rx-ring must be one of {', '.join(map(str, RINGS))} ",
            id="rx-ring-128",
        ),
        pytest.param(
            _set("driver", "rx_queue_size", "4096"),
            "{bridge: br0, rx-ring: 4096}",
            f"rx-ring must be one of {', '.join(map(str, RINGS))} ",
            id="rx-ring-4096",
        ),
        pytest.param(
            _set("driver", "tx_queue_size", "1024"),
            "{bridge: br0, tx-ring: 1024}",
            "'tx-ring' is refused here: tx_queue_size is honoured only for vhost-user backends",
            id="tx-ring-on-a-tap",
        ),
        pytest.param(
            _set("target", "dev", "guest1-uplink-00"),  # 15 bytes is the kernel's maximum
            "{bridge: br0, target: guest1-uplink-00}",
            "interface name 'guest1-uplink-00' is 16 bytes; Linux allows at most 15",
            id="tap-name-16-bytes",
        ),
    ],
)
def test_libvirt_takes_what_qemu_or_the_kernel_refuses_so_kvmnet_checks_it(
    change: Callable[[Xml], None], kvmnet: str, refusal: str, conn: Any, tmp_path: Path
) -> None:
    root = bundled_domain(first_nic_is_virtio)
    change(root)
    xml = text_of(root)
    ok, said = schema_check(tmp_path, "limit.xml", xml, "domain")
    assert ok, said
    with defined(conn, "domain", xml) as theirs:
        assert dropped(root, theirs) == []  # taken as written; the guest would fail at start
    messages = refusals(tmp_path, kvmnet)
    assert any(m.startswith(refusal) for m in messages), messages


def test_libvirt_drops_a_driver_on_a_non_virtio_model(conn: Any, tmp_path: Path) -> None:
    root = bundled_domain(first_nic_is_virtio)
    interface = child(root, "devices/interface")
    child(interface, "model").set("type", "e1000e")
    with defined(conn, "domain", text_of(root)) as theirs:
        # Even with VALIDATE: the queues are gone, silently.
        assert theirs.find("devices/interface/driver") is None
    (message,) = refusals(tmp_path, "{bridge: br0, model: e1000e, queues: 2}")
    assert message.startswith("queues need a virtio NIC; model e1000e has one queue"), message


def test_offloads_on_a_non_virtio_model_are_refused(tmp_path: Path) -> None:
    messages = refusals(tmp_path, "{bridge: br0, model: e1000e, offloads: {host: {tso4: false}}}")
    assert any(m.startswith("offloads are virtio-net's") for m in messages), messages


@pytest.mark.parametrize("prefix", [p for p in RESERVED_TAPS if p != "vif"])
def test_libvirt_renames_taps_with_its_own_prefixes(prefix: str, conn: Any, tmp_path: Path) -> None:
    # ("vif" is the prefix of libvirt's Xen driver; the test driver keeps it.)
    root = bundled_domain(first_nic_has("model"))
    _set("target", "dev", f"{prefix}7")(root)
    with defined(conn, "domain", text_of(root)) as theirs:
        assert child(theirs, "devices/interface/target").get("dev") != f"{prefix}7"
    messages = refusals(tmp_path, f"{{bridge: br0, target: {prefix}7}}")
    assert any("which libvirt silently replaces" in m for m in messages), messages


def test_floor_is_refused_by_libvirt_on_outbound_and_on_bridges_and_by_kvmnet_everywhere(
    conn: Any, tmp_path: Path
) -> None:
    def with_floor(direction: str, attach: str) -> str:
        root = bundled_domain(first_nic_has("bandwidth/inbound"))
        interface = child(root, "devices/interface")
        element = interface.find(f"bandwidth/{direction}")
        if element is None:
            element = ET.SubElement(child(interface, "bandwidth"), direction, average="1250")
        element.set("floor", "125")
        if attach == "network":  # the test driver's own network stands in for kvmnet's
            interface.set("type", "network")
            child(interface, "source").attrib = {"network": "default"}
        return text_of(root)

    for direction, attach, said in [
        ("outbound", "bridge", "'floor' attribute allowed only in <inbound> element"),
        ("inbound", "bridge", "floor attribute is not supported for this config"),
    ]:
        with pytest.raises(libvirt.libvirtError) as refused:
            conn.defineXMLFlags(with_floor(direction, attach), VALIDATE)
        assert said in str(refused.value)
    # On a network interface the definition is taken; libvirt's network driver refuses it
    # when the guest starts unless the network is NAT, routed, open or isolated, and kvmnet's
    # networks all forward to a host bridge.
    with defined(conn, "domain", with_floor("inbound", "network")) as theirs:
        assert child(theirs, "devices/interface/bandwidth/inbound").get("floor") == "125"

    (inbound,) = refusals(tmp_path, "{network: br0, bandwidth: {inbound: {average: 10Mbit, floor: 1Mbit}}}")
    assert inbound.startswith("floor is honoured by libvirt only on interfaces of NAT, routed or isolated")
    (outbound,) = refusals(tmp_path, "{bridge: br0, bandwidth: {outbound: {average: 10Mbit, floor: 1Mbit}}}")
    assert outbound.startswith("'floor' is refused here: libvirt guarantees a floor on inbound traffic only")


@pytest.mark.parametrize(
    "kind",
    ["domain", "network"],
)
def test_the_same_xml_can_be_defined_again(kind: str, conn: Any) -> None:
    """Applying the same output twice (or a changed profile) redefines, keeping the identity."""
    (_, xml), *_ = bundled(kind)

    def define() -> Any:
        if kind == "domain":
            return conn.defineXMLFlags(xml, VALIDATE)
        return conn.networkDefineXMLFlags(xml, libvirt.VIR_NETWORK_DEFINE_VALIDATE)

    first = define()
    try:
        again = define()
        assert again.UUIDString() == first.UUIDString()
    finally:
        first.undefine()


# --- bandwidth in libvirt's units ---------------------------------------------------------------------


def bandwidth_profile(tmp_path: Path, direction: str, key: str, value: str) -> tuple[Path, str]:
    """A one-guest profile with `direction: {key: value}` (an average added for a burst)."""
    lines = [f"            {key}: {value}"]
    if key != "average":
        lines.insert(0, "            average: 8Mbit")
    text = (
        HOST
        + "      - bridge: br0\n        bandwidth:\n"
        + f"          {direction}:\n"
        + "\n".join(lines)
        + "\n"
    )
    profile = tmp_path / "bandwidth.yaml"
    profile.write_text(text)
    return profile, text


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("average", "10Mbit", 1250),  # kilobytes (1000 bytes) per second: tc's kbps
        ("average", "1Gbit", 125000),
        ("average", "125MB/s", 125000),
        ("average", "8kbit", 1),
        ("burst", "1MiB", 1024),  # KiB
        ("burst", "64KiB", 64),
        ("burst", "1024B", 1),
    ],
)
def test_bandwidth_is_converted_exactly(
    direction: str, key: str, value: str, expected: int, conn: Any, tmp_path: Path
) -> None:
    profile, _ = bandwidth_profile(tmp_path, direction, key, value)
    planned = plan_profile(profile)
    (nic,) = planned.plan.guests[0].nics
    assert nic.bandwidth is not None
    assert getattr(nic.bandwidth, f"{direction}_{key}") == expected
    (domain,) = (a.content.decode() for a in artifacts_for(planned) if a.path.endswith("/domain.xml"))
    with defined(conn, "domain", domain) as theirs:
        assert child(theirs, f"devices/interface/bandwidth/{direction}").get(key) == str(expected)


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "average",
            "100kbit",
            "100000 bit/s is not a whole number of kilobytes per second (12.5), which is libvirt's unit "
            "(1 kB/s = 8 kbit/s); round it to a multiple of 8kbit",
        ),
        (
            "average",
            "10MiB/s",
            "83886080 bit/s is not a whole number of kilobytes per second (10485.76), which is libvirt's "
            "unit (1 kB/s = 8 kbit/s); round it to a multiple of 8kbit",
        ),
        ("burst", "1000B", "burst 1000 bytes is not a whole number of KiB, which is libvirt's unit"),
        ("burst", "1.5kB", "burst 1500 bytes is not a whole number of KiB, which is libvirt's unit"),
    ],
)
def test_inexact_bandwidth_is_refused_with_its_location(
    direction: str, key: str, value: str, message: str, tmp_path: Path
) -> None:
    profile, text = bandwidth_profile(tmp_path, direction, key, value)
    with pytest.raises(KvmnetError) as info:
        plan_profile(profile)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.endswith(f"{key}: {value}"))
    column = text.splitlines()[line - 1].index(value) + 1
    path = f"guests.g1.interfaces[0].bandwidth.{direction}.{key}"
    assert [d.format() for d in info.value.diagnostics] == [f"{profile}:{line}:{column}: {path}: {message}"]


# --- completeness: every element and attribute the templates can write is exercised --------------------

_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_XML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_STATEMENT = re.compile(r"\{%.*?%\}", re.S)
_DYNAMIC_NAME = re.compile(r"\{\{\s*([\w.]+)\s*\}\}(?==)")
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_TAG = re.compile(r"<(/?)([A-Za-z][\w-]*)([^<>]*?)(/?)>")
_ATTRIBUTE = re.compile(r"([\w$.-]+)=['\"]")

#: Attribute names a template computes, by element: everything they can be.
DYNAMIC: dict[tuple[str, str], tuple[str, ...]] = {
    ("host", "$key"): tuple(HostOffloads.model_fields),
    ("guest", "$key"): tuple(GuestOffloads.model_fields),
    ("source", "$nic.attach"): ("bridge", "network"),
}


def template_vocabulary(template: Path) -> set[tuple[str, str]]:
    """(element path, attribute or "") for everything the template can write, whatever the branch."""
    text = _JINJA_COMMENT.sub("", template.read_text())
    text = _XML_COMMENT.sub("", text)
    text = _DYNAMIC_NAME.sub(lambda m: f"${m.group(1)}", text)
    text = _EXPRESSION.sub("X", _STATEMENT.sub(" ", text))
    out: set[tuple[str, str]] = set()
    stack: list[str] = []
    for closing, name, body, empty in _TAG.findall(text):
        if closing:
            assert stack.pop() == name, f"{template.name}: </{name}> closes something else"
            continue
        path = "/".join([*stack, name])
        out.add((path, ""))
        for attribute in _ATTRIBUTE.findall(body):
            if attribute.startswith("$"):
                assert (name, attribute) in DYNAMIC, f"declare in DYNAMIC what {attribute} on <{name}> can be"
                out.update((path, a) for a in DYNAMIC[name, attribute])
            else:
                out.add((path, attribute))
        if not empty:
            stack.append(name)
    assert not stack, f"{template.name}: unclosed {stack}"
    return out


def output_vocabulary(documents: list[tuple[str, str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for _, text in documents:
        for path, element in walk(ET.fromstring(text)):
            out.add((path, ""))
            out.update((path, a) for a in element.attrib)
    return out


@pytest.mark.parametrize(
    ("template", "kind"),
    [("domain.xml.j2", "domain"), ("network.xml.j2", "network")],
)
def test_every_element_and_attribute_a_template_writes_is_in_a_bundled_profile(
    template: str, kind: str
) -> None:
    can = template_vocabulary(TEMPLATES / template)
    assert (f"{kind}", "") in can, "the template parser found nothing"
    missing = sorted(can - output_vocabulary(bundled(kind)))
    shown = [f"{path}@{attribute}" if attribute else path for path, attribute in missing]
    assert shown == [], f"{template} can write these, but no profile in profiles/ makes it: {shown}"


def test_the_template_parser_sees_branches_and_computed_names() -> None:
    can = template_vocabulary(TEMPLATES / "domain.xml.j2")
    interface = "domain/devices/interface"
    assert {
        (f"{interface}/vlan/tag", "id"),
        (f"{interface}/source", "bridge"),
        (f"{interface}/source", "network"),
        (f"{interface}/driver/host", "mrg_rxbuf"),
        (f"{interface}/driver", "rx_queue_size"),
        ("domain/os", "firmware"),
        ("domain/cpu", "mode"),
        ("domain/devices/controller", "model"),
    } <= can
