"""Hostile strings in the free-text fields that kvmnet passes on verbatim.

Most fields of a profile are names, addresses or numbers and refuse anything odd (see
tests/test_hostile_strings.py, which also runs the bootstrap with a canary). A few are
free text by nature and end up in generated files: the comment of an SSH key, and the
string values of the extra cloud-config (here `final_message`, which cloud-init only
prints). Each hostile string is either refused with a located error and no traceback,
or read back by the consumer's own parser exactly as written: user-data by PyYAML
(cloud-init's parser), and the whole seed by `cloud-init schema`, and the seed image by
isoinfo. Nothing is ever executed by kvmnet, so the canary here is the exact read-back.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator import layout

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[1]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7kvmnetExampleKeyDoNotUseInProductionAAAA"

HOSTILE = {
    "command substitution": "$(touch /tmp/kvmnet-canary)",
    "backticks": "`touch /tmp/kvmnet-canary`",
    "newline and section": "a\n[Match]\nName=*",
    "percent and jinja": "%n%s {{ 7*7 }} {% raw %}",
    "xml": "]]>&<amp;&#x0;",
    "yaml markers": "---\n...\n- x: !!python/object:os.system",
    "nul": "a\x00b",
    "rtl mark": "\u202etxt.exe",
    "quotes": "'\"\\",
    "long": "x" * 5000,
    "cloud-init jinja header": "## template: jinja\n{{ v1 }}",
}


def _profile(tmp_path: Path, comment: str, message: str) -> Path:
    data: dict[str, Any] = {
        "hosts": {
            "hv1": {
                "network": {
                    "ethernets": {"eno1": {}},
                    "bridges": {"br0": {"interfaces": ["eno1"], "addresses": ["192.0.2.1/24"]}},
                }
            }
        },
        "guests": {
            "g1": {
                "host": "hv1",
                "interfaces": [{"bridge": "br0", "addresses": ["192.0.2.10/24"]}],
                "users": [{"name": "ops", "ssh-authorized-keys": [f"{KEY} {comment}"]}],
                "cloud-config": {"final_message": message},
            }
        },
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def kvmnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_free_text_is_refused_or_read_back_exactly(value: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = kvmnet("build", str(_profile(tmp_path, value, value)), "-o", str(out), "--seed-iso")
    assert "Traceback" not in result.stderr
    if result.returncode == 1:
        # refused: every problem located, nothing written
        assert f"{tmp_path / 'p.yaml'}:" in result.stderr and not out.exists(), result.stderr
        return
    assert result.returncode == 0, result.stderr
    seed = layout.guest_seed("g1")
    user_data = (out / seed.user_data).read_text()
    assert user_data.startswith("#cloud-config\n")
    data = yaml.safe_load(user_data)
    assert data["final_message"] == value
    keys = [k for u in data["users"] if isinstance(u, dict) for k in u.get("ssh_authorized_keys", [])]
    assert f"{KEY} {value}" in keys or any(k.startswith(KEY) and k.endswith(value) for k in keys), keys
    schema = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(out / seed.user_data)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    if shutil.which("isoinfo"):
        iso = subprocess.run(
            ["isoinfo", "-i", str(out / seed.image), "-R", "-x", "/user-data"],
            capture_output=True,
            check=True,
        )
        assert iso.stdout.decode() == user_data


def test_refusals_say_why(tmp_path: Path) -> None:
    """What kvmnet refuses among these, it refuses for a reason a user can act on."""
    refused = {}
    for name, value in HOSTILE.items():
        result = kvmnet("validate", str(_profile(tmp_path, value, value)))
        if result.returncode == 1:
            refused[name] = result.stderr.splitlines()[0]
    # An SSH key comment is one printable line: a newline would split the authorized_keys
    # entry, a NUL cut it.
    assert {"newline and section", "nul"} <= set(refused), refused
    assert all("guests.g1" in line for line in refused.values()), refused
