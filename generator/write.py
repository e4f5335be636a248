"""Stage 5: the one place that touches the file system.

The new tree is written beside the old one (same directory, so the same file system),
flushed to disk, and swapped in with one atomic `renameat2(RENAME_EXCHANGE)`. A build
that fails or is killed at any point leaves the previous tree exactly as it was; its
leftovers are hidden temporary directories that the next build removes. Modes are
set explicitly, so the result does not depend on the caller's umask.
"""

from __future__ import annotations

import ctypes
import difflib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from generator import __version__
from generator.errors import Diagnostic, Location, WriteError
from generator.renderers import OPTIONAL
from generator.renderers.artifact import MODE_FILE, Artifact

MANIFEST = "manifest.json"
_TMP_NEW = ".kvmnet-new-"
_TMP_OLD = ".kvmnet-old-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "add" | "remove" | "modify" | "mode"
    path: str
    detail: str = ""


def option_key(extra: str) -> str:
    """An optional renderer as manifest.json names its option: `seed-iso` is `seed_iso`."""
    return extra.replace("-", "_")


def manifest(
    artifacts: Sequence[Artifact], profile_digest: str, extras: frozenset[str] = frozenset()
) -> Artifact:
    """`manifest.json`: every file with its sha256 and mode, the profile digest, the version,
    and the options the output was built with (so that `build --check` can compare like
    with like)."""
    files = [
        {
            "path": a.path,
            "sha256": hashlib.sha256(a.content).hexdigest(),
            "mode": f"{a.mode:04o}",
            "size": len(a.content),
        }
        for a in sorted(artifacts, key=lambda a: a.path)
    ]
    options = {option_key(name): name in extras for name in OPTIONAL}
    head = {
        "generator": "kvmnet",
        "version": __version__,
        "profile_sha256": profile_digest,
        "options": options,
    }
    # One file per line: readable and diffable, and each line goes through json's C
    # encoder (indent= would switch the whole document to the pure-Python one).
    lines = [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in sorted(head.items())]
    entries = ",\n".join(f"    {json.dumps(f, sort_keys=True)}" for f in files)
    listing = f"[\n{entries}\n  ]" if files else "[]"
    text = "{\n" + "\n".join(lines) + f'\n  "files": {listing}\n}}\n'

    return Artifact.text(MANIFEST, text, MODE_FILE)


def recorded_extras(root: Path) -> frozenset[str] | None:
    """The optional renderers the kvmnet tree at `root` was built with, as its manifest
    records them; None when there is no kvmnet tree there, or its manifest is older than
    recorded options."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("generator") != "kvmnet":
        return None
    options = data.get("options")
    if not isinstance(options, dict):
        return None
    return frozenset(name for name in OPTIONAL if options.get(option_key(name)) is True)


def _read(path: Path) -> tuple[bytes, int]:
    info = path.lstat()
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else b""
    return content, stat.S_IMODE(info.st_mode)


def _on_disk(root: Path) -> dict[str, tuple[bytes, int]]:
    found: dict[str, tuple[bytes, int]] = {}
    if not root.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            full = Path(dirpath) / filename
            found[full.relative_to(root).as_posix()] = _read(full)
    return found


def diff(root: Path, artifacts: Sequence[Artifact]) -> list[Change]:
    """What writing `artifacts` to `root` would change."""
    if not root.exists():
        return [Change("add", a.path) for a in sorted(artifacts, key=lambda a: a.path)]
    existing = _on_disk(root)
    changes: list[Change] = []
    wanted = {a.path: a for a in artifacts}
    for path in sorted(set(existing) | set(wanted)):
        have = existing.get(path)
        want = wanted.get(path)
        if have is None:
            changes.append(Change("add", path))
        elif want is None:
            changes.append(Change("remove", path))
        elif have[0] != want.content:
            changes.append(Change("modify", path))
        elif have[1] != want.mode:
            changes.append(Change("mode", path, f"{have[1]:04o} -> {want.mode:04o}"))
    return changes


def _text(content: bytes) -> list[str] | None:
    """The lines of a text file; None for a binary one (a NUL, or not UTF-8)."""
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def patch(root: Path, wanted: Mapping[str, Artifact], change: Change) -> list[str]:
    """A unified diff of one change, with git's `a/` and `b/` names (`--- /dev/null` for a
    file that appears); a binary file is only named, as diff(1) does; a change of mode
    alone has no body (its `--check` line says it)."""
    if change.kind == "mode":
        return []
    old = _read(root / change.path)[0] if change.kind != "add" else b""
    new = wanted[change.path].content if change.kind != "remove" else b""
    before = f"a/{change.path}" if change.kind != "add" else "/dev/null"
    after = f"b/{change.path}" if change.kind != "remove" else "/dev/null"
    old_lines, new_lines = _text(old), _text(new)
    if old_lines is None or new_lines is None:
        return [f"Binary files {before} and {after} differ"]
    return list(difflib.unified_diff(old_lines, new_lines, before, after, lineterm=""))


def _error(root: Path, message: str) -> WriteError:
    return WriteError([Diagnostic(message, (), Location(str(root), 0, 0))])


def _refuse_foreign(root: Path) -> None:
    """Never swap away a directory kvmnet did not make (think `-o /etc`)."""
    if root.is_symlink():
        raise _error(root, "the output path is a symlink; give the directory it points to")
    if not root.exists():
        return
    if not root.is_dir():
        raise _error(root, "the output path exists and is not a directory")
    if not any(root.iterdir()):
        return
    try:
        data = json.loads((root / MANIFEST).read_text())
        if isinstance(data, dict) and data.get("generator") == "kvmnet":
            return
    except (OSError, ValueError):
        pass
    raise _error(
        root,
        "refusing to replace this directory: it is not empty and has no kvmnet manifest.json; "
        "choose another output directory or empty it",
    )


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One build at a time per output directory.

    The lock is taken on the parent directory itself (flock works on a directory's file
    descriptor), so no lock file is left lying around.
    """
    fd = os.open(root.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _error(root, "another kvmnet build is writing this output directory") from None
        yield
    finally:
        os.close(fd)


def _clean_leftovers(root: Path) -> None:
    for prefix in (_TMP_NEW, _TMP_OLD):
        for stale in root.parent.glob(f".{root.name}{prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_tree(base: Path, artifacts: Sequence[Artifact]) -> None:
    # Plain strings and os calls: pathlib costs more than the system calls here, and a
    # large fleet writes tens of thousands of files.
    root = os.fspath(base)
    os.chmod(root, 0o755)
    made = {""}
    for artifact in artifacts:
        parent = artifact.path.rpartition("/")[0]
        if parent not in made:
            _make_dirs(root, parent, made)
        # Created with the final mode or less (umask only removes bits), then set exactly,
        # so a 0600 file is never readable by others, not even for a moment.
        fd = os.open(f"{root}/{artifact.path}", _CREATE, artifact.mode)
        try:
            os.fchmod(fd, artifact.mode)
            view = memoryview(artifact.content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _make_dirs(root: str, relative: str, made: set[str]) -> None:
    parent = relative.rpartition("/")[0]
    if parent not in made:
        _make_dirs(root, parent, made)
    os.mkdir(f"{root}/{relative}", 0o755)
    os.chmod(f"{root}/{relative}", 0o755)
    made.add(relative)


def _sync(path: Path) -> None:
    """Flush the new tree once (one syncfs instead of an fsync per file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _exchange(new: Path, root: Path) -> bool:
    """Atomically swap `new` and `root`; False if the kernel or file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(root), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(root))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(root: Path, artifacts: Sequence[Artifact]) -> list[Change]:
    """Replace the tree at `root` with exactly `artifacts`; return what changed."""
    root = Path(os.path.abspath(root))
    _refuse_foreign(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(root, f"cannot create the output's parent directory: {exc.strerror}") from None
    with _locked(root):
        _clean_leftovers(root)
        changes = diff(root, artifacts)
        if not changes:
            return []
        new = root.parent / f".{root.name}{_TMP_NEW}{os.getpid()}"
        try:
            new.mkdir()
            _write_tree(new, artifacts)
            _sync(new)
            if root.exists():
                if _exchange(new, root):
                    shutil.rmtree(new)  # `new` now holds the previous tree
                else:
                    old = root.parent / f".{root.name}{_TMP_OLD}{os.getpid()}"
                    os.rename(root, old)
                    os.rename(new, root)
                    shutil.rmtree(old)
            else:
                os.rename(new, root)
            _fsync_dir(root.parent)
        except OSError as exc:
            shutil.rmtree(new, ignore_errors=True)
            raise _error(
                root, f"could not write the output ({exc.strerror or exc}); the previous output is unchanged"
            ) from None
        return changes
