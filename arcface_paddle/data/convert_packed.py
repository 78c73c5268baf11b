"""Image folder (`label.txt` + images) <-> packed shards, both ways lossless."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from insightface_paddle.fileio import remove_temporaries, write_bytes_atomic

from ..errors import ArcFaceError, require_output_folder
from .convert_common import copy_verification_sets, read_listed_image, verification_sets
from .label_file import LABEL_FILE, check_unique_paths, read_label_file, write_label_file
from .packed import DEFAULT_MAX_SHARD_BYTES, LENGTH, NAMES_FILE, PackedReader, PackedWriter


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
    label_path = image_dir / LABEL_FILE
    entries = read_label_file(label_path)
    if not entries:  # an empty packed folder is no dataset: say so rather than write one
        raise ArcFaceError(f"{label_path}: no images listed")
    check_unique_paths((relative for relative, _ in entries), str(label_path))
    require_output_folder(bin_dir)
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
    label_path = image_dir / LABEL_FILE
    require_output_folder(image_dir)
    if label_path.exists():
        raise ArcFaceError(f"{label_path}: already exists; unpack into a new folder")
    shards = reader.meta["shards"]
    names = [reader.name(i) for i in range(len(reader))]
    # names.txt comes from elsewhere: two images must not land on one path, nor on label.txt
    # or a verification set copied beside them
    check_unique_paths(names, str(Path(bin_dir) / NAMES_FILE), reserved=[
        LABEL_FILE, *(path.name for path in verification_sets(bin_dir, exclude=shards))])
    entries = []
    folders: set[Path] = set()
    for i in tqdm(range(len(reader)), unit="img", desc="packed -> images", disable=not progress):
        data, label = reader[i]
        target = image_dir / names[i]
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_temporaries(target.parent)  # partial images of a killed run
            folders.add(target.parent)
        write_bytes_atomic(target, data)
        entries.append((names[i], label))
    copied = copy_verification_sets(bin_dir, image_dir, exclude=shards)
    write_label_file(label_path, entries)
    return _summary(reader, copied)
