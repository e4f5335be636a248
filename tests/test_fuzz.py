"""Property-based fuzzing of `kvmnet validate` and `kvmnet build` through the CLI entry point.

Inputs come from two sources:
- profiles generated from kvmnet's own JSON Schema (`kvmnet schema`) by hypothesis-jsonschema:
  mostly valid shapes with arbitrary values;
- the bundled profiles, mutated: keys deleted, values replaced by other types, numbers
  pushed out of range, random unicode and huge strings put in, lists emptied or grown,
  and the YAML text itself cut or spliced.

Whatever the input, a run ends in exactly one of two ways:
- exit 0, and the output directory is a complete tree whose manifest matches every file;
- exit 1 with errors that each name `file:line:col` (or the file, for whole-file problems),
  a summary line, no traceback, and no output directory at all;
and never takes more than 10 s. Exit 70 (kvmnet's "internal error") is a bug.

The default run is seeded and deterministic (`derandomize`), a few thousand examples in
all (marker `fuzz`); `pytest -m fuzz_deep` runs many more with fresh randomness. The
strategies are built lazily (`st.deferred`, caches): collecting this module costs nothing
until a test draws from them. Anything found becomes a case
in tests/bad/ or a test of its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import layout
from generator.cli import run as kvmnet

pytestmark = pytest.mark.fuzz

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "profiles").glob("*.yaml"))
TIME_LIMIT_S = 10.0
#: Examples in the default (CI) run, 2000 in all (KVMNET_FUZZ_SCALE=0.1 for a quick look),
#: and per source under `-m fuzz_deep`.
SCALE = float(os.environ.get("KVMNET_FUZZ_SCALE", "1"))
SCHEMA_EXAMPLES, MUTATED_EXAMPLES, SPLICED_EXAMPLES = (max(1, int(n * SCALE)) for n in (100, 900, 1000))
FUZZ_EXAMPLES = int(os.environ.get("KVMNET_FUZZ_DEEP", "20000"))

LOCATED = re.compile(r"^(?P<file>[^:\n]+):(?:(?P<line>\d+):(?P<col>\d+):)? ")
SUMMARY = re.compile(r"^kvmnet: (\d+) problems?; nothing was written$")


def _settings(examples: int, deterministic: bool) -> settings:
    return settings(
        max_examples=examples,
        derandomize=deterministic,
        database=None,
        deadline=None,  # the 10 s limit is checked below, on the CLI run alone
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


DEEP = _settings(FUZZ_EXAMPLES, deterministic=False)


# --- running kvmnet and judging the outcome ---------------------------------------------


def _cli(*argv: str) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = kvmnet(list(argv))
    return code, out.getvalue(), err.getvalue(), time.perf_counter() - started


def _manifest_matches(output: Path) -> None:
    manifest = json.loads((output / layout.MANIFEST).read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {
        str(p.relative_to(output)) for p in output.rglob("*") if p.is_file() and p.name != layout.MANIFEST
    }
    assert on_disk == set(listed), f"manifest and files differ: {sorted(on_disk ^ set(listed))[:5]}"
    for path, entry in listed.items():
        digest = hashlib.sha256((output / path).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{path}: content differs from the manifest"


def _errors_are_clean(profile: Path, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "exit 1 without saying why"
    match = SUMMARY.match(lines[-1])
    assert match, f"no summary line: {lines[-1]!r}"
    located = [line for line in lines[:-1] if (m := LOCATED.match(line)) and m["file"] == str(profile)]
    # each problem starts with its location; continuation lines (an MTU's arithmetic) follow it
    unlocated = [line for line in lines[:-1] if line not in located]
    assert len(located) >= int(match[1]), (
        f"{int(match[1]) - len(located)} problem(s) without a location: {unlocated}"
    )


def check_one(text: str, command: str = "build") -> None:
    """Write `text` as a profile, run kvmnet on it, and judge the outcome."""
    with tempfile.TemporaryDirectory(prefix="kvmnet-fuzz-") as scratch:
        profile = Path(scratch) / "profile.yaml"
        profile.write_text(text, encoding="utf-8", errors="surrogatepass")
        output = Path(scratch) / "output"
        argv = (
            ["build", str(profile), "-o", str(output)] if command == "build" else ["validate", str(profile)]
        )
        code, _, stderr, seconds = _cli(*argv)
        assert seconds <= TIME_LIMIT_S, f"{command} took {seconds:.1f} s"
        assert code in (0, 1), f"exit {code}:\n{stderr}\n--- profile ---\n{text[:3000]}"
        if code == 1:
            _errors_are_clean(profile, stderr)
            if command == "build":
                assert not output.exists(), "a failed build left an output directory"
        elif command == "build":
            _manifest_matches(output)


# --- profiles from the schema -------------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    code, stdout, stderr, _ = _cli("schema")
    assert code == 0, stderr
    schema: dict[str, Any] = json.loads(stdout)
    schema.pop("$schema", None)
    return schema


def _from_schema() -> st.SearchStrategy[Any]:
    from hypothesis_jsonschema import from_schema  # slow to import: only when drawn from

    return from_schema(_schema())


def _as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@_settings(SCHEMA_EXAMPLES, deterministic=True)
@given(st.deferred(_from_schema))
def test_schema_profiles_build_or_fail_cleanly(profile: dict[str, Any]) -> None:
    check_one(_as_yaml(profile))


# --- mutated bundled profiles ---------------------------------------------------------------


@functools.cache
def _bundled() -> tuple[Any, ...]:
    return tuple(yaml.safe_load(p.read_text()) for p in PROFILES)


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000),
    st.just("9" * 400),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.sampled_from(["", " ", "auto", "0", "-1", "65536", "1e309", "0x10", "yes", "~", "\u202e", "\x00"]),
)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*here, index))
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> str:
    root = json.loads(json.dumps(draw(st.sampled_from(_bundled()))))  # a deep copy
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(root) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(root, path), path[-1]
        action = draw(st.sampled_from(["delete", "replace", "rename", "duplicate"]))
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(ODD_VALUES)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=30))] = parent.pop(key)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(parent[key])
    return _as_yaml(root)


@_settings(MUTATED_EXAMPLES, deterministic=True)
@given(mutated())
def test_mutated_profiles_build_or_fail_cleanly(text: str) -> None:
    check_one(text)


@st.composite
def spliced(draw: st.DrawFn) -> str:
    """The YAML text itself damaged: cut, characters inserted or removed."""
    text = draw(st.sampled_from([p.read_text() for p in PROFILES]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        action = draw(st.sampled_from(["cut", "insert", "remove"]))
        if action == "cut":
            text = text[:at]
        elif action == "insert":
            text = text[:at] + draw(st.text(min_size=1, max_size=5)) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=20)) :]
    return text


@_settings(SPLICED_EXAMPLES, deterministic=True)
@given(spliced())
def test_damaged_yaml_validates_or_fails_cleanly(text: str) -> None:
    check_one(text, command="validate")


# --- many more, on request -------------------------------------------------------------------

FUZZ: list[tuple[str, Callable[[], st.SearchStrategy[Any]]]] = [
    ("schema", lambda: _from_schema().map(_as_yaml)),
    ("mutated", mutated),
    ("spliced", spliced),
]


@pytest.mark.fuzz_deep
@pytest.mark.parametrize("source", [name for name, _ in FUZZ])
def test_fuzz_deep(source: str) -> None:
    strategy = dict(FUZZ)[source]()

    @DEEP
    @given(strategy)
    def one(text: str) -> None:
        check_one(text)

    one()
