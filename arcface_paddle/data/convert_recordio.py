"""insightface dataset folder (`train.rec/.idx`, `property`, `*.bin`) -> images + label.txt.

Each image is written with the encoded bytes it has in the record: no decode and re-encode, so
the conversion is lossless and bound by I/O. Every file appears under its final name only when
complete, so an interrupted run can be repeated: images already present with the record's
length are skipped, and `label.txt` and `summary.json` are written last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from insightface_paddle.fileio import (
    atomic_open,
    remove_temporaries,
    write_bytes_atomic,
)

from ..errors import ArcFaceError, require_output_folder
from ..lifetime import die_with_parent
from .convert_common import copy_verification_sets, image_extension
from .label_file import write_label_file
from .recordio import RecFaceReader

SUMMARY_VERSION = 1
IMAGES_DIR = "images"
#: images per task handed to a worker: contiguous keys, so each worker reads the .rec in order;
#: small enough that stopping (error, Ctrl-C) waits for little more than a second of work
CHUNK = 256


@dataclass
class RecordioSummary:
    images: int
    #: distinct labels among the images
    identities: int
    #: classes according to `property`
    num_classes: int
    #: identity records after the images (insightface header), or None without a header
    identity_records: int | None
    image_size: tuple[int, int]
    verification_sets: list[str] = field(default_factory=list)
    written: int = 0
    skipped: int = 0


@dataclass
class _Job:
    reader: RecFaceReader
    output_dir: Path
    #: the images folder was empty at the start: no file can be complete, skip the checks
    fresh: bool


#: the job of this process: set in each worker by `_start_worker` (or in-process)
_job: _Job | None = None


def _start_worker(job: _Job | None, parent_pid: int | None = None) -> None:
    """Worker initializer (and in-process setup): a worker dies with the process that spawned
    it, so `kill -9` of the tool leaves no orphan writing images."""
    global _job
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _job = job


def _convert_range(bounds: tuple[int, int]) -> tuple[int, list[str], list[int], int]:
    """Write images start..stop-1 -> (start, relative names, labels, number written)."""
    assert _job is not None, "worker not started"
    reader, output_dir = _job.reader, os.fspath(_job.output_dir)
    start, stop = bounds
    names, labels, written = [], [], 0
    for i in range(start, stop):
        payload, label, key = reader.read_image(i)
        source = f"{reader.records.rec_path}: record key {key}"
        name = f"{IMAGES_DIR}/{key:08d}.{image_extension(payload, source)}"
        target = os.path.join(output_dir, name)
        if _job.fresh or not _is_complete(target, len(payload)):
            write_bytes_atomic(target, payload)
            written += 1
        names.append(name)
        labels.append(label)
    return start, names, labels, written


def _is_complete(path: str, size: int) -> bool:
    """Files only ever appear complete (renamed into place); the size guards against another
    dataset converted into the same folder before."""
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


def _run(job: _Job, ranges: list[tuple[int, int]], num_workers: int
         ) -> Iterator[tuple[int, list[str], list[int], int]]:
    """Results of `_convert_range` over `ranges`, in this process or in `num_workers`.

    Workers are spawned, not forked: the caller may hold threads (paddle, BLAS) whose locks a
    fork would copy mid-use. Spawning costs ~0.5 s per run. Callers running with
    num_workers > 1 from a script need the usual `if __name__ == "__main__":` guard.
    """
    if num_workers == 1:
        _start_worker(job)
        try:
            yield from map(_convert_range, ranges)
        finally:
            _start_worker(None)
            job.reader.records.close()
        return
    with ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(job, os.getpid())) as pool:
        futures = [pool.submit(_convert_range, bounds) for bounds in ranges]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            # on an error or Ctrl-C: drop the queued chunks, let the running ones finish
            pool.shutdown(wait=True, cancel_futures=True)


def recordio_to_images(root_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                       num_workers: int = 1, progress: bool = True) -> RecordioSummary:
    """Convert an insightface dataset folder; safe to re-run after an interruption."""
    if num_workers < 1:
        raise ArcFaceError(f"--num_workers must be at least 1, got {num_workers}")
    root_dir, output_dir = Path(root_dir), Path(output_dir)
    if root_dir.resolve() == output_dir.resolve():
        raise ArcFaceError(f"--output_dir {output_dir} is the dataset folder itself")
    require_output_folder(output_dir, "--output_dir")
    reader = RecFaceReader(root_dir)
    images_dir = output_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(images_dir)  # what a killed run left: never complete, never data
    remove_temporaries(output_dir)
    with os.scandir(images_dir) as entries:
        job = _Job(reader, output_dir, fresh=next(entries, None) is None)

    total = len(reader)
    names: list[str] = [""] * total
    labels = np.zeros(total, dtype=np.int64)
    written = 0
    ranges = [(start, min(start + CHUNK, total)) for start in range(0, total, CHUNK)]
    with tqdm(total=total, unit="img", desc="rec -> images", disable=not progress) as bar:
        for start, chunk_names, chunk_labels, chunk_written in _run(job, ranges, num_workers):
            names[start:start + len(chunk_names)] = chunk_names
            labels[start:start + len(chunk_labels)] = chunk_labels
            written += chunk_written
            bar.update(len(chunk_names))

    _check_complete(output_dir, names, reader)
    if total and labels.max() >= reader.num_classes:
        worst = int(np.argmax(labels))
        raise ArcFaceError(f"{root_dir / 'property'}: says {reader.num_classes} classes but "
                           f"record key {reader.key(worst)} has label {int(labels[worst])}")
    summary = RecordioSummary(
        images=total,
        identities=int(np.unique(labels).size),
        num_classes=reader.num_classes,
        identity_records=(len(reader.identity_ranges)
                          if reader.identity_ranges is not None else None),
        image_size=(reader.height, reader.width),
        verification_sets=copy_verification_sets(root_dir, output_dir),
        written=written,
        skipped=total - written,
    )
    write_label_file(output_dir / "label.txt", zip(names, labels.tolist(), strict=True))
    with atomic_open(output_dir / "summary.json", "w", encoding="utf-8") as handle:
        record = {"format_version": SUMMARY_VERSION, "source": str(root_dir)}
        record.update({k: v for k, v in asdict(summary).items() if k not in ("written",
                                                                               "skipped")})
        json.dump(record, handle, indent=1)
        handle.write("\n")
    return summary


def _check_complete(output_dir: Path, names: list[str], reader: RecFaceReader) -> None:
    """The count check: one image file per image record, all present after the run."""
    expected = len(reader)
    converted = sum(1 for name in names if name)
    if converted != expected:
        raise ArcFaceError(f"{reader.records.rec_path}: converted {converted} images but the "
                           f"dataset holds {expected}")
    with os.scandir(output_dir / IMAGES_DIR) as entries:
        present = {entry.name for entry in entries}
    missing = [name for name in names if name.split("/", 1)[1] not in present]
    if missing:
        raise ArcFaceError(f"{output_dir}: {len(missing)} of {expected} images are missing "
                           f"after conversion (first: {missing[0]})")
