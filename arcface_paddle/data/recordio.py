"""MXNet RecordIO (`.rec` + `.idx`) without MXNet, byte for byte compatible.

A record is written as one or more frames: `magic, lrec, data, zero padding to 4 bytes`, with
`lrec = cflag << 29 | length` (little endian). The writer cuts a record wherever its bytes hold
the magic at an offset that is a multiple of 4: that magic is dropped and the pieces go out as
frames with cflag 1 (first), 2 (middle), 3 (last); a record without such a magic is a single
frame with cflag 0. The reader glues the pieces back with the magic between them.

A packed image record starts with an `IRHeader` (`<IfQQ`: flag, label, id, id2); when
`flag > 0` the label is the `flag` float32 values that follow it. insightface's `train.rec`
stores a header in record 0 (`flag > 0`, label = [first key past the images, end of the
identity records]), the images in keys 1..label[0]-1 and one record per identity after them.
The layouts are written out in docs/data_formats.md.
"""

from __future__ import annotations

import contextlib
import os
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from insightface_paddle.fileio import atomic_open, atomic_path

from ..errors import ArcFaceError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
#: the length word keeps 29 bits for the length, so a record must be shorter than this
MAX_RECORD_BYTES = 1 << 29
IR_HEADER = struct.Struct("<IfQQ")
_FRAME_HEAD = struct.Struct("<II")
_LENGTH_MASK = MAX_RECORD_BYTES - 1
_WHOLE, _FIRST, _MIDDLE, _LAST = 0, 1, 2, 3


class IRHeader(NamedTuple):
    """`label` is a float when `flag == 0`, else a float32 array of `flag` values."""

    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def pack(header: IRHeader, payload: bytes) -> bytes:
    """IRHeader + payload -> record bytes, as `mx.recordio.pack`: a scalar label goes into the
    header (flag 0); an array label sets flag to its size and follows the header as float32."""
    _, label, record_id, id2 = header
    if np.ndim(label) == 0:
        return IR_HEADER.pack(0, float(label), record_id, id2) + payload
    values = np.asarray(label, dtype="<f4")
    return IR_HEADER.pack(values.size, 0.0, record_id, id2) + values.tobytes() + payload


def unpack(record: bytes, source: str = "<record>") -> tuple[IRHeader, bytes]:
    """Record bytes -> (IRHeader, payload), as `mx.recordio.unpack`; `source` names the record."""
    if len(record) < IR_HEADER.size:
        raise ArcFaceError(f"{source}: {len(record)} bytes, too short for an image record header")
    flag, label, record_id, id2 = IR_HEADER.unpack_from(record)
    start = IR_HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if len(record) < end:
            raise ArcFaceError(f"{source}: header announces {flag} float labels but the record "
                               f"has only {len(record) - start} bytes after the header")
        label = np.frombuffer(record, dtype="<f4", count=flag, offset=start).astype(np.float32)
        start = end
    return IRHeader(flag, label, record_id, id2), record[start:]


def image_label(header: IRHeader, source: str) -> int:
    """The class of an image record: the scalar label, or the first value of an array label."""
    value = float(header.label) if header.flag == 0 else float(header.label[0])
    if value < 0 or value != int(value):
        raise ArcFaceError(f"{source}: label {value} is not a class index")
    return int(value)


def encode_frames(record: bytes) -> bytes:
    """Record bytes -> the frames MXNet writes for it (split at aligned magics, padded)."""
    if len(record) >= MAX_RECORD_BYTES:
        raise ArcFaceError(f"record of {len(record)} bytes: RecordIO holds records shorter than "
                           f"{MAX_RECORD_BYTES} bytes")
    view = memoryview(record)
    cuts = [i for i in _find_all(record, MAGIC_BYTES) if i % 4 == 0]
    out = bytearray()
    start = 0
    for cut in cuts:
        out += _FRAME_HEAD.pack(MAGIC, (_FIRST if start == 0 else _MIDDLE) << 29 | cut - start)
        out += view[start:cut]
        start = cut + 4
    out += _FRAME_HEAD.pack(MAGIC, (_LAST if cuts else _WHOLE) << 29 | len(record) - start)
    out += view[start:]
    out += bytes(-len(record) % 4)
    return bytes(out)


def _find_all(data: bytes, needle: bytes) -> Iterator[int]:
    i = data.find(needle)
    while i >= 0:
        yield i
        i = data.find(needle, i + 1)


def decode_frames(read: Callable[[int, int], bytes], position: int, source: str
                  ) -> tuple[bytes, int]:
    """Read one record whose first frame starts at `position` -> (record bytes, end position).

    `read(offset, size)` returns up to `size` bytes of the file at `offset`.
    """
    pieces = []
    offset = position
    while True:
        head = read(offset, _FRAME_HEAD.size)
        if len(head) < _FRAME_HEAD.size:
            raise ArcFaceError(f"{source}: truncated at byte {offset} (frame header cut short)")
        magic, lrec = _FRAME_HEAD.unpack(head)
        if magic != MAGIC:
            raise ArcFaceError(f"{source}: bad magic 0x{magic:08x} at byte {offset} (expected "
                               f"0x{MAGIC:08x}); not a RecordIO file or the index is wrong")
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        expected = (_WHOLE, _FIRST) if not pieces else (_MIDDLE, _LAST)
        if cflag not in expected:
            raise ArcFaceError(f"{source}: frame at byte {offset} has continuation flag {cflag}, "
                               f"expected one of {expected}; the index is wrong or the file "
                               "is corrupt")
        padded = length + (-length % 4)
        data = read(offset + _FRAME_HEAD.size, padded)
        if len(data) < padded:
            end = offset + _FRAME_HEAD.size + len(data)
            raise ArcFaceError(f"{source}: truncated at byte {end} (frame of {length} bytes "
                               "cut short)")
        pieces.append(data[:length])
        offset += _FRAME_HEAD.size + padded
        if cflag in (_WHOLE, _LAST):
            return MAGIC_BYTES.join(pieces), offset


class RecordReader:
    """Random access to the records of a `.rec`, through its `.idx` or one scan of the file.

    Safe to pickle into DataLoader workers: the file is opened lazily in each process and read
    with `os.pread`, so processes never share a file offset.
    """

    def __init__(self, rec_path: str | os.PathLike[str],
                 idx_path: str | os.PathLike[str] | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        try:
            self._size = self.rec_path.stat().st_size
        except OSError as exc:
            raise ArcFaceError(f"{self.rec_path}: cannot read ({exc.strerror})") from None
        self._fd: int | None = None
        if self.idx_path is not None:
            keys, positions = read_index(self.idx_path)
        else:
            positions = self._scan()
            keys = np.arange(len(positions), dtype=np.int64)
        bad = positions[(positions < 0) | (positions >= max(self._size, 1))]
        if bad.size:
            raise ArcFaceError(f"{self.idx_path}: position {int(bad[0])} is past the end of "
                               f"{self.rec_path} ({self._size} bytes); truncated .rec?")
        self.keys = keys
        self._positions = positions
        # each record spans from its position to the next record's: one read fetches it all
        starts = np.sort(np.append(positions, self._size))
        self._extents = starts[np.searchsorted(starts, positions, side="right")] - positions
        self._dense = bool(np.array_equal(keys, np.arange(len(keys))))
        self._order = None if self._dense else np.argsort(keys, kind="stable")

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None
        return state

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def _file(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.rec_path, os.O_RDONLY)
            except OSError as exc:
                raise ArcFaceError(f"{self.rec_path}: cannot read ({exc.strerror})") from None
        return self._fd

    def _pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._file(), size, offset)

    def _scan(self) -> np.ndarray:
        """Positions of every record, by walking the frame headers (for a `.rec` with no
        `.idx`); keys are then the record numbers 0, 1, 2, ..."""
        positions = []
        offset = 0

        def header_only(at: int, size: int) -> bytes:
            # frame headers are read; payloads are only checked to be there, not read
            if size == _FRAME_HEAD.size:
                return self._pread(at, size)
            return bytes(max(0, min(size, self._size - at)))

        while offset < self._size:
            positions.append(offset)
            source = f"{self.rec_path}: record {len(positions) - 1}"
            _, offset = decode_frames(header_only, offset, source)
        return np.asarray(positions, dtype=np.int64)

    def position(self, key: int) -> int:
        """Byte offset of the record with this key."""
        row = self._row(key)
        return int(self._positions[row])

    def _row(self, key: int) -> int:
        if self._dense:
            if 0 <= key < len(self.keys):
                return int(key)
        else:
            i = int(np.searchsorted(self.keys, key, sorter=self._order))
            if i < len(self.keys) and self.keys[self._order[i]] == key:
                return int(self._order[i])
        raise ArcFaceError(f"{self.idx_path or self.rec_path}: no record with key {key}")

    def read(self, key: int) -> bytes:
        """The record stored under `key` (IRHeader + payload for image records)."""
        row = self._row(key)
        position = int(self._positions[row])
        window = self._pread(position, int(self._extents[row]))

        def read(offset: int, size: int) -> bytes:
            start = offset - position
            if start + size <= len(window):
                return window[start:start + size]
            return self._pread(offset, size)  # the index places records out of order

        record, _ = decode_frames(read, position, f"{self.rec_path}: record key {key}")
        return record


def read_index(idx_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """`.idx` text (`key<TAB>position` lines, as MXIndexedRecordIO writes) -> (keys, positions)
    as int64 arrays in file order."""
    idx_path = Path(idx_path)
    try:
        text = idx_path.read_text(encoding="ascii")
    except OSError as exc:
        raise ArcFaceError(f"{idx_path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ArcFaceError(f"{idx_path}: not an index file (non-ASCII bytes)") from None
    table = _parse_index(text)
    if table is None:
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split("\t")
            if len(fields) != 2 or not all(f.isdigit() and len(f) < 19 for f in fields):
                raise ArcFaceError(f"{idx_path}: line {number}: expected 'key<TAB>position' "
                                   f"with two non-negative integers, got {line!r}")
        raise ArcFaceError(f"{idx_path}: not an index file")
    keys = table[:, 0].copy()
    if not np.all(keys[1:] > keys[:-1]):  # usual files are ascending: no sort needed
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            raise ArcFaceError(f"{idx_path}: key {int(repeated[0])} appears on more than one "
                               "line")
    return keys, table[:, 1].copy()


def _parse_index(text: str) -> np.ndarray | None:
    """`.idx` text -> int64 [N, 2], or None when any line is malformed (C-speed: an index of
    millions of lines parses in well under a second; the caller then finds the bad line)."""
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy's "unmatched data"
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")  # any whitespace separates
        except (ValueError, DeprecationWarning):
            return None
    if values.size != 2 * lines or text.count("\t") != lines or np.any(values < 0):
        return None
    return values.reshape(-1, 2)


class RecordWriter:
    """Writes `.rec` (and `.idx` when given a path) exactly as MXIndexedRecordIO does.

    Use as a context manager: the files appear under their names only when the block succeeds;
    an error or interruption leaves nothing behind.
    """

    def __init__(self, rec_path: str | os.PathLike[str],
                 idx_path: str | os.PathLike[str] | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else None
        self._stack = contextlib.ExitStack()
        self._rec = self._idx = None
        self._position = 0

    def __enter__(self) -> RecordWriter:
        with self._stack as stack:
            self._rec = stack.enter_context(open(stack.enter_context(atomic_path(self.rec_path)),
                                                 "wb"))
            if self.idx_path is not None:
                self._idx = stack.enter_context(
                    open(stack.enter_context(atomic_path(self.idx_path)), "w", encoding="ascii"))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> bool:
        # files close before their temporary names are renamed (or removed on error)
        return self._stack.__exit__(*exc_info)

    def write(self, record: bytes) -> int:
        """Append one record; returns its byte position."""
        if self._rec is None:
            raise RuntimeError("RecordWriter is used as a context manager")
        position = self._position
        frames = encode_frames(record)
        self._rec.write(frames)
        self._position += len(frames)
        return position

    def write_idx(self, key: int, record: bytes) -> int:
        """Append one record and its `key<TAB>position` line in the index."""
        if self._idx is None:
            raise RuntimeError(f"{self.rec_path}: writer has no index path")
        position = self.write(record)
        self._idx.write(f"{int(key)}\t{position}\n")
        return position


def read_property(root_dir: str | os.PathLike[str]) -> tuple[int, int, int]:
    """insightface `property` file (`num_classes,height,width`) -> the three integers."""
    path = Path(root_dir) / "property"
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: missing; an insightface dataset folder holds train.rec, "
                           "train.idx and property ('num_classes,height,width')") from None
    except OSError as exc:
        raise ArcFaceError(f"{path}: cannot read ({exc.strerror})") from None
    fields = [field.strip() for field in text.split(",")]
    if len(fields) != 3 or not all(field.isdigit() for field in fields):
        raise ArcFaceError(f"{path}: expected 'num_classes,height,width', got {text!r}")
    num_classes, height, width = map(int, fields)
    return num_classes, height, width


class RecFaceReader:
    """The images of an insightface dataset folder (`train.rec`, `train.idx`, `property`).

    `reader[i] -> (encoded image bytes, class index)` for i in 0..len-1; `num_classes` comes
    from `property`. Pickles into DataLoader workers without an open file.
    """

    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.root_dir = Path(root_dir)
        self.num_classes, self.height, self.width = read_property(self.root_dir)
        rec_path, idx_path = self.root_dir / "train.rec", self.root_dir / "train.idx"
        if not rec_path.is_file():
            raise ArcFaceError(f"{rec_path}: missing")
        self.records = RecordReader(rec_path, idx_path if idx_path.is_file() else None)
        self.image_keys, self.identity_ranges = self._layout()

    def _layout(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Image keys and, when record 0 is an insightface header, the identity record keys."""
        keys = np.sort(self.records.keys)
        if 0 not in keys:
            return keys, None
        header, _ = unpack(self.records.read(0), f"{self.records.rec_path}: record key 0")
        if header.flag == 0:
            return keys, None
        first_past_images = int(header.label[0])
        identity_end = int(header.label[1]) if header.flag > 1 else first_past_images
        missing = np.setdiff1d(np.arange(1, first_past_images), keys)
        if missing.size:
            raise ArcFaceError(f"{self.records.rec_path}: header says images are keys 1.."
                               f"{first_past_images - 1} but key {int(missing[0])} is missing")
        return (np.arange(1, first_past_images, dtype=np.int64),
                np.arange(first_past_images, identity_end, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.image_keys)

    def key(self, i: int) -> int:
        """The record key of image i."""
        return int(self.image_keys[i])

    def read_image(self, i: int) -> tuple[bytes, int, int]:
        """Image i -> (encoded bytes, class index, record key)."""
        key = self.key(i)
        source = f"{self.records.rec_path}: record key {key}"
        header, payload = unpack(self.records.read(key), source)
        return payload, image_label(header, source), key

    def describe(self, i: int) -> str:
        """Image i's file and record, for error messages."""
        return f"{self.records.rec_path}: record key {self.key(i)} (image {i})"

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        payload, label, _ = self.read_image(i)
        return payload, label


def write_rec_dataset(root_dir: str | os.PathLike[str], labels: Sequence[int],
                      images: Iterable[bytes], num_classes: int | None = None,
                      image_size: tuple[int, int] = (112, 112)) -> None:
    """Write an insightface dataset folder (`train.rec`, `train.idx`, `property`).

    `labels` [N] must be grouped in ascending order (all of class 0, then class 1, ...), as
    insightface lays them out; `images` yields the N encoded images in the same order. The
    layout is record 0 = header, keys 1..N = images, then one record per class holding its
    key range [start, end).
    """
    root_dir = Path(root_dir)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or np.any(np.diff(labels) < 0)):
        raise ArcFaceError(f"{root_dir}: labels must be non-negative and grouped in ascending "
                           "order")
    num_classes = int(labels.max()) + 1 if num_classes is None and labels.size else num_classes
    num_classes = num_classes or 0
    if labels.size and labels.max() >= num_classes:
        raise ArcFaceError(f"{root_dir}: label {int(labels.max())} >= num_classes {num_classes}")
    first_identity = len(labels) + 1
    starts = np.searchsorted(labels, np.arange(num_classes + 1)) + 1
    with RecordWriter(root_dir / "train.rec", root_dir / "train.idx") as writer:
        writer.write_idx(0, pack(IRHeader(0, [first_identity, first_identity + num_classes],
                                          0, 0), b""))
        count = 0
        # not strict: a short `images` is reported below as an ArcFaceError, not a ValueError
        pairs = zip(labels.tolist(), images, strict=False)
        for key, (label, image) in enumerate(pairs, start=1):
            writer.write_idx(key, pack(IRHeader(0, float(label), key, 0), image))
            count += 1
        if count != len(labels):
            raise ArcFaceError(f"{root_dir}: {len(labels)} labels but {count} images")
        for c in range(num_classes):
            key = first_identity + c
            writer.write_idx(key, pack(IRHeader(0, [starts[c], starts[c + 1]], key, 0), b""))
    with atomic_open(root_dir / "property", "w", encoding="utf-8") as handle:
        handle.write(f"{num_classes},{image_size[0]},{image_size[1]}\n")
