"""Reading ahead (prefetch) and image sizes from headers: what folder runs are built on."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from insightface_paddle.image_header import image_size
from insightface_paddle.prefetch import prefetch


def test_prefetch_keeps_order_and_reads_ahead_while_the_consumer_works():
    produced: list[int] = []
    ahead = threading.Event()

    def items():
        for i in range(6):
            produced.append(i)
            if i == 1:
                ahead.set()  # item 1 is read while item 0 is still being consumed
            yield i

    seen = []
    for item in prefetch(items(), depth=2):
        if item == 0:
            assert ahead.wait(5), "the reader did not run ahead of the consumer"
        seen.append(item)
    assert seen == list(range(6)) and produced == list(range(6))


def test_prefetch_raises_the_producers_error_at_its_place():
    def items():
        yield 1
        yield 2
        raise ValueError("disk gone")

    seen = []
    with pytest.raises(ValueError, match="disk gone"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    for item in prefetch(endless(), depth=3):
        if item == 4:
            break
    assert closed.wait(5)  # the generator's cleanup ran
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif"])
@pytest.mark.parametrize("shape", [(7, 300), (1234, 5)])
def test_header_size_matches_the_decoded_size(suffix, shape):
    image = np.zeros((*shape, 3), np.uint8)
    data = cv2.imencode(suffix, image)[1].tobytes()
    assert image_size(data) == (shape[1], shape[0])
    assert image_size(data[:8]) is None  # cut short: unknown, never a wrong size


def test_header_of_other_data_is_unknown():
    assert image_size(b"") is None
    assert image_size(b"this is not an image") is None
    assert image_size(b"\xff\xd8\xffjunk") is None
