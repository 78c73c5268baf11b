"""Verification `.bin` <-> a folder of images and `pairs.txt`, both ways lossless.

The folder form lets users inspect a set or build their own from their photos (aligned 112x112
face crops, like the published sets): `pairs.txt` holds one
`image_a<TAB>image_b<TAB>1|0` line per pair (1 = same person), paths relative to the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from insightface_paddle.fileio import (
    atomic_open,
    remove_temporaries,
    write_bytes_atomic,
)

from ..errors import ArcFaceError, require_output_file, require_output_folder
from .convert_common import image_extension, read_listed_image
from .label_file import check_relative_path
from .verification_bin import (
    VerificationSet,
    check_usable_verification_set,
    load_verification_bin,
    save_verification_bin,
)

PAIRS_FILE = "pairs.txt"
IMAGES_DIR = "images"


@dataclass
class VerificationSummary:
    pairs: int
    same: int
    different: int


def read_pairs_file(path: str | os.PathLike[str]) -> list[tuple[str, str, bool]]:
    """pairs.txt -> [(image a, image b, issame)]; errors name the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArcFaceError(f"{path}: cannot read ({exc})") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3 or fields[2].strip() not in ("0", "1"):
            raise ArcFaceError(f"{path}: line {number}: expected 'image_a<TAB>image_b<TAB>1|0', "
                               f"got {line!r}")
        for relative in fields[:2]:
            why = check_relative_path(relative)
            if why is not None:
                raise ArcFaceError(f"{path}: line {number}: {why}: {relative!r}")
        pairs.append((fields[0], fields[1], fields[2].strip() == "1"))
    if not pairs:
        raise ArcFaceError(f"{path}: holds no pairs")
    return pairs


def _summary(issame: list[bool]) -> VerificationSummary:
    same = sum(issame)
    return VerificationSummary(pairs=len(issame), same=same, different=len(issame) - same)


def verification_bin_to_folder(bin_path: str | os.PathLike[str],
                               folder: str | os.PathLike[str],
                               progress: bool = True) -> VerificationSummary:
    """`.bin` -> `folder/images/00000000.jpg ...` (bytes unchanged) and `folder/pairs.txt`."""
    folder = Path(folder)
    require_output_folder(folder)
    dataset = load_verification_bin(bin_path)
    pairs_path = folder / PAIRS_FILE
    if pairs_path.exists():
        raise ArcFaceError(f"{pairs_path}: already exists; write into a new folder")
    (folder / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    for stale in (folder, folder / IMAGES_DIR):  # partial files of a killed run
        remove_temporaries(stale)
    names = []
    for i, data in enumerate(tqdm(dataset.images, unit="img", desc=f"{dataset.name} -> images",
                                  disable=not progress)):
        name = f"{IMAGES_DIR}/{i:08d}.{image_extension(data, f'{bin_path}: image {i}')}"
        write_bytes_atomic(folder / name, data)
        names.append(name)
    issame = dataset.issame.tolist()
    with atomic_open(pairs_path, "w", encoding="utf-8", newline="\n") as handle:
        for n, same in enumerate(issame):
            handle.write(f"{names[2 * n]}\t{names[2 * n + 1]}\t{int(same)}\n")
    return _summary(issame)


def folder_to_verification_bin(folder: str | os.PathLike[str],
                               bin_path: str | os.PathLike[str],
                               progress: bool = True) -> VerificationSummary:
    """`folder/pairs.txt` and the images it names -> an insightface `.bin` that training can
    use (`check_usable_verification_set`): a set it cannot score is refused, not written."""
    folder = Path(folder)
    require_output_file(bin_path)
    if os.path.lexists(bin_path):  # like pairs.txt and meta.json: never replaced silently
        raise ArcFaceError(f"{bin_path}: already exists; remove it or choose another name")
    pairs = read_pairs_file(folder / PAIRS_FILE)
    images, issame = [], []
    for a, b, same in tqdm(pairs, unit="pair", desc="images -> bin", disable=not progress):
        for relative in (a, b):
            images.append(read_listed_image(folder / relative, folder / PAIRS_FILE))
        issame.append(same)
    check_usable_verification_set(VerificationSet(str(folder / PAIRS_FILE), images,
                                                  np.array(issame, dtype=bool)))
    save_verification_bin(bin_path, images, issame)
    return _summary(issame)
