"""Shared shell for `tools/*.py`: user errors become one line on stderr and a non-zero exit.

Importing it also silences Paddle's import-time "No ccache found" warning (about compiling C++
extensions, which no tool here does), so a tool's first lines are its own; tools import this
module before anything that imports paddle.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Callable, NoReturn

from insightface_paddle.errors import InsightFaceError

from .errors import ArcFaceError

USER_ERRORS = (ArcFaceError, InsightFaceError)

warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None) -> NoReturn:
    """Call `main(argv)` and exit with its code; user errors print `error: <message>`, exit 1."""
    try:
        code = main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    sys.exit(code or 0)
