"""Keep native libraries' stray messages off the command line's stderr.

libpng ("libpng error: IDAT: CRC error"), libjpeg ("Corrupt JPEG data: ...") and Paddle's glog
write straight to file descriptor 2, beside the one line the CLI prints for the same bad file.
For the command line, fd 2 is pointed at /dev/null and Python's `sys.stderr` (the CLI's messages,
warnings, progress bars) at a duplicate of the original, so stderr holds the CLI's own lines.
A crash still reports itself there: `faulthandler` writes to the duplicate.
`INSIGHTFACE_PADDLE_NATIVE_STDERR=1` keeps the native messages (for debugging a library).
"""

from __future__ import annotations

import faulthandler
import io
import os
import sys

KEEP_ENV = "INSIGHTFACE_PADDLE_NATIVE_STDERR"


def silence_native_stderr() -> None:
    """Once per process, before any native library prints."""
    if os.environ.get(KEEP_ENV) == "1" or getattr(silence_native_stderr, "done", False):
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:  # no fd 2 to begin with (a detached process): nothing to protect
        return
    stream = io.TextIOWrapper(os.fdopen(original, "wb"), encoding="utf-8",
                              errors="backslashreplace", line_buffering=True)
    sys.stderr = stream
    faulthandler.enable(file=stream)
    silence_native_stderr.done = True  # type: ignore[attr-defined]
