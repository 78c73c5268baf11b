"""Pieces the conversion tools share: recognising encoded images, copying verification sets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path

from insightface_paddle.fileio import atomic_path, is_temporary, remove_temporaries

from ..errors import ArcFaceError

#: leading bytes of the encoded formats OpenCV reads -> the file extension they are saved under
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
    (b"BM", "bmp"),
)


def image_extension(data: bytes, source: str) -> str:
    """Encoded image bytes -> "jpg", "png", ... from their signature, without decoding them.

    Checking the signature instead of decoding keeps conversions lossless and fast; a payload
    that is not an image at all is still caught here, with `source` naming the record or file.
    """
    head = bytes(data[:12])
    for signature, extension in _SIGNATURES:
        if head.startswith(signature):
            return extension
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    raise ArcFaceError(f"{source}: not an encoded image (starts with {head[:8].hex(' ')}; "
                       "expected JPEG, PNG, BMP, GIF, TIFF or WebP)")


def read_listed_image(path: Path, listed_in: Path) -> bytes:
    """The encoded bytes of an image a list file names; errors name both files."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArcFaceError(f"{path}: cannot read ({exc.strerror}); named in {listed_in}"
                           ) from None
    image_extension(data, str(path))
    return data


def verification_sets(folder: str | os.PathLike[str], exclude: Collection[str] = ()
                      ) -> list[Path]:
    """The verification sets (`*.bin` files but the names in `exclude`) of a dataset folder,
    by name; a temporary a killed run left (`.lfw.bin.x1y2z3w4.tmp.bin`) is not one."""
    return [path for path in sorted(Path(folder).glob("*.bin"))
            if path.name not in exclude and not is_temporary(path.name) and path.is_file()]


def copy_verification_sets(source_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str],
                           exclude: Collection[str] = ()) -> list[str]:
    """Copy the verification sets of a dataset folder (`verification_sets`), so training finds
    them beside its data; a copy already there with the same size is kept, and partial copies
    of a killed run are removed first."""
    remove_temporaries(target_dir)
    copied = []
    for source in verification_sets(source_dir, exclude):
        target = Path(target_dir) / source.name
        if not (target.is_file() and target.stat().st_size == source.stat().st_size):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        copied.append(source.name)
    return copied
