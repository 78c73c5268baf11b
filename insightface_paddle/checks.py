"""Checks of what a caller passes (options, image sizes, boxes), done before any work starts.

Each bad value becomes an `InsightFaceError` naming the option and what was expected, so the
Python API never leaks a `TypeError` or `ZeroDivisionError` and the CLI refuses a bad flag
before any model loads.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from .errors import InsightFaceError

#: default cap on decoded image size: 150 megapixels is about 450 MB as RGB, above any camera
#: photo in common use; the CLI's --max_megapixels (the API's `max_pixels`) raises it
DEFAULT_MAX_PIXELS = 150_000_000
#: Paddle aborts the process (SIGABRT) when asked for ~100000 threads; more than a few per core
#: only slows inference down
THREADS_PER_CORE_LIMIT = 4
#: a face square this many times the image's long side is nearly all padding
MAX_BOX_TO_IMAGE = 4.0


def max_cpu_threads() -> int:
    return THREADS_PER_CORE_LIMIT * max(1, os.cpu_count() or 1)


def _number(name: str, value: Any, integer: bool = False) -> float:
    kinds = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = "an integer" if integer else "a number"
        raise InsightFaceError(f"{name} must be {expected}, got {value!r}")
    if not math.isfinite(float(value)):
        raise InsightFaceError(f"{name} must be finite, got {value!r}")
    return float(value)


def check_range(name: str, value: Any, low: float, high: float | None = None,
                integer: bool = False) -> None:
    """`value` is a number (an integer if asked) in [low, high]; the message names `name`."""
    number = _number(name, value, integer)
    if number < low or (high is not None and number > high):
        bounds = f">= {low:g}" if high is None else f"between {low:g} and {high:g}"
        raise InsightFaceError(f"{name} must be {bounds}, got {value!r}")


def check_options(*, det_thresh: Any, rec_thresh: Any, cdd_num: Any, max_batch_size: Any,
                  det_max_side: Any, cpu_threads: Any, max_pixels: Any) -> None:
    """The numeric options of `InsightFace` (named by their CLI flags)."""
    check_range("--det_thresh", det_thresh, 0.0, 1.0)
    check_range("--rec_thresh", rec_thresh, -1.0, 1.0)
    check_range("--cdd_num", cdd_num, 1, integer=True)
    check_range("--max_batch_size", max_batch_size, 1, integer=True)
    check_range("--det_max_side", det_max_side, 32, integer=True)
    if cpu_threads is not None:
        limit = max_cpu_threads()
        check_range("--cpu_threads", cpu_threads, 1, integer=True)
        if cpu_threads > limit:
            raise InsightFaceError(
                f"--cpu_threads must be at most {limit} ({THREADS_PER_CORE_LIMIT} per core of "
                f"this machine's {limit // THREADS_PER_CORE_LIMIT}), got {cpu_threads}")
    check_range("max_pixels", max_pixels, 1, integer=True)


def check_pixels(width: int, height: int, max_pixels: int, source: str) -> None:
    """Refuse an image larger than `max_pixels` before it is decoded."""
    if width * height > max_pixels:
        raise InsightFaceError(
            f"{source}: {width}x{height} is {width * height / 1e6:.0f} megapixels, above the "
            f"limit of {max_pixels / 1e6:g} (raise it with --max_megapixels, or max_pixels= in "
            "the API)")
    if width == 0 or height == 0:
        raise InsightFaceError(f"{source}: the image is empty ({width}x{height})")


def check_boxes(boxes: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    """Boxes from a caller -> float32 [K, >=4] (x1, y1, x2, y2, ...) that each cover part of the
    image and are not absurdly larger than it."""
    try:
        array = np.asarray(boxes, np.float32)
    except (TypeError, ValueError):
        raise InsightFaceError("boxes must be numbers [K, >=4] (x1, y1, x2, y2, ...)") from None
    if array.ndim == 1 and array.size >= 4:
        array = array[None]
    if array.ndim != 2 or (array.size and array.shape[1] < 4):
        raise InsightFaceError(f"boxes must be [K, >=4] (x1, y1, x2, y2, ...), got shape "
                               f"{array.shape}")
    height, width = image_shape[:2]
    limit = MAX_BOX_TO_IMAGE * max(height, width)
    for number, (x1, y1, x2, y2) in enumerate(array[:, :4]):
        if not np.isfinite([x1, y1, x2, y2]).all() or x2 <= x1 or y2 <= y1:
            raise InsightFaceError(f"box {number}: expected finite x1 < x2, y1 < y2, got "
                                   f"{[x1.item(), y1.item(), x2.item(), y2.item()]}")
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise InsightFaceError(f"box {number}: {[x1.item(), y1.item(), x2.item(), y2.item()]} "
                                   f"lies outside the {width}x{height} image")
        if max(x2 - x1, y2 - y1) > limit:
            raise InsightFaceError(f"box {number}: {max(x2 - x1, y2 - y1).item():.0f} pixels "
                                   f"across, more than {MAX_BOX_TO_IMAGE:g}x the image's side")
    return array
