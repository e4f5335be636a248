"""`kvmnet schema` says what kvmnet accepts: every profile kvmnet takes passes it, its
defaults are values it allows, and on fuzzed scalars (rates, sizes, rings, durations,
VLAN ids...) it accepts what kvmnet's model accepts and refuses what it refuses.

Editors read YAML's own types (`9000` a number, `"9000"` a string); kvmnet reads every
scalar as the text written. So a value here is a YAML value: the schema judges it as is,
and kvmnet judges the profile that `yaml.safe_dump` writes with it (a string is quoted
there when YAML would read it as something else, as a user would have to quote it).

What a pattern cannot do is arithmetic: `0.5B` is not a whole byte, `4GB` of memory is
not whole MiB, `12bit` is not whole bytes per second, `210-200` runs backwards. There
the schema accepts and kvmnet refuses, and the test checks that kvmnet's reason is one
of those (`ARITHMETIC`). Floats are not drawn: JSON Schema's integer takes 5.0.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from generator.cli import run
from generator.errors import KvmnetError
from generator.load import parse
from generator.model.validate import validate

REPO = Path(__file__).resolve().parents[1]
#: Every profile the repository holds outside tests/bad (refused on purpose) and the
#: golden output (kvmnet's own files).
PROFILES = sorted(
    [
        *(REPO / "profiles").glob("*.yaml"),
        *(REPO / "tests" / "vm").glob("*.yaml"),
        *(REPO / "tests" / "lab").glob("*.yaml"),
        *(REPO / "tests" / "tc").glob("*.yaml"),
    ]
)
#: netplan's own examples, as a host's `network:` (tests/test_netplan_oracle.py).
NETPLAN_CASES = sorted((REPO / "tests" / "netplan_cases").rglob("*.yaml"))

#: Why kvmnet may refuse what the schema's patterns accept (see the module docstring).
ARITHMETIC = (
    "is not a whole number of",
    "must be more than zero",
    "is less than 64MiB",
    "runs backwards",
)


@functools.cache
def schema() -> dict[str, Any]:
    """What `kvmnet schema` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run(["schema"]) == 0
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def kvmnet_refusals(data: Any) -> list[tuple[str, str]]:
    """(key path, message) of every problem kvmnet's loader and model find in `data`."""
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    try:
        validate(parse(text.encode(), "fuzz.yaml"))
    except KvmnetError as error:
        return [(".".join(map(str, d.path)), d.message) for d in error.diagnostics]
    return []


def schema_refusals(data: Any) -> list[str]:
    return [error.message for error in validator().iter_errors(data)]


# --- (a) profiles kvmnet accepts pass the schema ----------------------------------------------


def test_every_profile_in_the_repository_passes() -> None:
    assert len(PROFILES) >= 10
    for path in PROFILES:
        data = yaml.safe_load(path.read_text())
        assert kvmnet_refusals(data) == [], path
        assert schema_refusals(data) == [], path


def test_every_netplan_case_kvmnet_takes_passes() -> None:
    taken = 0
    for path in NETPLAN_CASES:
        data = {"hosts": {"hv1": {"network": yaml.safe_load(path.read_text())["network"]}}}
        if not kvmnet_refusals(data):
            taken += 1
            assert schema_refusals(data) == [], path
    assert taken >= 40


# --- (b) defaults are values the schema allows -----------------------------------------------


def defaults(node: Any, where: str = "#") -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(JSON pointer, default, the rest of its schema) of every default in the schema."""
    if isinstance(node, dict):
        if "default" in node:
            yield where, node["default"], {k: v for k, v in node.items() if k != "default"}
        for key, value in node.items():
            yield from defaults(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from defaults(value, f"{where}/{index}")


def test_every_default_is_valid_against_its_own_schema() -> None:
    found = list(defaults(schema()))
    assert len(found) > 100
    for where, default, own in found:
        check = jsonschema.Draft202012Validator({**own, "$defs": schema()["$defs"]})
        assert not list(check.iter_errors(default)), (where, default)
    # Issue 12: these were strings whose defaults were numbers (an editor inserting the
    # default wrote an invalid value). Now they are written as a profile would be.
    spelled = {where.rsplit("/", 3)[-3] + "." + where.rsplit("/", 1)[-1]: d for where, d, _ in found}
    assert spelled["Disk.size"] == "20GiB"
    assert spelled["Bootstrap.rollback-after"] == "60s"


def test_spelled_defaults_mean_what_kvmnet_defaults_to() -> None:
    from generator.model.guest import Disk
    from generator.model.host import Bootstrap

    assert Disk().size == 20 * 2**30
    assert Bootstrap().rollback_after == 60_000_000


# --- (c) schema and kvmnet agree on fuzzed scalars -------------------------------------------

Place = Callable[[Any], dict[str, Any]]

#: Where each scalar type is tried (its key path, a valid value, the profile around it):
#: a profile valid to the model but for the value.
PLACES: dict[str, tuple[str, Any, Place]] = {
    "rate": (
        "guests.g1.interfaces.0.bandwidth.inbound.average",
        "10Gbit",
        lambda v: {
            "guests": {
                "g1": {
                    "host": "hv1",
                    "interfaces": [{"bridge": "br0", "bandwidth": {"inbound": {"average": v}}}],
                }
            }
        },
    ),
    "tc rate": (
        "hosts.hv1.tc.eno1.shape.rate",
        "1Gbit",
        lambda v: {"hosts": {"hv1": {"tc": {"eno1": {"shape": {"kind": "htb", "rate": v}}}}}},
    ),
    "burst": (
        "hosts.hv1.tc.eno1.police.burst",
        "1MiB",
        lambda v: {"hosts": {"hv1": {"tc": {"eno1": {"police": {"rate": "1Gbit", "burst": v}}}}}},
    ),
    "memory": ("guests.g1.memory", "4GiB", lambda v: {"guests": {"g1": {"host": "hv1", "memory": v}}}),
    "disk size": (
        "guests.g1.disk.size",
        "20GiB",
        lambda v: {"guests": {"g1": {"host": "hv1", "disk": {"size": v}}}},
    ),
    "latency": (
        "hosts.hv1.tc.eno1.shape.latency",
        "50ms",
        lambda v: {
            "hosts": {"hv1": {"tc": {"eno1": {"shape": {"kind": "tbf", "rate": "1Gbit", "latency": v}}}}}
        },
    ),
    "rollback-after": (
        "hosts.hv1.bootstrap.rollback-after",
        "60s",
        lambda v: {"hosts": {"hv1": {"bootstrap": {"rollback-after": v}}}},
    ),
    "forward-delay": (
        "hosts.hv1.network.bridges.br0.parameters.forward-delay",
        "15",
        lambda v: {"hosts": {"hv1": {"network": {"bridges": {"br0": {"parameters": {"forward-delay": v}}}}}}},
    ),
    "rx-ring": (
        "guests.g1.interfaces.0.rx-ring",
        512,
        lambda v: {"guests": {"g1": {"host": "hv1", "interfaces": [{"bridge": "br0", "rx-ring": v}]}}},
    ),
    "queues": (
        "guests.g1.interfaces.0.queues",
        "auto",
        lambda v: {"guests": {"g1": {"host": "hv1", "interfaces": [{"bridge": "br0", "queues": v}]}}},
    ),
    "guest mtu": (
        "guests.g1.interfaces.0.mtu",
        "auto",
        lambda v: {"guests": {"g1": {"host": "hv1", "interfaces": [{"bridge": "br0", "mtu": v}]}}},
    ),
    "guest vlan": (
        "guests.g1.interfaces.0.vlan",
        100,
        lambda v: {"guests": {"g1": {"host": "hv1", "interfaces": [{"bridge": "br0", "vlan": v}]}}},
    ),
    "vlan id": (
        "hosts.hv1.network.vlans.v.id",
        100,
        lambda v: {"hosts": {"hv1": {"network": {"vlans": {"v": {"id": v, "link": "eno1"}}}}}},
    ),
    "vlan range": (
        "hosts.hv1.network.bridges.br0.kvmnet.vlans.0",
        "100-200",
        lambda v: {"hosts": {"hv1": {"network": {"bridges": {"br0": {"kvmnet": {"vlans": [v]}}}}}}},
    ),
    "mtu": (
        "hosts.hv1.network.ethernets.eno1.mtu",
        9000,
        lambda v: {"hosts": {"hv1": {"network": {"ethernets": {"eno1": {"mtu": v}}}}}},
    ),
    "mtu or auto": (
        "hosts.hv1.network.bridges.br0.mtu",
        "auto",
        lambda v: {"hosts": {"hv1": {"network": {"bridges": {"br0": {"mtu": v}}}}}},
    ),
    "vni": (
        "overlays.o.vni",
        10,
        lambda v: {"overlays": {"o": {"vni": v, "hosts": ["hv1"], "bridge": "br0"}}},
    ),
    "port": (
        "overlays.o.port",
        4789,
        lambda v: {"overlays": {"o": {"vni": 10, "hosts": ["hv1"], "bridge": "br0", "port": v}}},
    ),
    "flag": (
        "hosts.hv1.network.ethernets.eno1.dhcp4",
        True,
        lambda v: {"hosts": {"hv1": {"network": {"ethernets": {"eno1": {"dhcp4": v}}}}}},
    ),
}

#: Seeds for the strings: what users write, right and wrong, per kind of value.
UNITS = (
    *("bit", "kbit", "Kbit", "mbit", "Mbit", "gbit", "Gbit", "GBIT", "Tbit", "Kibit", "mibit", "GiBit"),
    *("B/s", "kB/s", "KB/s", "MB/s", "GB/s", "MiB/s", "mB/s", "MB/S", "bps", "kbps", "Mbps"),
    *("B", "b", "kB", "KB", "kb", "Kb", "k", "K", "MB", "M", "m", "mb", "GB", "G", "g", "Gb", "TB", "T"),
    *("KiB", "MiB", "GiB", "TiB", "kib", "gib", "GIB", "Gibit"),
    *("us", "ms", "s", "msec", "sec", "m", "min", "h", "hr", "S", "MS"),
    *("auto", "none", ""),
)
WORDS = (
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "True",
    "YES",
    "oN",
    "nO",
    "ye",
    "yess",
    "t",
    "1",
    "0",
)
NUMBERS = ("0", "00", "1", "007", "8", "12", "64", "68", "100", "256", "512", "1024", "4094", "4095", "4096")
MORE_NUMBERS = ("16777215", "16777216", "65535", "65536", "0.5", "1.5", "0.0", "2.000", ".5", "5.", "1e3")
SPACE = ("", " ", "  ", "\t", "\n", "\u2003", "\x1c")
ALPHABET = "0123456789.+-/ kKmMgGtTiIbBsSuUnNaAoOyYeEfFlLrRhH\t\u2003\u0663\u00b2\u212a"


def scalars() -> Any:
    """YAML values near and far from valid (built on use: collection stays fast)."""
    from hypothesis import strategies as st

    number = st.one_of(
        st.sampled_from(NUMBERS + MORE_NUMBERS), st.from_regex(r"\A[+-]?[0-9]{1,7}(\.[0-9]{1,3})?\Z")
    )
    written = st.builds(
        lambda a, sign, n, b, unit, c: f"{a}{sign}{n}{b}{unit}{c}",
        st.sampled_from(SPACE),
        st.sampled_from(("", "", "", "+", "-")),
        number,
        st.sampled_from(("", "", " ", "\t")),
        st.sampled_from(UNITS),
        st.sampled_from(SPACE),
    )
    ranges = st.builds(lambda a, b: f"{a}-{b}", st.sampled_from(NUMBERS), st.sampled_from(NUMBERS))
    words = st.builds(
        lambda a, w, b: f"{a}{w}{b}", st.sampled_from(SPACE), st.sampled_from(WORDS), st.sampled_from(SPACE)
    )
    return st.one_of(
        written,
        written,
        ranges,
        words,
        st.text(alphabet=ALPHABET, max_size=12),
        st.integers(min_value=-5, max_value=70_000),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.sampled_from((None, True, False, 0, 1, 4094, 4095, 65_535, 65_536, 16_777_215, 256, 512, 1024)),
    )


def test_places_are_valid_but_for_the_value() -> None:
    for kind, (_, valid, place) in PLACES.items():
        assert kvmnet_refusals(place(valid)) == [], kind
        assert schema_refusals(place(valid)) == [], kind


def test_schema_and_kvmnet_agree_on_fuzzed_values() -> None:
    """Each drawn value is tried in every place: one example checks every type."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(scalars())
    def agree(value: Any) -> None:
        for kind, (path, _, place) in PLACES.items():
            data = place(value)
            theirs = schema_refusals(data)
            ours = kvmnet_refusals(data)
            assert all(where == path for where, _ in ours), (kind, value, ours)  # refused for the value
            if theirs and not ours:
                pytest.fail(f"{kind} {value!r}: kvmnet accepts, the schema refuses: {theirs}")
            if ours and not theirs:
                message = ours[0][1]
                assert any(reason in message for reason in ARITHMETIC), (
                    f"{kind} {value!r}: the schema accepts, kvmnet refuses: {message}"
                )

    agree()


def test_tx_ring_is_refused_by_both() -> None:
    """kvmnet takes no tx-ring (QEMU honours it for vhost-user only): neither does the schema."""
    for value in (256, 1024, "512", None):
        data = {"guests": {"g1": {"host": "hv1", "interfaces": [{"bridge": "br0", "tx-ring": value}]}}}
        assert schema_refusals(data)
        assert kvmnet_refusals(data) == [
            (
                "guests.g1.interfaces.0.tx-ring",
                "'tx-ring' is refused here: tx_queue_size is honoured only for vhost-user backends; "
                "with a tap and vhost-net QEMU caps it at 256 or refuses it. Leave it out.",
            )
        ]


def test_rollback_after_is_whole_seconds_from_5s_in_both() -> None:
    """A model fact (it was a plan rule once), so editors see it too."""

    def place(v: str) -> dict[str, Any]:
        return {"hosts": {"hv1": {"bootstrap": {"rollback-after": v}}}}

    for taken in ("5s", "60s", "5000ms", "0010s", "60.0s", "5000000us", " 7 s"):
        assert kvmnet_refusals(place(taken)) == [], taken
        assert schema_refusals(place(taken)) == [], taken
    for refused in ("4s", "5.5s", "2500ms", "4999999us", "0s", "1s"):
        assert kvmnet_refusals(place(refused)), refused
        assert schema_refusals(place(refused)), refused


def test_shape_keys_follow_its_kind_in_both() -> None:
    """ceil is htb's, latency tbf's: the model's tagged union, so the schema says it too."""

    def place(shape: dict[str, Any]) -> dict[str, Any]:
        return {"hosts": {"hv1": {"tc": {"eno1": {"shape": shape}}}}}

    for taken in (
        {"kind": "tbf", "rate": "1Gbit", "burst": "1MiB", "latency": "50ms"},
        {"kind": "htb", "rate": "1Gbit", "ceil": "2Gbit"},
    ):
        assert kvmnet_refusals(place(taken)) == [], taken
        assert schema_refusals(place(taken)) == [], taken
    for refused in (
        {"kind": "tbf", "rate": "1Gbit", "ceil": "2Gbit"},
        {"kind": "htb", "rate": "1Gbit", "latency": "50ms"},
        {"kind": "cbq", "rate": "1Gbit"},
        {"rate": "1Gbit"},
    ):
        assert kvmnet_refusals(place(refused)), refused
        assert schema_refusals(place(refused)), refused
