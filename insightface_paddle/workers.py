"""One pool of worker threads for the runtime's CPU work between model calls (gallery scans,
keypoint crops): OpenCV and numpy release the GIL, so on a machine of several cores these run
side by side instead of one after another."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_this_thread = threading.local()


def cpu_workers() -> int:
    """Threads of the pool: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def executor() -> ThreadPoolExecutor:
    """The shared pool, made on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(cpu_workers(), thread_name_prefix="insightface",
                                       initializer=_mark_worker)
        return _pool


def _mark_worker() -> None:
    _this_thread.is_worker = True


def parallel_workers() -> int:
    """How many pool threads a caller may spread work over: `cpu_workers()`, but 1 on a thread
    of the pool itself (a task that waited on tasks queued behind it could block every worker:
    an app calling the runtime from the pool runs that work inline instead)."""
    return 1 if getattr(_this_thread, "is_worker", False) else cpu_workers()
