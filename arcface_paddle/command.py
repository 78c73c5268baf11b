"""Shared shell for `tools/*.py`: user errors become one line on stderr and a non-zero exit.

Other `OSError`s (disk full, permissions, a folder where a file is expected) become one line
as well: they are the machine's answer to the user's paths, not a bug.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Callable, NoReturn

from insightface_paddle.errors import InsightFaceError

from .errors import ArcFaceError

USER_ERRORS = (ArcFaceError, InsightFaceError)


def show_progress() -> bool:
    """Progress bars only on a terminal: in a pipe or a log, stderr holds just the messages
    (an error is one line)."""
    return sys.stderr.isatty()


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> NoReturn:
    """Call `main(argv)` and exit with its code; user errors print `error: <message>`, exit 1."""
    try:
        code = main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # the machine said no (disk full, permissions): one line too
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
