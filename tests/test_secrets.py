"""Secrets: never printed, never readable by others, not even for a moment.

- `kvmnet plan --json` shows that a password hash or a credential in the extra
  cloud-config is set, never its value;
- a plain password, in `passwd` or in the extra cloud-config, is refused without the
  error repeating it;
- files that carry credentials (user-data, seed.iso) are created 0600 from the first
  system call on: `strace` shows the `openat(..., O_CREAT, 0600)` that makes them, and no
  later chmod that widens them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from generator.plan.redact import HIDDEN

pytestmark = pytest.mark.consumer

REPO = Path(__file__).resolve().parents[1]
GUESTS = REPO / "profiles" / "guests.yaml"
PASSWORD = "hunter2-correct-horse"


def kvmnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def _with(extra: dict[str, object], tmp_path: Path) -> Path:
    data = yaml.safe_load(GUESTS.read_text())
    guest = next(iter(data["guests"].values()))
    guest.update(extra)
    profile = tmp_path / "p.yaml"
    profile.write_text(yaml.safe_dump(data))
    return profile


def test_plan_hides_password_hashes_and_credentials(tmp_path: Path) -> None:
    hashes = re.findall(r'passwd: "(\$[^"]+)"', GUESTS.read_text())
    assert hashes, "the bundled guests profile has a password hash to hide"
    token = "tok-" + "7" * 20
    profile = _with({"cloud-config": {"ca_certs": {"trusted": ["x"]}, "ntp": {"pools": [token]}}}, tmp_path)
    shown = kvmnet("plan", str(GUESTS), "--json")
    assert shown.returncode == 0, shown.stderr
    assert not any(h in shown.stdout for h in hashes)
    assert f'"passwd": "{HIDDEN}"' in shown.stdout
    # Values of keys that name credentials are hidden in the extra cloud-config as well.
    with_keys = _with({"cloud-config": {"chpasswd": {"expire": False}, "ntp": {"pools": [token]}}}, tmp_path)
    plan = kvmnet("plan", str(with_keys), "--json")
    assert plan.returncode == 0, plan.stderr
    assert '\\"chpasswd\\":\\"(hidden)\\"' in plan.stdout and token in plan.stdout
    assert kvmnet("plan", str(profile), "--json").returncode == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"users": [{"name": "ops", "passwd": PASSWORD}]},
        {"cloud-config": {"chpasswd": {"list": f"root:{PASSWORD}"}}},
        {"cloud-config": {"password": PASSWORD}},
    ],
    ids=["passwd", "chpasswd", "password"],
)
def test_plain_passwords_are_refused_without_repeating_them(extra: dict[str, object], tmp_path: Path) -> None:
    result = kvmnet("validate", str(_with(extra, tmp_path)))
    assert result.returncode == 1, result.stdout
    assert "plain" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_credential_files_are_created_private(tmp_path: Path) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: deps/apt-test.txt lists it")
    output, log = tmp_path / "out", tmp_path / "strace.log"
    subprocess.run(
        [
            *(strace, "-f", "-qq", "-o", str(log), "-e", "trace=openat,open,creat,chmod,fchmod,fchmodat"),
            *(sys.executable, "-m", "generator", "build", str(GUESTS), "-o", str(output), "--seed-iso"),
        ],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    calls = log.read_text().splitlines()
    private = [p for p in output.rglob("*") if p.name in ("user-data", "seed.iso")]
    assert private, "the guests profile writes user-data and seed images"
    for path in private:
        assert path.stat().st_mode & 0o777 == 0o600, path
        name = f'/{path.relative_to(output)}"'
        made = [i for i, c in enumerate(calls) if "openat(" in c and name in c and "O_CREAT" in c]
        assert len(made) == 1, f"{name}: created {len(made)} times"
        created = calls[made[0]]
        assert re.search(r", 0600\) += \d+$", created), created
        # The next mode change of that file descriptor in that process keeps it private.
        pid, fd = created.split()[0], created.rsplit("= ", 1)[1]
        changes = [c for c in calls[made[0] + 1 :] if c.startswith(pid) and f"fchmod({fd}," in c]
        assert changes and re.search(r"fchmod\(\d+, 0600\)", changes[0]), changes[:1]
