"""Hostile strings in profile fields can never execute in the generated bootstrap.sh.

Two halves:
1. Strings with shell syntax in them ($(...), backticks, ;, quotes, newlines, globs) are
   refused when the profile is read, with a located error, in every field that reaches
   a script: nothing is generated, so nothing can run.
2. Strings that are accepted can still be dangerous if a script ever ran one as a
   command. Every accepted free-form field gets a word that is also the name of a
   "canary" program placed first on PATH; the bootstrap is run for real (install, second
   run, dry run) and the canary must never fire, while the words must arrive verbatim
   in the installed files.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from generator import layout
from generator.cli import run
from generator.pipeline import build

pytestmark = pytest.mark.fuzz

HOSTILE = [
    "$(touch CANARY)",
    "`touch CANARY`",
    "a;touch CANARY",
    "a && touch CANARY",
    "a|touch CANARY",
    "a'b",
    'a"b',
    "a\nb",
    "a b",
    "*",
    "../../etc/passwd",
    "${IFS}",
    "a\\nb",
    "%n%s",
    "{{ 7*7 }}",
    "]]>&<",
    "\u202etxt.exe",
    "x" * 300,
]

#: (where in the profile, how a string is put there)
FIELDS: dict[str, Callable[[str], object]] = {
    "host name": lambda s: {"hosts": {s: {}}},
    "ethernet id": lambda s: {"hosts": {"hv1": {"network": {"ethernets": {s: {}}}}}},
    "set-name": lambda s: {
        "hosts": {"hv1": {"network": {"ethernets": {"e": {"match": {"name": "e"}, "set-name": s}}}}}
    },
    "bridge name": lambda s: {"hosts": {"hv1": {"network": {"bridges": {s: {}}}}}},
    "sysctl key": lambda s: {"hosts": {"hv1": {"kernel": {"sysctl": {s: "1"}}}}},
    "sysctl value": lambda s: {"hosts": {"hv1": {"kernel": {"sysctl": {"vm.swappiness": s}}}}},
    "kernel argument": lambda s: {"hosts": {"hv1": {"kernel": {"cmdline": [s]}}}},
    "kernel module": lambda s: {"hosts": {"hv1": {"kernel": {"modules": [s]}}}},
    "probe": lambda s: {"hosts": {"hv1": {"bootstrap": {"probe": s}}}},
    "tc device": lambda s: {
        "hosts": {"hv1": {"network": {"ethernets": {"e": {}}}, "tc": {s: {"qdisc": "fq"}}}}
    },
    "install mirror": lambda s: {"hosts": {"hv1": {"install": {"mirror": f"http://m/{s}"}}}},
    "overlay bridge": lambda s: {"overlays": {"o": {"vni": 5, "hosts": [], "bridge": s}}},
}


def yaml_text(data: object) -> str:
    import json

    return json.dumps(data)  # JSON is YAML, and escapes every character unambiguously


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_shell_syntax_is_refused_with_a_location(
    field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = tmp_path / "canary"
    for number, hostile in enumerate(HOSTILE):
        text = hostile.replace("CANARY", str(canary))
        profile = tmp_path / "p.yaml"
        profile.write_text(yaml_text(FIELDS[field](text)))
        out = tmp_path / f"out{number}"
        # In process, through the same entry point as the command (tests/test_bad_profiles.py
        # covers the separate interpreter).
        code = run(["build", str(profile), "-o", str(out)])
        stderr = capsys.readouterr().err
        if code == 0:
            # Accepted: then it must be harmless text (no shell syntax at all).
            assert not set(text) & set("$`;&|'\"\n \\*{}<>()"), (field, hostile)
            continue
        assert code == 1, (field, hostile, stderr)
        assert "Traceback" not in stderr
        first = stderr.splitlines()[0]
        assert first.startswith(f"{profile}:1:"), (field, hostile, first)
        assert not out.exists()
    assert not canary.exists()


#: Every free-form word that reaches the bootstrap is also a program on PATH.
CANARY_PROFILE = """
hosts:
  kvmcanaryhost:
    network:
      ethernets:
        kvmcanaryeth: {}
      bridges:
        kvmcanarybr:
          interfaces: [kvmcanaryeth]
          addresses: [192.0.2.20/24]
          routes: [{to: default, via: 192.0.2.1}]
    tc:
      kvmcanaryeth: {shape: {kind: tbf, rate: 100Mbit, burst: 64KiB}}
    kernel:
      modules: [kvmcanarymodule]
      cmdline: [kvmcanaryarg, kvmcanary=arg2]
"""
CANARY_WORDS = (
    "kvmcanaryhost",
    "kvmcanaryeth",
    "kvmcanarybr",
    "kvmcanarymodule",
    "kvmcanaryarg",
    "kvmcanary=arg2",
    "kvmcanary",
)


def test_accepted_words_are_never_run(tmp_path: Path) -> None:
    profile = tmp_path / "canary.yaml"
    profile.write_text(CANARY_PROFILE)
    out = tmp_path / "out"
    build(profile, out)
    fired = tmp_path / "fired"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for word in CANARY_WORDS:
        fake = bin_dir / word
        fake.write_text(f"#!/bin/sh\necho {word} >> {fired}\n")
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = out / layout.bootstrap("kvmcanaryhost")
    root = tmp_path / "root"
    root.mkdir()
    for args in (["--dry-run"], [], [], ["--dry-run"]):
        result = subprocess.run(
            [str(script), "--root", str(root), *args], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
    assert not fired.exists(), fired.read_text()
    assert "kvmcanaryarg\nkvmcanary=arg2\n" in (root / "etc/kvmnet/kernel-cmdline").read_text()
    assert "kvmcanarymodule" in (root / "etc/modules-load.d/kvmnet.conf").read_text()
    assert (root / "etc/kvmnet/tc/kvmcanaryeth.tc").exists()
    # The canary itself works: running one of the words does fire it.
    subprocess.run(["kvmcanaryeth"], env=env, check=True)
    assert fired.read_text() == "kvmcanaryeth\n"
