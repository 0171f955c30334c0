"""Output folders that never destroy a user's files, atomic writes, and an inter-process lock with its holder's PID.

Every folder a command writes as a whole (a corpus, a run folder, a release staging folder) carries a marker file
naming its kind. Such a folder may be replaced or removed by the same kind of command; any other non-empty folder is
refused with a message naming it, before anything expensive runs. Folders written before the marker existed are
recognised by their layout: every entry matches the kind's known names and the required ones are there.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from wvlp.common.errors import UserInputError

MARKER = ".wvlp-output.json"


class UnsafeOutputError(ValueError):
    """A folder the command would write into or remove holds files this project did not write."""


class LockHeldError(UserInputError, RuntimeError):
    """Another process holds the lock of a file this command needs to write."""


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder this project writes: its marker name and the layout of older, unmarked folders."""

    name: str
    layout: tuple[str, ...] = ()  # fnmatch patterns of every top-level entry such a folder may hold
    required: tuple[str, ...] = ()  # entries an unmarked folder must hold to be recognised by its layout


CORPUS = FolderKind("corpus", ("README.md", "data", "stats.json"), ("README.md", "data"))
RUN = FolderKind(
    "run",
    (
        "checkpoint-*",
        "model",
        "language_model",
        "plots",
        "text-cache",
        "metrics.json",
        "trainer_state.json",
        ".staging",
        "runs",
        "*.log",
    ),
    ("metrics.json",),
)
RELEASE = FolderKind("release", ("model", "dataset", "space", "validated.json"), ("validated.json",))
# `<corpus>.partial`: a corpus being written aside, renamed into place when complete.
STAGING = FolderKind("staging", ("README.md", "data", "stats.json", ".work"), ())


def marker_kind(folder: str | os.PathLike) -> str | None:
    """The kind named by the folder's marker, or None when it has no (readable) marker."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def write_marker(folder: str | os.PathLike, kind: FolderKind) -> None:
    """Marks `folder` as written by this project as a `kind` folder."""
    atomic_write_text(Path(folder) / MARKER, json.dumps({"kind": kind.name, "written_by": "wvlp"}) + "\n")


def _foreign_entries(folder: Path, kind: FolderKind) -> list[str] | None:
    """None when `folder` may be written as `kind`; else the names that make it someone else's."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        return [folder.name]
    names = sorted(entry.name for entry in os.scandir(folder))
    if not names:
        return None
    found = marker_kind(folder)
    if found == kind.name:
        return None
    if found is not None:
        return [f"{MARKER} (a {found} folder)"]
    foreign = [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in kind.layout)]
    if not kind.layout or foreign or not all(r in names for r in kind.required):
        return foreign or names
    return None


def check_writable(folder: str | os.PathLike, kind: FolderKind, what: str) -> Path:
    """Raises UnsafeOutputError unless `folder` is absent, empty, or a `kind` folder this project wrote."""
    folder = Path(folder)
    foreign = _foreign_entries(folder, kind)
    if foreign is not None:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        if not folder.is_dir():
            raise UnsafeOutputError(f"{what} {folder} exists and is not a folder; choose another path")
        raise UnsafeOutputError(
            f"{what} {folder} holds files this project did not write ({shown}); it would be overwritten or "
            f"removed, so it is refused: choose an empty or new folder (or remove them yourself)"
        )
    return folder


def claim_dir(folder: str | os.PathLike, kind: FolderKind, what: str) -> Path:
    """Creates `folder` (checked with `check_writable`) and marks it as a `kind` folder."""
    folder = check_writable(folder, kind, what)
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder, kind)
    return folder


def remove_dir(folder: str | os.PathLike, kind: FolderKind, what: str) -> None:
    """Removes `folder` if this project wrote it as a `kind` folder (absent: nothing); refuses anything else."""
    folder = check_writable(folder, kind, what)
    if folder.exists():
        shutil.rmtree(folder)


def replace_dir(staged: str | os.PathLike, target: str | os.PathLike, kind: FolderKind, what: str) -> Path:
    """Moves the finished `staged` folder to `target`, replacing a previous `kind` folder there (never another)."""
    staged, target = Path(staged), Path(target)
    check_writable(target, kind, what)
    write_marker(staged, kind)
    old = target.with_name(target.name + ".old")
    remove_dir(old, kind, what)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    if old.exists():
        shutil.rmtree(old)
    return target


def check_outside(path: str | os.PathLike, folder: str | os.PathLike, what: str, folder_what: str) -> None:
    """Raises UnsafeOutputError when `path` is `folder` or lies inside it (it would be removed with it)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    if path == folder or folder in path.parents:
        raise UnsafeOutputError(
            f"{what} {path} lies inside {folder_what} {folder}, which is written afresh: "
            f"it would be removed; choose paths outside each other"
        )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to a temporary file beside `path`, fsyncs it and renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode())


class ProcessLock:
    """An exclusive lock on `<path>.lock` held by one process at a time; the file records the holder's PID.

    `flock` locks die with their process, so a killed holder never leaves a stale lock behind; the PID is only
    there to name the holder in the error another process gets.
    """

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = Path(f"{os.fspath(path)}.lock")
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Takes the lock or raises LockHeldError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            try:
                holder = self.path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise LockHeldError(
                f"{self.what} is in use by process {holder} (lock {self.path}); wait for it to "
                "finish or use another path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Releases the lock (the lock file stays; an unlocked file is free)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a holder dropped without release() must not keep others out for its process's life
        self.release()

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = [
    "CORPUS",
    "MARKER",
    "RELEASE",
    "RUN",
    "STAGING",
    "FolderKind",
    "LockHeldError",
    "ProcessLock",
    "UnsafeOutputError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_outside",
    "check_writable",
    "claim_dir",
    "marker_kind",
    "remove_dir",
    "replace_dir",
    "write_marker",
]
