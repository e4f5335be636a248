"""The command line and the writer: exit codes, --check, atomic replacement, modes, determinism."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from generator import __version__, layout, write
from generator.cli import run
from generator.renderers.artifact import Artifact
from tests.support.cli import kvmnet
from tests.support.paused_build import PausedBuild

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "profiles" / "default.yaml"
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


#: diskimage-builder hook scripts of the generated elements (they must be executable)
HOOK = layout.elements_dir("[^/]+") + r"/[^/]+/(install|post-install|finalise|cleanup)\.d/"


def expected_mode(path: str) -> str:
    """Scripts run, secrets (user-data: password hashes, keys) stay private."""
    if path.endswith(f"/{layout.BOOTSTRAP}") or re.match(HOOK, path):
        return "0755"
    if path.endswith(("/user-data", "/seed.iso")):
        return "0600"
    return "0644"


def test_build_writes_tree_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(["build", str(DEFAULT), "-o", str(out)]) == 0
    files = snapshot(out)
    manifest = json.loads(files.pop(layout.MANIFEST)[0])
    assert manifest["generator"] == "kvmnet"
    assert manifest["version"] == __version__
    assert len(manifest["profile_sha256"]) == 64
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(files)
    import hashlib

    for path, (content, mode) in files.items():
        assert listed[path]["sha256"] == hashlib.sha256(content).hexdigest()
        assert listed[path]["mode"] == f"{mode:04o}" == expected_mode(path)
    assert layout.rootfs_file("hv1", layout.networkd_file("vx10010", "netdev")) in files
    assert "wrote" in capsys.readouterr().out


def test_no_profile_builds_the_bundled_default(tmp_path: Path) -> None:
    result = kvmnet("build", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / layout.host_dir("hv2")).is_dir()


def test_second_build_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    run(["build", str(DEFAULT), "-o", str(out)])
    inode = out.stat().st_ino
    capsys.readouterr()
    assert run(["build", str(DEFAULT), "-o", str(out)]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert out.stat().st_ino == inode


def test_check_reports_drift_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run(["build", str(DEFAULT), "-o", str(out), "--check"]) == 1  # nothing there yet
    assert not out.exists()
    run(["build", str(DEFAULT), "-o", str(out)])
    capsys.readouterr()
    assert run(["build", str(DEFAULT), "-o", str(out), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    edited, removed, remoded = (
        layout.rootfs_file("hv1", layout.networkd_file("eno1", "network")),
        layout.rootfs_file("hv2", layout.networkd_file("eno2", "link")),
        layout.rootfs_file("hv2", layout.networkd_file("eno1", "link")),
    )
    (out / edited).write_text((out / edited).read_text() + "MTUBytes=1400\n")
    (out / "stray.txt").write_text("hand-made\n")
    (out / removed).unlink()
    os.chmod(out / remoded, 0o600)
    before = snapshot(out)
    assert run(["build", str(DEFAULT), "-o", str(out), "--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"~ {edited}" in lines
    assert "- stray.txt" in lines
    assert f"+ {removed}" in lines
    assert f"m {remoded} 0600 -> 0644" in lines
    assert lines[-1] == f"4 file(s) would change in {out}"
    assert snapshot(out) == before


def test_failed_build_leaves_previous_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(["build", str(DEFAULT), "-o", str(out)])
    before = snapshot(out)
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT.read_text().replace("vni: 10010", "vni: 0"))
    result = kvmnet("build", str(bad), "-o", str(out))
    assert result.returncode == 1
    assert "VXLAN VNI must be 1–16777215" in result.stderr
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out"]


def test_crash_while_writing_leaves_previous_output_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run(["build", str(DEFAULT), "-o", str(out)])
    before = snapshot(out)
    real = write._write_tree

    def half_then_fail(base: Path, artifacts: Sequence[Artifact]) -> None:
        real(base, artifacts[: len(artifacts) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write, "_write_tree", half_then_fail)
    changed = DEFAULT.read_text().replace("vni: 10010", "vni: 10011")
    (tmp_path / "changed.yaml").write_text(changed)
    assert run(["build", str(tmp_path / "changed.yaml"), "-o", str(out)]) == 1
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".kvmnet-new-" in p.name]


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    precious = tmp_path / "etc"
    precious.mkdir()
    (precious / "passwd").write_text("root:x:0:0\n")
    assert run(["build", str(DEFAULT), "-o", str(precious)]) == 1
    assert "not empty and has no kvmnet manifest.json" in capsys.readouterr().err
    assert snapshot(precious) == {"passwd": (b"root:x:0:0\n", 0o644)}


def test_modes_do_not_depend_on_umask(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        ["sh", "-c", f"umask 077 && {sys.executable} -m generator build {DEFAULT} -o {out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modes = {path: mode for path, (_, mode) in snapshot(out).items()}
    assert {p: f"{m:04o}" for p, m in modes.items()} == {p: expected_mode(p) for p in modes}
    assert {"0755", "0644", "0600"} <= set(map(expected_mode, modes))
    assert out.stat().st_mode & 0o777 == 0o755


@pytest.mark.limits
@pytest.mark.parametrize("profile", PROFILES, ids=[p.stem for p in PROFILES])
def test_output_is_identical_across_hash_seeds(profile: Path, tmp_path: Path) -> None:
    trees = []
    for seed in ("0", "12345"):
        out = tmp_path / f"out{seed}"
        result = kvmnet("build", str(profile), "-o", str(out), env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        trees.append(snapshot(out))
    assert trees[0] == trees[1]


def test_validate_plan_schema_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", str(DEFAULT)]) == 0
    assert "ok (2 host(s), 1 overlay(s), 2 guest(s))" in capsys.readouterr().out
    assert run(["plan", str(DEFAULT), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert list(plan["hosts"]) == ["hv1", "hv2"]
    assert plan["overlays"]["tenant"]["mtu"] == 8950
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kvmnet {__version__}"


def test_plan_json_is_keyed_by_name_like_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    """`jq .hosts.hv2` failed: hosts and guests were arrays (issue 12)."""
    assert run(["plan", str(DEFAULT), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert sorted(plan) == ["guests", "hosts", "overlays", "warnings"]
    hv2 = plan["hosts"]["hv2"]
    assert "name" not in hv2  # the key says it
    assert hv2["interfaces"]["vx10010"]["mtu"] == 8950
    assert hv2["interfaces"]["mgmt100"]["vlan_id"] == 100
    assert hv2["tc"]["eno2"]["shape"]["kind"] == "tbf"
    assert plan["guests"]["web2"]["host"] == "hv2"
    assert plan["guests"]["web2"]["nics"][0]["queues"] == 4
    assert [m["host"] for m in plan["overlays"]["tenant"]["members"]] == ["hv1", "hv2"]
    assert plan["warnings"] == []


def test_plan_json_warnings_are_located_as_stderr_shows_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings had `"location": null` though stderr located them (issue 12)."""
    text = DEFAULT.read_text().replace(
        "        rx-ring: 1024\n", "        rx-ring: 1024\n        queues: 16\n", 1
    )
    line = text.splitlines().index("        queues: 16") + 1
    profile = tmp_path / "p.yaml"
    profile.write_text(text)
    assert run(["plan", str(profile), "--json"]) == 0
    captured = capsys.readouterr()
    [warning] = json.loads(captured.out)["warnings"]
    assert warning == {
        "location": f"{profile}:{line}:17",
        "path": "guests.web1.interfaces[0].queues",
        "message": warning["message"],
    }
    assert warning["message"].startswith("16 queue pairs for 4 vCPUs")
    assert (
        captured.err
        == f"{profile}:{line}:17: guests.web1.interfaces[0].queues: warning: {warning['message']}\n"
    )


def test_plan_json_hides_secrets_before_names_become_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A guest named like a secret field (`passwd`) is shown, not hidden as a password."""
    profile = tmp_path / "p.yaml"
    profile.write_text(DEFAULT.read_text().replace("  web2:\n", "  passwd:\n"))
    assert run(["plan", str(profile), "--json"]) == 0
    guests = json.loads(capsys.readouterr().out)["guests"]
    assert guests["passwd"]["host"] == "hv2"
    assert guests["passwd"]["users"][0]["passwd"] is None


def test_plan_prints_tables_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """`kvmnet plan` demanded --json (issue 12); it now shows tables for people."""
    assert run(["plan", str(DEFAULT)]) == 0
    rows = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    for expected in (
        "host hv1",
        "device kind MTU underlay chain MTU from",
        "eno2 ether, port of br-guest 1500 eno2 1500 configured",
        "mgmt100 vlan 100 1500 eno2 1500 > br-guest 1500 > mgmt100 1500 kernel: inherits br-guest",
        "vx10010 vxlan 10010 8950 eno1 9000 > vx10010 8950 overlay tenant: eno1 9000 - 50 allows 8950",
        "host hv2",
        "overlays",
        "tenant 10010 vx10010 br-tenant 8950 hv1 192.0.2.11 eno1",
        "hv2 192.0.2.12 eno1",
        "guests",
        "guest NIC on MTU queues rx ring inbound outbound",
        "web1 (hv1) eth0 virtio br-tenant 8950 4 1024 1Gbit peak 2Gbit burst 1MiB 1Gbit burst 1MiB",
    ):
        assert expected in rows, (expected, rows)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 2
    assert run(["frobnicate"]) == 2
    assert run(["build", "--seed-iso", "--frob"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_schema_accepts_every_bundled_profile(capsys: pytest.CaptureFixture[str]) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test dependency")
    assert run(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for profile in PROFILES:
        # Editors see YAML 1.1 types (quoted MACs, numbers as numbers): so does this check.
        errors = list(validator.iter_errors(yaml.safe_load(profile.read_text())))
        assert not errors, (profile.name, [e.message for e in errors])
    bad = yaml.safe_load("hosts: {hv1: {network: {vlans: {v: {id: 4095, link: x}}}}}")
    assert list(validator.iter_errors(bad))


def test_missing_profile_is_a_located_error(tmp_path: Path) -> None:
    result = kvmnet("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"{tmp_path / 'nope.yaml'}:1:1: cannot read profile: No such file or directory"
    )


def test_line_100_is_printed_as_written(tmp_path: Path) -> None:
    """rich turned `:100:` into an emoji (found by tests/test_fuzz.py)."""
    profile = tmp_path / "p.yaml"
    profile.write_text("hosts:\n" + "#\n" * 97 + "  hv1:\n    network: 5\n")
    result = kvmnet("validate", str(profile))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{profile}:100:14: hosts.hv1.network: expected a mapping"), result.stderr


def test_concurrent_builds_of_one_output_refuse_each_other_and_siblings_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-o build/a` and `-o build/b` at the same time refused each other: the lock was
    taken on the output's parent (issue 12). A real build is held, mid-way through
    writing `build/a`, while two others run."""
    parent = tmp_path / "build"
    held = PausedBuild("writing", "build", str(DEFAULT), "-o", str(parent / "a"))
    try:
        held.reached()
        assert run(["build", str(DEFAULT), "-o", str(parent / "b")]) == 0
        assert run(["build", str(DEFAULT), "-o", str(parent / "a")]) == 1
        assert capsys.readouterr().err.splitlines()[0] == (
            f"{parent / 'a'}: another kvmnet build (process {held.process.pid}) is writing this output "
            "directory; wait for it to finish, or choose another output directory"
        )
    finally:
        code, _, err = held.finish()
    assert code == 0, err
    assert snapshot(parent / "a") == snapshot(parent / "b")
    assert sorted(p.name for p in parent.iterdir()) == ["a", "b"]  # no lock file or staging left


def test_check_uses_the_options_the_output_was_built_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`build --check` forgot `--seed-iso` and called the seed images drift (issue 12)."""
    out = tmp_path / "out"
    assert run(["build", str(DEFAULT), "-o", str(out), "--seed-iso"]) == 0
    assert json.loads((out / layout.MANIFEST).read_text())["options"] == {"seed_iso": True}
    files = len(snapshot(out))
    capsys.readouterr()
    note = f"--seed-iso: as {out / layout.MANIFEST} records (--no-seed-iso leaves the seed images out)"
    assert run(["build", str(DEFAULT), "-o", str(out), "--check"]) == 0
    assert capsys.readouterr().out.splitlines() == [note, f"{out} is up to date ({files} files)"]
    # build does what its --check says: the seeds stay
    assert run(["build", str(DEFAULT), "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        note,
        f"{out} is up to date ({files} files); nothing written",
    ]
    # asked otherwise, the check compares with that, and says the output was built otherwise
    assert run(["build", str(DEFAULT), "-o", str(out), "--check", "--no-seed-iso"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"--no-seed-iso: {out / layout.MANIFEST} records a build with --seed-iso",
        f"- {layout.guest_seed('web1').image}",
        f"- {layout.guest_seed('web2').image}",
        f"~ {layout.MANIFEST}",
        f"- {layout.vagrant_seed('hv1').image}",
        f"- {layout.vagrant_seed('hv2').image}",
        f"5 file(s) would change in {out}",
    ]
    plain = tmp_path / "plain"
    assert run(["build", str(DEFAULT), "-o", str(plain)]) == 0
    capsys.readouterr()
    assert run(["build", str(DEFAULT), "-o", str(plain), "--check", "--seed-iso"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"--seed-iso: {plain / layout.MANIFEST} records a build without it"
    )


def test_diff_shows_text_changes_as_a_unified_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`build --check` only listed files (issue 12); `--diff` shows what changed in them."""
    out = tmp_path / "out"
    assert run(["build", str(DEFAULT), "-o", str(out)]) == 0
    network = layout.rootfs_file("hv1", layout.networkd_file("mgmt100", "network"))
    lines = (out / network).read_text().splitlines()
    (out / network).write_text("\n".join([*lines[:-1], "MTUBytes=1400", lines[-1]]) + "\n")
    (out / "stray.txt").write_text("hand-made\n")
    (out / layout.INVENTORY).write_bytes(b"\0binary")
    before = snapshot(out)
    capsys.readouterr()
    assert run(["build", str(DEFAULT), "-o", str(out), "--diff"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"~ {network}",
        f"--- a/{network}",
        f"+++ b/{network}",
        f"@@ -{len(lines) - 3},5 +{len(lines) - 3},4 @@",
        *(f" {line}" for line in lines[-4:-1]),
        "-MTUBytes=1400",
        f" {lines[-1]}",
        f"~ {layout.INVENTORY}",
        f"Binary files a/{layout.INVENTORY} and b/{layout.INVENTORY} differ",
        "- stray.txt",
        "--- a/stray.txt",
        "+++ /dev/null",
        "@@ -1 +0,0 @@",
        "-hand-made",
        f"3 file(s) would change in {out}",
    ]
    assert snapshot(out) == before
