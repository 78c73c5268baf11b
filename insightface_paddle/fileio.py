"""Atomic file writes: readers see the old file or the complete new one, never half of it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds.

    The temporary name keeps the final suffix so libraries that add one (np.savez) do not.
    `mode`: the permissions of the result (default: what `open` would give under the umask).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes 0600; by default the result should look like open()'s
    os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)  # the writer may be a library: flush its data to disk
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (created 0600 beside `path`) for the block.

    For read-modify-write cycles of one file by several processes: the second waits for the
    first to finish, so no update is lost. The lock file stays (removing it would race); the
    operating system releases the lock when the holder exits, even by kill -9.
    """
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes; remembered while the file's size and mtime stay the same
    (the zoo check and the model fingerprint both hash the same large weights file)."""
    stat = os.stat(path)
    return _sha256_cached(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; flush, fsync and rename it onto `path` on success."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


#: marks the temporaries of `write_bytes_atomic`; a killed run can leave some, never a final file
TEMPORARY_SUFFIX = ".tmp"


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `.<name>.<pid>.tmp` beside `path` and rename it: `path` is complete or
    absent.

    The guarantee of `atomic_path` for bulk conversions of many small files: a fixed per-process
    temporary name instead of `mkstemp`, no fsync (the converters re-check every file when
    re-run) and no directory creation per call; ~1.6-2.8x more files per second. The parent
    folder must exist; `remove_temporaries` clears what a killed run left.
    """
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: `.<name>.<pid>.tmp` (write_bytes_atomic) or `.<name>.<8 mkstemp chars>.tmp<suffix>`
#: (atomic_path): the two temporary names this project writes
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:\d+\.tmp|[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]*)?)")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of this project's temporaries (`atomic_path`,
    `write_bytes_atomic`): what a killed run leaves, never data to read."""
    match = _TEMPORARY.fullmatch(name)
    if match is None:
        return False
    suffix = match.group("suffix")
    return suffix is None or os.path.splitext(match.group("name"))[1] == suffix


def remove_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete the temporaries (`is_temporary`) a killed run left in `folder` -> how many; a
    missing folder holds none."""
    try:
        with os.scandir(folder) as entries:
            stale = [entry.path for entry in entries
                     if is_temporary(entry.name) and entry.is_file(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return len(stale)


def output_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at `path` (a folder there, a parent that is a file, a
    folder that refuses writes), or None; checked before long work so it fails at once.
    Nothing is created: missing parent folders are made only when the file is written."""
    target = Path(path)
    if target.is_dir():
        return f"{target}: is a folder, expected a file name"
    parent = _existing_ancestor(target.parent)
    if not parent.is_dir():
        return f"{target}: {parent} is not a folder"
    return _unwritable(target, parent)


def output_folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why files cannot be written under the folder `path` (a file there or in its place, a
    folder that refuses writes), or None. Nothing is created."""
    target = Path(path)
    existing = _existing_ancestor(target)
    if not existing.is_dir():
        where = "is a file" if existing == target else f"{existing} is not a folder"
        return f"{target}: {where}, expected a folder"
    return _unwritable(target, existing)


def _unwritable(target: Path, folder: Path) -> str | None:
    """Why no file can be made in `folder` (the nearest existing folder of `target`), or None."""
    refusal = write_refusal(folder)
    return None if refusal is None else f"{target}: cannot write there ({folder}: {refusal})"


def write_refusal(folder: Path) -> str | None:
    """The system's reason no file can be made in the existing `folder`, or None.

    A file is really made (and vanishes on close): `os.access` says yes to root on /proc,
    /sys, read-only mounts and other places that refuse every write."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def _existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
