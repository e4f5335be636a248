"""Stage 5: the one place that touches the file system.

The new tree is written beside the old one (same directory, so the same file system),
flushed to disk, and swapped in with one atomic `renameat2(RENAME_EXCHANGE)`. A build
that fails or is killed at any point leaves the previous tree exactly as it was; its
leftovers are hidden temporary directories that the next build removes. Modes are
set explicitly, so the result does not depend on the caller's umask.

The swap is the commit point, and polite signals (Ctrl-C, SIGTERM, a hang-up) cannot
split it from its outcome: one that arrives before it stops the build with the old tree
in place; one that arrives once the swap has begun waits, and is then dropped because
the build has already succeeded (see `_commit`).
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import errno
import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

from generator import __version__
from generator.errors import Diagnostic, Location, WriteError
from generator.layout import MANIFEST
from generator.renderers import OPTIONAL
from generator.renderers.artifact import MODE_FILE, Artifact

_TMP_NEW = ".kvmnet-new-"
_TMP_OLD = ".kvmnet-old-"
_LOCK = ".kvmnet-lock"
#: Signals whose default is to end the process and that a user or a supervisor sends to
#: stop a build; SIGKILL cannot be deferred, and needs no care: the swap is atomic.
_POLITE = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class ChangeKind(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    MODIFY = "modify"
    MODE = "mode"  # same content, another file mode


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
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
        return [Change(ChangeKind.ADD, a.path) for a in sorted(artifacts, key=lambda a: a.path)]
    existing = _on_disk(root)
    changes: list[Change] = []
    wanted = {a.path: a for a in artifacts}
    for path in sorted(set(existing) | set(wanted)):
        have = existing.get(path)
        want = wanted.get(path)
        if have is None:
            changes.append(Change(ChangeKind.ADD, path))
        elif want is None:
            changes.append(Change(ChangeKind.REMOVE, path))
        elif have[0] != want.content:
            changes.append(Change(ChangeKind.MODIFY, path))
        elif have[1] != want.mode:
            changes.append(Change(ChangeKind.MODE, path, f"{have[1]:04o} -> {want.mode:04o}"))
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
    if change.kind is ChangeKind.MODE:
        return []
    old = _read(root / change.path)[0] if change.kind is not ChangeKind.ADD else b""
    new = wanted[change.path].content if change.kind is not ChangeKind.REMOVE else b""
    before = f"a/{change.path}" if change.kind is not ChangeKind.ADD else "/dev/null"
    after = f"b/{change.path}" if change.kind is not ChangeKind.REMOVE else "/dev/null"
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
    """One build at a time per output directory; builds into other directories, siblings
    included, run side by side.

    The lock is a file beside the output, named after it (`.out.kvmnet-lock` for `out`).
    Not the output directory itself: it may not exist yet, and the commit replaces it by
    a rename, after which a lock held on it would guard the previous tree while a second
    build locked the new one. Not the parent (as before): that made `-o build/a` refuse
    `-o build/b`. A name in the parent is the same whichever tree it sits beside.

    The holder removes the file before it lets go, so none is left lying around. A build
    that opened the file just before that finds, once it holds the lock, that the name no
    longer leads to the file it locked, and starts again with the name's current file.
    """
    lock = root.parent / f".{root.name}{_LOCK}"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _error(root, f"cannot create the lock file {lock}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise _error(
                root,
                f"another kvmnet build{who} is writing this output directory; "
                "wait for it to finish, or choose another output directory",
            ) from None
        try:
            current = os.stat(lock, follow_symlinks=False)
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.unlink(lock)
        os.close(fd)


def _clean_leftovers(root: Path) -> None:
    for prefix in (_TMP_NEW, _TMP_OLD):
        for stale in root.parent.glob(glob.escape(f".{root.name}{prefix}") + "*"):
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


@contextmanager
def _polite_signals_deferred() -> Iterator[Callable[[], None]]:
    """Hold SIGINT, SIGTERM and SIGHUP back; yields `committed`, to be called once the
    output is the new tree.

    A signal held back before `committed` is acted on when the block ends, as if it had
    come just before it: the build stops (Ctrl-C is a KeyboardInterrupt, SIGTERM ends the
    process) and the old tree stays. One held back after `committed` is dropped: the
    build has succeeded, and reporting it as interrupted would say the opposite of what
    the output directory holds.

    Two holds, because a signal has two halves. The kernel's: blocked, so no system call
    of the swap returns EINTR and no default action ends the process. Python's: a signal
    that came just before the block has already been caught in C, and its Python handler
    (which raises KeyboardInterrupt) would run at whatever line comes next, maybe right
    after the swap; our own handler only notes it. Handlers belong to the main thread;
    a build runs there (elsewhere only the kernel's half holds).
    """
    arrived: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        arrived.append(signum)

    done = False

    def committed() -> None:
        nonlocal done
        done = True

    handlers: dict[signal.Signals, Any] = {}
    previous: set[int | signal.Signals] | None = None
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in sorted(_POLITE):
                if signal.getsignal(signum) is not None:  # None: a handler Python cannot restore
                    handlers[signum] = signal.signal(signum, note)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _POLITE)
        yield committed
    finally:
        # Unblocking delivers what the kernel held back; pthread_sigmask runs the Python
        # handlers (`note`) before it returns, so nothing slips past the restore below.
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if arrived and not done:
            signal.raise_signal(arrived[0])


def _commit(new: Path, root: Path) -> None:
    """Put the tree at `new` in place of `root`: the commit point of a build.

    Once the new tree is in place nothing may fail the build: flushing the directory and
    removing the previous tree are best effort (what is left is removed by the next build).
    """
    with _polite_signals_deferred() as committed:
        if not root.exists():
            os.rename(new, root)
            committed()
            _flush_parent(root)
            return
        if _exchange(new, root):
            committed()
            _flush_parent(root)
            shutil.rmtree(new, ignore_errors=True)  # `new` now holds the previous tree
            return
        # Without RENAME_EXCHANGE there is a moment with no tree at `root` (a SIGKILL then
        # leaves the old one under its hidden name); polite signals wait for it to pass.
        old = root.parent / f".{root.name}{_TMP_OLD}{os.getpid()}"
        os.rename(root, old)
        try:
            os.rename(new, root)
        except OSError:
            os.rename(old, root)
            raise
        committed()
        _flush_parent(root)
        shutil.rmtree(old, ignore_errors=True)


def _flush_parent(root: Path) -> None:
    # The rename is visible to every process already; this only makes it durable sooner
    # than the file system's own writeback would.
    with contextlib.suppress(OSError):
        _fsync_dir(root.parent)


def write(root: Path, artifacts: Sequence[Artifact]) -> list[Change]:
    """Replace the tree at `root` with exactly `artifacts`; return what changed."""
    root = Path(os.path.abspath(root))
    _refuse_foreign(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(root, f"cannot create the output's parent directory: {exc.strerror}") from None
    with _locked(root):
        _refuse_foreign(root)  # again, now that no other build can be replacing it
        _clean_leftovers(root)
        changes = diff(root, artifacts)
        if not changes:
            return []
        new = root.parent / f".{root.name}{_TMP_NEW}{os.getpid()}"
        try:
            new.mkdir()
            _write_tree(new, artifacts)
            _sync(new)
            _commit(new, root)
        except OSError as exc:
            shutil.rmtree(new, ignore_errors=True)
            raise _error(
                root, f"could not write the output ({exc.strerror or exc}); the previous output is unchanged"
            ) from None
        except BaseException:  # interrupted before the commit: the old tree stays, leave no litter
            shutil.rmtree(new, ignore_errors=True)
            raise
        return changes
