"""Packed training images: a few large shard files plus an index, read with random access.

    bin_dir/
      meta.json        format name, format_version, counts, shard names (written last)
      index.npy        int64 [N, 5]: shard, offset, length, label, crc32 of the bytes
      names.txt        N lines: the relative path each image had (for a lossless way back)
      data_00000.bin   encoded images back to back, each shard at most max_shard_bytes

One file per image costs a metadata lookup per read and millions of inodes; one file per
dataset is unwieldy to copy. Shards of ~1 GiB keep both costs small. The encoded bytes are
stored unchanged, so packing is lossless. The layout is documented in docs/data_formats.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from insightface_paddle.fileio import atomic_open, atomic_path, remove_temporaries

from ..errors import ArcFaceError
from ..formats import read_format_meta
from .label_file import MAX_LABEL, check_relative_path

FORMAT_NAME = "arcface_paddle.packed"
FORMAT_VERSION = 1
META_FILE, INDEX_FILE, NAMES_FILE = "meta.json", "index.npy", "names.txt"
SHARD_PATTERN = "data_{:05d}.bin"
DEFAULT_MAX_SHARD_BYTES = 1 << 30
#: columns of index.npy
SHARD, OFFSET, LENGTH, LABEL, CRC32 = range(5)


class PackedWriter:
    """Appends encoded images to shards; `meta.json` appears only when the block succeeds.

    With an error or an interruption every shard stays under a temporary name that is removed,
    and the folder holds no `meta.json`, so no reader mistakes a partial set for a whole one;
    folders the writer created are removed again, so a failed run leaves nothing behind.
    """

    def __init__(self, bin_dir: str | os.PathLike[str],
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
        if max_shard_bytes <= 0:
            raise ArcFaceError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        self.bin_dir = Path(bin_dir)
        self.max_shard_bytes = max_shard_bytes
        self._rows: list[tuple[int, int, int, int, int]] = []
        self._names: list[str] = []
        # shards stay open under temporary names until the commit renames them all
        self._shards = contextlib.ExitStack()
        self._num_shards = 0
        self._handle: IO[bytes] | None = None
        self._shard_size = 0
        #: folders `__enter__` created, deepest first
        self._created: list[Path] = []

    def __enter__(self) -> PackedWriter:
        if (self.bin_dir / META_FILE).exists():
            raise ArcFaceError(f"{self.bin_dir}: already holds a packed set ({META_FILE}); "
                               "remove it or choose another folder")
        folder = Path(os.path.abspath(self.bin_dir))
        while not os.path.lexists(folder) and folder != folder.parent:
            self._created.append(folder)
            folder = folder.parent
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.bin_dir)  # shards of a killed run
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        # closes every shard, then renames them into place, or removes them on an error
        self._shards.__exit__(exc_type, exc, traceback)
        self._handle = None
        if exc_type is not None:
            self._remove_created_folders()
            return
        try:
            self._commit()
        except BaseException:
            for name in [INDEX_FILE, NAMES_FILE, *self._shard_names()]:
                (self.bin_dir / name).unlink(missing_ok=True)
            self._remove_created_folders()
            raise

    def _remove_created_folders(self) -> None:
        """Remove the folders this writer created, if they are still empty."""
        for folder in self._created:
            try:
                folder.rmdir()
            except OSError:  # something else was put there meanwhile: keep it
                return

    def _shard_names(self) -> list[str]:
        return [SHARD_PATTERN.format(i) for i in range(self._num_shards)]

    def add(self, data: bytes, label: int, name: str) -> int:
        """Append one encoded image with its class and relative path; returns its row."""
        why = check_relative_path(name)
        if why is not None:
            raise ArcFaceError(f"{self.bin_dir}: image name {name!r}: {why}")
        if not 0 <= int(label) <= MAX_LABEL:
            raise ArcFaceError(f"{self.bin_dir}: image {name!r}: label {label} is not in "
                               f"0..{MAX_LABEL}")
        if self._handle is None or (self._shard_size and
                                    self._shard_size + len(data) > self.max_shard_bytes):
            self._open_shard()
        assert self._handle is not None
        self._rows.append((self._num_shards - 1, self._shard_size, len(data), int(label),
                           zlib.crc32(data)))
        self._names.append(name)
        self._handle.write(data)
        self._shard_size += len(data)
        return len(self._rows) - 1

    def _open_shard(self) -> None:
        if self._handle is not None:
            self._handle.flush()
        tmp = self._shards.enter_context(
            atomic_path(self.bin_dir / SHARD_PATTERN.format(self._num_shards)))
        self._handle = self._shards.enter_context(tmp.open("wb"))
        self._num_shards += 1
        self._shard_size = 0

    def _commit(self) -> None:
        index = np.array(self._rows, dtype=np.int64).reshape(-1, 5)
        with atomic_path(self.bin_dir / INDEX_FILE) as tmp:
            np.save(tmp, index, allow_pickle=False)
        with atomic_open(self.bin_dir / NAMES_FILE, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{name}\n" for name in self._names)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "num_images": len(self._rows),
            "num_classes": int(index[:, LABEL].max()) + 1 if len(index) else 0,
            "num_identities": int(np.unique(index[:, LABEL]).size),
            "shards": self._shard_names(),
            "max_shard_bytes": self.max_shard_bytes,
            "index": INDEX_FILE,
            "names": NAMES_FILE,
        }
        with atomic_open(self.bin_dir / META_FILE, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=1)
            handle.write("\n")


#: every name `check_relative_path` refuses holds one of these (or starts a line with / \\ or
#: is a lone "." or "./")
_UNSAFE_MARKS = (b"..", b":", b"\t", b"\r", b"\0", b"\n/", b"\n\\", b"\n\n", b"\n.\n",
                 b"\n./\n")


def _may_hold_unsafe_name(data: bytes) -> bool:
    """names.txt bytes -> False when no line can be empty, absolute, the folder itself or
    leave the folder."""
    return (data[:1] in (b"/", b"\\", b"\n") or data[:2] == b".\n" or data[:3] == b"./\n"
            or any(mark in data for mark in _UNSAFE_MARKS))


def _check_meta(meta: dict, source: Path) -> None:
    """The keys a reader uses, with their types: a tampered meta.json is one line, not a
    traceback, and its shard names cannot point outside the folder."""
    for key in ("num_images", "num_classes"):
        value = meta.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ArcFaceError(f"{source}: {key} must be an integer >= 0, got {value!r}")
    shards = meta.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(name, str) and name and name == Path(name).name and name not in (".", "..")
            for name in shards):
        raise ArcFaceError(f"{source}: shards must be a list of file names in the folder, got "
                           f"{shards!r}")


class PackedReader:
    """`reader[i] -> (encoded image bytes, class index)` over a packed folder.

    Safe to pickle into DataLoader workers: the index is memory-mapped and the shards opened
    lazily in each process, and reads use `os.pread`, so nothing is shared between processes.
    """

    def __init__(self, bin_dir: str | os.PathLike[str]) -> None:
        self.bin_dir = Path(bin_dir)
        meta = read_format_meta(self.bin_dir / META_FILE, FORMAT_NAME, FORMAT_VERSION,
                                "not a packed image folder (or its conversion did not finish)")
        _check_meta(meta, self.bin_dir / META_FILE)
        self.meta = meta
        self.num_classes = int(meta["num_classes"])
        self._shard_paths = [self.bin_dir / name for name in meta["shards"]]
        self._index: np.ndarray | None = None
        self._fds: dict[int, int] = {}
        self._names: list[str] | None = None
        self._check()

    def _check(self) -> None:
        index = self.index
        source = self.bin_dir / INDEX_FILE
        if index.shape[0] != self.meta["num_images"]:
            raise ArcFaceError(f"{source}: {index.shape[0]} rows but {META_FILE} says "
                               f"{self.meta['num_images']} images")
        if len(index) and not (index[:, SHARD].min() >= 0 and
                               index[:, SHARD].max() < len(self._shard_paths)):
            raise ArcFaceError(f"{source}: names a shard beyond the {len(self._shard_paths)} "
                               f"listed in {META_FILE}")
        for column, name, low in ((OFFSET, "offset", 0), (LENGTH, "length", 1),
                                  (LABEL, "label", 0)):
            if len(index) and index[:, column].min() < low:
                row = int(np.argmin(index[:, column]))
                raise ArcFaceError(f"{source}: row {row} has {name} {int(index[row, column])}")
        if len(index) and index[:, LABEL].max() >= self.num_classes:
            row = int(np.argmax(index[:, LABEL]))
            raise ArcFaceError(f"{source}: row {row} has label {int(index[row, LABEL])}, but "
                               f"{META_FILE} says {self.num_classes} classes")
        needed = np.zeros(len(self._shard_paths), dtype=np.int64)
        np.maximum.at(needed, index[:, SHARD], index[:, OFFSET] + index[:, LENGTH])
        for path, size in zip(self._shard_paths, needed, strict=True):
            try:
                actual = path.stat().st_size
            except OSError as exc:
                raise ArcFaceError(f"{path}: cannot read ({exc.strerror})") from None
            if actual < size:
                raise ArcFaceError(f"{path}: {actual} bytes but the index needs {size}; "
                                   "the shard is truncated")
        self._read_names(keep=False)

    def _read_names(self, keep: bool) -> list[str]:
        """names.txt -> its N names, each checked to stay inside the folder it is unpacked
        into (the file is data from elsewhere: '../x.jpg' or '/abs/x.jpg' must not escape).

        Runs when the reader opens, so a training run reads the file once: one pass of byte
        searches, and the per-line check only when some line could be unsafe."""
        path = self.bin_dir / NAMES_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArcFaceError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArcFaceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        if text and not text.endswith("\n"):
            raise ArcFaceError(f"{path}: ends in the middle of a line; truncated?")
        count = text.count("\n")  # the writer ends every name with a line feed
        if count != len(self):
            raise ArcFaceError(f"{path}: {count} names for {len(self)} images")
        unsafe = _may_hold_unsafe_name(data)
        if not (keep or unsafe):
            return []
        names = text.split("\n")[:-1]
        for number, name in enumerate(names if unsafe else [], start=1):
            why = check_relative_path(name)
            if why is not None:
                raise ArcFaceError(f"{path}: line {number}: {why}: {name!r}")
        return names

    @property
    def index(self) -> np.ndarray:
        """int64 [N, 5]: shard, offset, length, label, crc32 (memory-mapped)."""
        if self._index is None:
            path = self.bin_dir / INDEX_FILE
            try:
                index = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ArcFaceError(f"{path}: unreadable ({exc})") from None
            if index.dtype != np.int64 or index.ndim != 2 or index.shape[1] != 5:
                raise ArcFaceError(f"{path}: expected int64 [N, 5], got {index.dtype} "
                                   f"{list(index.shape)}")
            self._index = index
        return self._index

    @property
    def labels(self) -> np.ndarray:
        """Class index of every image [N] (for samplers and statistics)."""
        return self.index[:, LABEL]

    def __len__(self) -> int:
        return int(self.meta["num_images"])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_index=None, _fds={}, _names=None)
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)
        self._fds = {}

    def name(self, i: int) -> str:
        """The relative path image i had when it was packed."""
        if self._names is None:
            self._names = self._read_names(keep=True)
        return self._names[i]

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            try:
                fd = os.open(self._shard_paths[shard], os.O_RDONLY)
            except OSError as exc:
                raise ArcFaceError(f"{self._shard_paths[shard]}: cannot read "
                                   f"({exc.strerror})") from None
            self._fds[shard] = fd
        return fd

    def describe(self, i: int) -> str:
        """Image i's shard and record, for error messages."""
        shard, offset, length = (int(v) for v in self.index[i, [SHARD, OFFSET, LENGTH]])
        return f"{self._shard_paths[shard]}: image {i} (bytes {offset}..{offset + length})"

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} images")
        shard, offset, length, label, crc = (int(v) for v in self.index[i])
        data = os.pread(self._fd(shard), length, offset)
        if len(data) != length or zlib.crc32(data) != crc:
            raise ArcFaceError(f"{self._shard_paths[shard]}: image {i % len(self)} (bytes "
                               f"{offset}..{offset + length}) fails its checksum; the shard is "
                               "corrupt")
        return data, label
