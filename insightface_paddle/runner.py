"""The loop over an input source: read ahead, predict, draw; a bad file is skipped, not fatal.

The next images are decoded on a thread (`prefetch`) while the predictors work on the current
one, so a folder runs at the predictors' speed. An image that cannot be read or inferred is
reported through `on_failure` (the CLI prints one line) and the loop goes on; the caller decides
the exit status from `report.failures`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm import tqdm

from .errors import InsightFaceError
from .media import InputSource, Unreadable
from .prefetch import prefetch
from .report import RunReport

if TYPE_CHECKING:
    from .api import InsightFace
    from .outputs import OutputFolder


def predict_source(app: InsightFace, source: InputSource, report: RunReport,
                   output: OutputFolder | None = None,
                   on_failure: Callable[[Unreadable], None] | None = None,
                   read_ahead: bool = True) -> RunReport:
    """Predict every frame of `source` into `report` (and `output`); returns `report`."""
    unit = "frame" if source.kind == "video" else "image"
    items = prefetch(source) if read_ahead and len(source) > 1 else iter(source)
    # a bar on a terminal only: in a pipe or a log it would be noise between the messages
    bar = tqdm(items, total=len(source), desc="predict", unit=unit, file=sys.stderr,
               disable=True if len(source) < 2 else None)
    with bar:
        for item in bar:
            if isinstance(item, Unreadable):
                _fail(report, item, on_failure)
                continue
            try:
                faces = app.predict_rgb(item.rgb)
            except InsightFaceError as exc:
                _fail(report, Unreadable(item.name, str(exc)), on_failure)
                if output is not None and source.kind == "video":
                    output.draw(item, [])  # the drawn video keeps every frame
                continue
            if output is not None:
                output.draw(item, faces)
            report.results.append((item.name, faces))
    if output is not None:
        output.finish()
    return report


def _fail(report: RunReport, item: Unreadable,
          on_failure: Callable[[Unreadable], None] | None) -> None:
    report.failures.append(item)
    if on_failure is not None:
        on_failure(item)
