"""Worker processes that die with their parent.

A process killed with SIGKILL cannot stop its workers: DataLoader workers and conversion
processes would live on as orphans (PPID 1), still reading and writing. On Linux a worker asks
the kernel to SIGKILL it when its parent exits (`prctl(PR_SET_PDEATHSIG)`); elsewhere the
request is a no-op and the usual cleanup on a clean exit is all there is.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have this process SIGKILLed when its parent exits (Linux). With `parent_pid`, a parent
    already gone before the request took effect ends this process at once."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _worker_init(parent_pid: int, then: Callable[[int], None] | None, worker_id: int) -> None:
    die_with_parent(parent_pid)
    if then is not None:
        then(worker_id)


def dataloader_worker_init(then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A `paddle.io.DataLoader(worker_init_fn=...)` tying each worker's life to this process;
    `then(worker_id)` runs after, if given. Build it in the process that creates the loader."""
    return functools.partial(_worker_init, os.getpid(), then)
