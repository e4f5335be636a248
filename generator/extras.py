"""kvmnet's optional extras (pyproject.toml's `optional-dependencies`): what the commands
that act on machines need beyond a plain install, and the refusal that names the extra.

A plain `pip install kvmnet` is the generator (build, validate, plan, schema, graph):
CI that only builds profiles should not pull pytest or a netlink library. The commands
below check here before they start, and say which extra to install instead of failing
with an ImportError half-way. tests/test_extras.py checks this table against pyproject.toml.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from generator.errors import UsageError


@dataclass(frozen=True)
class Package:
    module: str  # what is imported
    distribution: str  # what pip installs


PYTEST = Package("pytest", "pytest")
TESTINFRA = Package("testinfra", "pytest-testinfra")
XDIST = Package("xdist", "pytest-xdist")
PYROUTE2 = Package("pyroute2", "pyroute2")
LIBVIRT = Package("libvirt", "libvirt-python")

#: Extra -> what it installs. `verify` runs the generated suites (pytest with testinfra,
#: machines in parallel with xdist); `lab` reads namespaces over netlink and runs the suites
#: in them; `vm` drives libvirt and runs `kvmnet verify` on each machine it boots.
EXTRAS: dict[str, tuple[Package, ...]] = {
    "verify": (PYTEST, TESTINFRA, XDIST),
    "lab": (PYROUTE2, PYTEST, TESTINFRA, XDIST),
    "vm": (LIBVIRT, PYTEST, TESTINFRA, XDIST),
}


def _installed(module: str) -> bool:
    # find_spec, not import: `kvmnet verify` runs pytest in a child process, and importing
    # it here only to see that it is there would cost every run its start-up.
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the module (or a broken parent package)
        return False


def missing(extra: str) -> list[str]:
    """The distributions of `extra` that this interpreter cannot import."""
    return [p.distribution for p in EXTRAS[extra] if not _installed(p.module)]


def require(extra: str, note: str = "") -> None:
    """Raise a usage error (exit 2) naming the extra if any of its packages is missing.

    Exit 2 and not 70: nothing is wrong with kvmnet or the profile; like a missing program
    (`ip`, `qemu-img`, `disk-image-create`, which these commands also report with 2), the
    machine lacks something the user installs."""
    lacking = missing(extra)
    if lacking:
        raise UsageError.single(
            f"needs the {extra!r} extra: pip install 'kvmnet[{extra}]' (missing: {', '.join(lacking)}){note}"
        )
