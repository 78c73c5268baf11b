"""Output folders made up front (so a bad path fails before any work) and removed again when a
run fails before writing into them: a failed run leaves no empty folders behind."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .errors import InsightFaceError
from .fileio import write_refusal


def make_folder(folder: Path, what: str) -> list[Path]:
    """Create `folder` and its missing parents and prove it writable -> the folders created,
    deepest last. `what` names the flag or setting in messages."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InsightFaceError(f"{what} {folder}: {probe} is a file, not a folder")
    created: list[Path] = []
    try:
        for path in reversed(missing):
            path.mkdir()
            created.append(path)
    except OSError as exc:
        remove_empty(created)
        raise InsightFaceError(f"{what} {folder}: cannot create folder "
                               f"({exc.strerror or exc})") from None
    refusal = write_refusal(folder)
    if refusal is not None:
        remove_empty(created)
        raise InsightFaceError(f"{what} {folder}: not writable ({refusal})")
    return created


def remove_empty(created: list[Path]) -> None:
    """Remove the folders of `created` (deepest last) that are still empty."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:  # not empty (something was written) or already gone
            return


@contextlib.contextmanager
def folder_for_output(folder: Path, what: str) -> Iterator[Path]:
    """`make_folder` for the length of a block; folders it created are removed on exit if the
    block left them empty (it failed before writing, or had nothing to write)."""
    created = make_folder(folder, what)
    try:
        yield folder
    finally:
        remove_empty(created)
