"""Read ahead: the next inputs are decoded on a thread while the current one is inferred.

OpenCV's decoders and Paddle's predictors both release the GIL, so one reader thread is enough
to hide decoding behind inference (benchmarks/bench_folder_throughput.py measures it).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: inputs decoded ahead: two keep the predictor fed without holding many images in memory
DEFAULT_DEPTH = 2
_POLL_S = 0.1


class _Done:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = DEFAULT_DEPTH) -> Iterator[T]:
    """Yield `items` in order while a daemon thread produces up to `depth` of them ahead.

    An exception raised while producing is re-raised here, at the item where it happened.
    When the consumer stops early (break, exception, garbage collection) the thread is told to
    stop and joined, so nothing keeps reading in the background.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    iterator = iter(items)

    def produce() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Done(exc))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's cleanup (e.g. releasing a video) runs on this thread
        put(_Done())

    thread = threading.Thread(target=produce, name="insightface-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
