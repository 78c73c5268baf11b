"""Shared shell for `tools/*.py`: user errors become one line on stderr and a non-zero exit.

Importing it also silences Paddle's import-time "No ccache found" warning (about compiling C++
extensions, which no tool here does), so a tool's first lines are its own; tools import this
module before anything that imports paddle. Other `OSError`s (disk full, permissions, a folder
where a file is expected) become one line as well: they are the machine's answer to the user's
paths, not a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

# before anything imports paddle (the runtime package does); the second is Paddle's note on
# every training BatchNorm, which says nothing about the run
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
warnings.filterwarnings("ignore", message="When training, we now always track global mean",
                        category=UserWarning)

from insightface_paddle.errors import InsightFaceError, describe_os_error  # noqa: E402
from insightface_paddle.native_stderr import silence_native_stderr  # noqa: E402

from .errors import ArcFaceError  # noqa: E402

USER_ERRORS = (ArcFaceError, InsightFaceError)


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The original toolkit's flags naming a training checkpoint, shared by validation and
    export: --is_static, --backbone, --embedding_size, --checkpoint_dir."""
    from insightface_paddle.cli import str2bool

    parser.add_argument("--is_static", type=str2bool, default=False,
                        help="the checkpoint comes from static-graph training (both graph "
                             "modes write the same checkpoint format)")
    parser.add_argument("--backbone", default=None,
                        help="backbone the checkpoint holds (default: what it says)")
    parser.add_argument("--embedding_size", type=int, default=None,
                        help="its embedding size (default: what the checkpoint says)")
    parser.add_argument("--checkpoint_dir", default=None,
                        help="a training checkpoint folder (step_*), a training output folder "
                             "(its newest checkpoint) or a weights .npz")


def show_progress() -> bool:
    """Progress bars only on a terminal: in a pipe or a log, stderr holds just the messages
    (an error is one line)."""
    return sys.stderr.isatty()


def run_main(main: Callable[[Sequence[str] | None], int | None],
             argv: Sequence[str] | None = None, native_stderr: bool = False) -> NoReturn:
    """Call `main(argv)` and exit with its code; user errors print `error: <message>`, exit 1.

    For the process's own command line (`argv` None), native libraries' stray lines on stderr
    (libpng's "IDAT: CRC error", Paddle's glog warnings) are kept off it as the runtime CLI
    does (`insightface_paddle.native_stderr`), unless asked to keep them (`native_stderr=True`:
    training, whose ranks' logs should hold a C++ crash report)."""
    if argv is None and not native_stderr:
        silence_native_stderr()
    try:
        code = main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as exc:  # the machine said no (disk full, permissions): one line too
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        sys.exit(1)
    except MemoryError as exc:  # Paddle's ResourceExhausted too: sizes beyond this machine
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "allocation failed"
        print(f"error: out of memory ({detail}); lower the sizes (--batch_size, "
              "--embedding_size, --num_classes ...)", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
