"""insightface verification sets (`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`, ...).

The format is a pickle by definition: `(images, issame)`, where `images` is a list of 2N
encoded images (pairs side by side: a0, b0, a1, b1, ...) as bytes (Python 2 `str` in the
original files) or uint8 arrays, and `issame` a list of N bools. Files are read through the
restricted unpickler, which refuses any callable beyond the few that rebuild bytes and numpy
arrays, before calling it. Writing it is the one place the project produces a pickle, because
the format leaves no choice; see docs/data_formats.md.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.fileio import atomic_open
from insightface_paddle.legacy import BYTES_GLOBALS, NUMPY_GLOBALS, restricted_load

from ..errors import ArcFaceError
from .transforms import decode_rgb

_ALLOWED = {**BYTES_GLOBALS, **NUMPY_GLOBALS}
#: the 10-fold protocol needs a pair in every fold
MIN_PAIRS = 10


@dataclass
class VerificationSet:
    """Encoded images [2N] laid out as (a0, b0, a1, b1, ...) and issame [N] bool."""

    name: str
    images: list[bytes]
    issame: np.ndarray

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.issame)


def load_verification_bin(path: str | os.PathLike[str]) -> VerificationSet:
    """Read an insightface `.bin`; refuses anything but (list of images, list of bools)."""
    path = Path(path)
    try:
        obj = restricted_load(path, _ALLOWED)
    except InsightFaceError as exc:
        raise ArcFaceError(str(exc)) from None
    images, issame = _validate(obj, str(path))
    return VerificationSet(name=path.stem, images=images, issame=issame)


def _validate(obj: Any, source: str) -> tuple[list[bytes], np.ndarray]:
    def fail(why: str) -> ArcFaceError:
        return ArcFaceError(f"{source}: not an insightface verification set ({why})")

    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise fail(f"top level is {type(obj).__name__}, expected a pair (images, issame)")
    raw_images, raw_issame = obj
    if not isinstance(raw_images, (list, tuple)):
        raise fail(f"images are a {type(raw_images).__name__}, expected a list")
    images = []
    for i, image in enumerate(raw_images):
        if isinstance(image, (bytes, bytearray)):
            images.append(bytes(image))
        elif isinstance(image, np.ndarray) and image.dtype == np.uint8:
            images.append(image.tobytes())
        else:
            kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise fail(f"image {i} is {kind}, expected bytes or a uint8 array")
    if isinstance(raw_issame, np.ndarray) and raw_issame.dtype == np.bool_:
        issame = raw_issame.reshape(-1).copy()
    elif isinstance(raw_issame, (list, tuple)):
        bad = next((i for i, x in enumerate(raw_issame) if not isinstance(x, bool)), None)
        if bad is not None:
            raise fail(f"issame[{bad}] is {type(raw_issame[bad]).__name__}, expected bool")
        issame = np.array(raw_issame, dtype=bool)
    else:
        raise fail(f"issame is a {type(raw_issame).__name__}, expected a list of bools")
    if len(issame) == 0:
        raise fail("it holds no pairs")
    if len(images) != 2 * len(issame):
        raise fail(f"{len(images)} images for {len(issame)} pairs; expected two per pair")
    return images, issame


def save_verification_bin(path: str | os.PathLike[str], images: Sequence[bytes],
                          issame: Sequence[bool] | np.ndarray) -> None:
    """Write images [2N] (encoded bytes, pairs side by side) and issame [N] as an insightface
    `.bin`: a protocol-2 pickle of (list of bytes, list of bool), atomically."""
    images = [bytes(image) for image in images]
    flags = [bool(x) for x in np.asarray(issame, dtype=bool).reshape(-1)]
    _validate((images, flags), str(path))
    with atomic_open(path, "wb") as handle:
        pickle.dump((images, flags), handle, protocol=2)


def check_usable_verification_set(vset: VerificationSet) -> None:
    """Raise `ArcFaceError` naming the set (and the image) unless the 10-fold protocol can score
    `vset`: at least MIN_PAIRS pairs, two images per pair, every image decodable. Training calls
    it at start for every validation set, so a bad set stops the run before its first step."""
    if len(vset.issame) < MIN_PAIRS:
        raise ArcFaceError(f"{vset.name}: {len(vset.issame)} pairs; the 10-fold protocol needs "
                           f"at least {MIN_PAIRS}")
    if len(vset.images) != 2 * len(vset.issame):
        raise ArcFaceError(f"{vset.name}: {len(vset.images)} images for {len(vset.issame)} "
                           "pairs; expected two per pair")
    for i, image in enumerate(vset.images):
        decode_rgb(image, f"{vset.name} image {i}")
