"""One pool of worker threads for the runtime's CPU work between model calls (gallery scans,
keypoint crops): OpenCV and numpy release the GIL, so on a machine of several cores these run
side by side instead of one after another."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def cpu_workers() -> int:
    """Threads of the pool: one per core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def executor() -> ThreadPoolExecutor:
    """The shared pool, made on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(cpu_workers(), thread_name_prefix="insightface")
        return _pool
