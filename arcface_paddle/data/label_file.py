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

LABEL_FILE = "label.txt"
#: class indices are stored as int64 (packed index, training labels)
MAX_LABEL = 2**63 - 1


def check_relative_path(relative: str) -> str | None:
    """Why `relative` cannot name an image under the dataset folder, or None if it can."""
    if not relative:
        return "empty path"
    if any(ch in relative for ch in "\t\n\r"):
        return "path holds a tab or line break"
    if "\0" in relative:
        return "path holds a NUL byte"
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not pure.parts or pure.parts == (".",):
        return "path names the folder itself, not a file"
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
        if int(label) > MAX_LABEL:
            raise ArcFaceError(f"{path}: line {number}: label {label} is larger than the "
                               f"largest class index {MAX_LABEL}")
        entries.append((relative, int(label)))
    return entries


def check_unique_paths(paths: Iterable[str], source: str,
                       reserved: Iterable[str] = (LABEL_FILE,)) -> None:
    """Raise unless the paths can all be written as files of one folder: no path twice, none
    that is another's folder ('a' and 'a/b.jpg'), none named like the `reserved` files written
    beside them (label.txt, copied verification sets). Paths are compared as written."""
    reserved_names = {PurePosixPath(name).as_posix() for name in reserved}
    seen: dict[str, int] = {}
    for number, relative in enumerate(paths, start=1):
        key = PurePosixPath(relative.replace("\\", "/")).as_posix()
        if key in reserved_names:
            raise ArcFaceError(f"{source}: line {number}: {relative!r} is a reserved name "
                               f"(the folder's own {key})")
        if key in seen:
            raise ArcFaceError(f"{source}: line {number}: {relative!r} repeats line "
                               f"{seen[key]}; each image needs its own path")
        seen[key] = number
    folders = {str(parent) for key in seen for parent in PurePosixPath(key).parents}
    clash = next((key for key in seen if key in folders), None)
    if clash is not None:
        raise ArcFaceError(f"{source}: line {seen[clash]}: {clash!r} is also the folder of "
                           "other images")


def write_label_file(path: str | os.PathLike[str], entries: Iterable[tuple[str, int]]) -> int:
    """Write [(relative path, class index)] atomically; returns the number of lines."""
    lines = []
    for relative, label in entries:
        why = check_relative_path(relative)
        if why is not None:
            raise ArcFaceError(f"{path}: cannot write entry {relative!r}: {why}")
        if not 0 <= int(label) <= MAX_LABEL:
            raise ArcFaceError(f"{path}: cannot write entry {relative!r}: label {label} is not "
                               f"in 0..{MAX_LABEL}")
        lines.append(f"{relative}\t{int(label)}\n")
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    return len(lines)
