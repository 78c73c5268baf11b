"""Which photo shows whom: a gallery folder plus an optional `path<TAB>label` file."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InsightFaceError
from .media import IMAGE_SUFFIXES, list_images


def read_label_file(img_dir: Path, label_file: Path) -> list[tuple[Path, str]]:
    """Lines `relative/path<TAB>label` (paths relative to `img_dir`; blank lines ignored)."""
    try:
        lines = label_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InsightFaceError(f"{label_file}: no such label file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InsightFaceError(f"{label_file}: cannot read ({exc})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise InsightFaceError(f"{label_file}:{number}: expected 'path<TAB>label', "
                                   f"got {line!r}")
        path = img_dir / parts[0].strip()
        if not path.is_file():
            raise InsightFaceError(f"{label_file}:{number}: {path} does not exist")
        entries.append((path, parts[1].strip()))
    if not entries:
        raise InsightFaceError(f"{label_file}: no entries")
    return entries


def scan_gallery(img_dir: str | os.PathLike[str],
                 label_file: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """(photo, identity) pairs: from the label file, else one sub-folder per identity."""
    img_dir = Path(img_dir)
    if not img_dir.is_dir():
        raise InsightFaceError(f"{img_dir}: gallery folder not found")
    if label_file is not None:
        return read_label_file(img_dir, Path(label_file))
    entries = [(photo, folder.name)
               for folder in sorted(p for p in img_dir.iterdir() if p.is_dir())
               for photo in list_images(folder, recursive=True)]
    loose = [p.name for p in list_images(img_dir)]
    if loose:
        raise InsightFaceError(f"{img_dir}: {len(loose)} photos (e.g. {loose[0]}) are not in an "
                               "identity sub-folder; move them or pass --label")
    if not entries:
        raise InsightFaceError(f"{img_dir}: no photos in identity sub-folders "
                               f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    return entries
