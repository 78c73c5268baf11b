"""Image folder (`label.txt` + images) <-> packed shards, both ways lossless."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from insightface_paddle.fileio import write_bytes_atomic

from ..errors import ArcFaceError
from .convert_common import copy_verification_sets, read_listed_image
from .label_file import read_label_file, write_label_file
from .packed import DEFAULT_MAX_SHARD_BYTES, LENGTH, PackedReader, PackedWriter


@dataclass
class PackedSummary:
    images: int
    num_classes: int
    identities: int
    shards: int
    total_bytes: int
    #: verification sets (`*.bin`) copied along
    verification_sets: list[str]


def _summary(reader: PackedReader, verification_sets: list[str]) -> PackedSummary:
    return PackedSummary(
        images=len(reader),
        num_classes=reader.num_classes,
        identities=int(reader.meta["num_identities"]),
        shards=len(reader.meta["shards"]),
        total_bytes=int(reader.index[:, LENGTH].sum()) if len(reader) else 0,
        verification_sets=verification_sets,
    )


def images_to_packed(image_dir: str | os.PathLike[str], bin_dir: str | os.PathLike[str],
                     max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                     progress: bool = True) -> PackedSummary:
    """Pack every image listed in `image_dir/label.txt` into shards under `bin_dir`, and copy
    the verification sets (`*.bin`) found in `image_dir`."""
    image_dir = Path(image_dir)
    label_path = image_dir / "label.txt"
    entries = read_label_file(label_path)
    with PackedWriter(bin_dir, max_shard_bytes) as writer:
        for relative, label in tqdm(entries, unit="img", desc="images -> packed",
                                    disable=not progress):
            writer.add(read_listed_image(image_dir / relative, label_path), label, relative)
    reader = PackedReader(bin_dir)
    shards = reader.meta["shards"]  # a set named like a shard is not copied over it
    return _summary(reader, copy_verification_sets(image_dir, bin_dir, exclude=shards))


def packed_to_images(bin_dir: str | os.PathLike[str], image_dir: str | os.PathLike[str],
                     progress: bool = True) -> PackedSummary:
    """Unpack shards into `image_dir`: each image under its original relative path, the
    verification sets, and `label.txt` written last."""
    reader = PackedReader(bin_dir)
    image_dir = Path(image_dir)
    label_path = image_dir / "label.txt"
    if label_path.exists():
        raise ArcFaceError(f"{label_path}: already exists; unpack into a new folder")
    entries = []
    folders: set[Path] = set()
    for i in tqdm(range(len(reader)), unit="img", desc="packed -> images", disable=not progress):
        data, label = reader[i]
        relative = reader.name(i)
        target = image_dir / relative
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        write_bytes_atomic(target, data)
        entries.append((relative, label))
    verification_sets = copy_verification_sets(bin_dir, image_dir, exclude=reader.meta["shards"])
    write_label_file(label_path, entries)
    return _summary(reader, verification_sets)
