"""NoCloud seed images (`kvmnet build --seed-iso`), read back by independent readers.

For every guest of every bundled profile (profiles/*.yaml), built through the real command line:

- `isoinfo -d` (genisoimage) finds the volume id `cidata` and `blkid` (what cloud-init's NoCloud
  datasource uses to find its seed) the label `cidata` on an iso9660 file system;
- the image holds exactly user-data, meta-data and network-config, and each, extracted by
  isoinfo under its Rock Ridge and its Joliet name, is byte-equal to the file the same build
  wrote next to it;
- two builds in different environments (PYTHONHASHSEED, TZ: pycdlib stamps records with the
  local time, umask) give byte-identical images, equal to the in-process rendering too;
- the images are written with mode 0600 (they hold user-data) whatever the umask.

A control shows the TZ variation is a real test: pycdlib left to the local clock, even with
time itself frozen, writes different bytes under TZ=Asia/Tokyo and TZ=UTC.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from generator import layout
from generator.layout import NOCLOUD_FILES as FILES
from generator.pipeline import Planned, artifacts_for, plan_profile
from generator.renderers.artifact import MODE_SECRET
from generator.renderers.seed import LABEL
from tests.support.cli import kvmnet

pytestmark = pytest.mark.consumer

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
TIMEOUT = 60
#: Two environments as different as one machine allows (the date cannot be varied).
ENVIRONMENTS = (
    ({"PYTHONHASHSEED": "1", "TZ": "Asia/Tokyo"}, 0o000),
    ({"PYTHONHASHSEED": "4242", "TZ": "UTC"}, 0o077),
)


@functools.cache
def planned(profile: Path) -> Planned:
    return plan_profile(profile)


WITH_GUESTS = [p for p in PROFILES if planned(p).plan.guests]
GUESTS = [
    pytest.param(p, g.name, id=f"{p.stem}/{g.name}") for p in WITH_GUESTS for g in planned(p).plan.guests
]


@pytest.fixture(scope="session")
def isoinfo() -> str:
    """genisoimage's isoinfo. Missing in CI is a failure: .ci/run installs it."""
    found = shutil.which("isoinfo")
    if found is None:
        pytest.fail("isoinfo is not installed (apt-get install genisoimage; deps/apt-test.txt lists it)")
    return found


@dataclass(frozen=True)
class Builds:
    """The output trees of each ENVIRONMENTS build, by profile."""

    trees: Mapping[Path, tuple[Path, ...]]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    trees: dict[Path, tuple[Path, ...]] = {}
    for profile in WITH_GUESTS:
        outs = []
        for number, (env, umask) in enumerate(ENVIRONMENTS):
            out = tmp_path_factory.mktemp(f"seed-{profile.stem}-{number}") / "out"
            old = os.umask(umask)  # inherited by the kvmnet process
            try:
                result = kvmnet("build", str(profile), "-o", str(out), "--seed-iso", env=env)
            finally:
                os.umask(old)
            assert result.returncode == 0, result.stderr
            outs.append(out)
        trees[profile] = tuple(outs)
    return Builds(trees)


def test_bundled_profiles_have_guests() -> None:
    """Guard: the tests below are parametrized by guest and must not go empty."""
    assert GUESTS


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, timeout=TIMEOUT, check=False)


@pytest.mark.parametrize(("profile", "guest"), GUESTS)
def test_seed_reads_back(profile: Path, guest: str, builds: Builds, isoinfo: str) -> None:
    tree = builds.trees[profile][0]
    seed = layout.guest_seed(guest)
    image = tree / seed.image

    described = run(isoinfo, "-d", "-i", str(image))
    assert described.returncode == 0, described.stderr.decode()
    header = described.stdout.decode()
    assert f"Volume id: {LABEL}\n" in header and LABEL == "cidata"
    assert "Rock Ridge signatures" in header and "Joliet" in header, header

    probed = run("blkid", "-p", "-o", "export", str(image))  # util-linux, essential on Debian
    assert probed.returncode == 0, probed.stderr.decode()
    tags = dict(line.split("=", 1) for line in probed.stdout.decode().splitlines() if "=" in line)
    assert (tags.get("LABEL"), tags.get("TYPE")) == ("cidata", "iso9660"), tags

    listing = run(isoinfo, "-i", str(image), "-R", "-f")
    assert listing.returncode == 0, listing.stderr.decode()
    assert sorted(listing.stdout.decode().split()) == sorted(f"/{name}" for name in FILES)

    for name in FILES:
        written = (tree / seed.nocloud(name)).read_bytes()
        for extension in ("-R", "-J"):  # Rock Ridge and Joliet names
            extracted = run(isoinfo, "-i", str(image), extension, "-x", f"/{name}")
            assert extracted.returncode == 0, extracted.stderr.decode()
            assert extracted.stdout == written, f"{name} ({extension})"


@pytest.mark.parametrize("profile", WITH_GUESTS, ids=[p.stem for p in WITH_GUESTS])
def test_seed_is_reproducible(profile: Path, builds: Builds) -> None:
    """Same bytes from every environment, and from this process's own rendering."""
    without = {a.path for a in artifacts_for(planned(profile))}
    rendered = {
        a.path: a.content
        for a in artifacts_for(planned(profile), frozenset({"seed-iso"}))
        if a.path not in without
    }
    plan = planned(profile).plan
    # Guests' seeds, and each host's seed for Vagrant (read back in tests/test_vagrant.py)
    assert sorted(rendered) == sorted(
        [layout.guest_seed(g.name).image for g in plan.guests]
        + [layout.vagrant_seed(h.name).image for h in plan.hosts]
    )
    for path, content in rendered.items():
        images = [(tree / path).read_bytes() for tree in builds.trees[profile]]
        assert all(image == content for image in images), path


@pytest.mark.parametrize("profile", WITH_GUESTS, ids=[p.stem for p in WITH_GUESTS])
def test_seed_is_private(profile: Path, builds: Builds) -> None:
    """0600 from every build, including the one run with umask 000."""
    for tree in builds.trees[profile]:
        for guest in planned(profile).plan.guests:
            image = tree / layout.guest_seed(guest.name).image
            assert image.stat().st_mode & 0o7777 == MODE_SECRET, image


#: pycdlib under a frozen time.time() but the real local time (what kvmnet's fixed clock avoids).
LOCAL_CLOCK = """
import io, sys, time, types
import pycdlib, pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib

clock = types.SimpleNamespace(
    time=lambda: 1_700_000_000.0, localtime=time.localtime, gmtime=time.gmtime, strftime=time.strftime
)
for module in (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib):
    module.time = clock
iso = pycdlib.PyCdlib()
iso.new(interchange_level=3, rock_ridge="1.09", vol_ident="cidata")
iso.add_fp(io.BytesIO(b"x"), 1, "/X.;1", rr_name="x")
out = io.BytesIO()
iso.write_fp(out)
sys.stdout.buffer.write(out.getvalue())
"""


def test_time_zone_changes_pycdlib_output() -> None:
    """Control: the TZ difference between the two builds above would show if the clock leaked."""
    images = []
    for env, _ in ENVIRONMENTS:
        result = subprocess.run(
            [sys.executable, "-c", LOCAL_CLOCK],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            env={**os.environ, **env},
        )
        assert result.returncode == 0, result.stderr.decode()
        images.append(result.stdout)
    assert images[0] != images[1]
