"""The one exception type the training library raises for problems a user can cause, and the
up-front output checks that raise it."""

from __future__ import annotations

import os

from insightface_paddle.fileio import output_file_problem, output_folder_problem


class ArcFaceError(Exception):
    """Bad data, a bad flag or config, a corrupt checkpoint: the message names the file, record,
    line or flag. Command-line tools print it alone and exit non-zero."""


def require_output_folder(path: str | os.PathLike[str], flag: str = "") -> None:
    """Refuse, before any long work, a folder nothing can be written in; `flag` (e.g.
    "--output") leads the message."""
    _refuse(output_folder_problem(path), flag)


def require_output_file(path: str | os.PathLike[str], flag: str = "") -> None:
    """Refuse, before any long work, a file path that cannot be written."""
    _refuse(output_file_problem(path), flag)


def _refuse(problem: str | None, flag: str) -> None:
    if problem is not None:
        raise ArcFaceError(f"{flag} {problem}" if flag else problem)
