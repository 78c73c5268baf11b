"""`label.txt`: one `relative/path<TAB>class index` line per training image.

Paths are relative to the folder holding the file (e.g. `images/00000001.jpg`); labels are
non-negative integers. Blank lines are ignored; anything else malformed is an error naming the
line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from insightface_paddle.fileio import atomic_open

from ..errors import ArcFaceError


def check_relative_path(relative: str) -> str | None:
    """Why `relative` cannot name an image under the dataset folder, or None if it can."""
    if not relative:
        return "empty path"
    if any(ch in relative for ch in "\t\n\r"):
        return "path holds a tab or line break"
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(relative).drive:
        return "path is absolute; paths are relative to the label file's folder"
    if ".." in pure.parts:
        return "path leaves the dataset folder ('..')"
    return None


def read_label_file(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """label.txt -> [(relative path, class index)] in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: missing") from None
    except OSError as exc:
        raise ArcFaceError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ArcFaceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 2:
            raise ArcFaceError(f"{path}: line {number}: expected 'relative/path<TAB>label' "
                               f"(one tab), got {line!r}")
        relative, label = fields[0], fields[1].strip()
        why = check_relative_path(relative)
        if why is not None:
            raise ArcFaceError(f"{path}: line {number}: {why}: {relative!r}")
        if not (label.isascii() and label.isdigit()):
            raise ArcFaceError(f"{path}: line {number}: label {label!r} is not a non-negative "
                               "integer class index")
        entries.append((relative, int(label)))
    return entries


def write_label_file(path: str | os.PathLike[str], entries: Iterable[tuple[str, int]]) -> int:
    """Write [(relative path, class index)] atomically; returns the number of lines."""
    lines = []
    for relative, label in entries:
        why = check_relative_path(relative)
        if why is not None:
            raise ArcFaceError(f"{path}: cannot write entry {relative!r}: {why}")
        if int(label) < 0:
            raise ArcFaceError(f"{path}: cannot write entry {relative!r}: negative label {label}")
        lines.append(f"{relative}\t{int(label)}\n")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    return len(lines)
