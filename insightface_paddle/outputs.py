"""`--output`: drawn images (same names as the inputs) or a drawn video, never over other files.

The folder is checked and made before any model loads, and removed again if the run fails
before drawing anything. A file already there is replaced only if this tool drew it: the names
it drew are listed in a manifest (`.insightfacepaddle-drawn.txt`) beside them, so a rerun into
the same folder works while a user's own `photo.jpg` there is refused up front.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .draw import draw_faces
from .errors import InsightFaceError
from .fileio import atomic_open
from .folders import make_folder, remove_empty
from .media import Frame, InputSource

if TYPE_CHECKING:
    from .api import Face

MANIFEST = ".insightfacepaddle-drawn.txt"


class OutputFolder:
    def __init__(self, folder: Path, source: InputSource, identities: Sequence[str] = (),
                 **draw_options: Any) -> None:
        """`identities` and `draw_options` are passed on to `draw_faces`."""
        if folder.exists() and not folder.is_dir():
            raise InsightFaceError(f"--output {folder}: exists and is not a folder")
        inputs = source.path if source.kind == "folder" else source.path.parent
        if folder.resolve() == inputs.resolve():
            raise InsightFaceError(f"--output {folder}: is where the inputs are; the drawings "
                                   "would replace them")
        self.folder = folder
        self.source = source
        self.identities = list(identities)
        self.draw_options = draw_options
        self._video = source.kind == "video"
        names = ([source.path.with_suffix(".mp4").name] if self._video
                 else [path.name for path in source.files])
        self._drawn = self._read_manifest()
        self._check_targets(names)
        self._created = make_folder(folder, "--output")
        self._writer: cv2.VideoWriter | None = None
        self._video_tmp: Path | None = None
        self.wrote_any = False

    # -- checks before any model loads ------------------------------------------------------
    def _read_manifest(self) -> set[str]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return set()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return {json.loads(line) for line in lines if line.strip()}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InsightFaceError(f"--output {self.folder}: unreadable {MANIFEST} ({exc})"
                                   ) from None

    def _check_targets(self, names: list[str]) -> None:
        inputs = {path.resolve() for path in self.source.files}
        for name in names:
            target = self.folder / name
            if target.resolve() in inputs:
                raise InsightFaceError(f"--output {self.folder}: drawing {name} would replace "
                                       f"the input {target.resolve()}")
            if (target.exists() or target.is_symlink()) and name not in self._drawn:
                raise InsightFaceError(
                    f"--output {self.folder}: {name} exists and was not drawn by "
                    "insightfacepaddle; choose another folder or move it away")

    # -- writing ----------------------------------------------------------------------------
    def _claim(self, name: str) -> Path:
        """List `name` in the manifest before its file appears, so a rerun may replace it."""
        if name not in self._drawn:
            with open(self.folder / MANIFEST, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(name) + "\n")
            self._drawn.add(name)
        self.wrote_any = True
        return self.folder / name

    def draw(self, frame: Frame, faces: Sequence[Face]) -> None:
        canvas = cv2.cvtColor(draw_faces(frame.rgb, faces, self.identities,
                                         **self.draw_options), cv2.COLOR_RGB2BGR)
        if self._video:
            self._add_frame(canvas)
            return
        target = self.folder / frame.name
        ok, data = cv2.imencode(target.suffix or ".png", canvas)
        if not ok:
            raise InsightFaceError(f"{target}: cannot encode the drawn image")
        with atomic_open(self._claim(frame.name), "wb") as handle:
            handle.write(data.tobytes())

    def _add_frame(self, bgr: np.ndarray) -> None:
        if self._writer is None:
            fd, name = tempfile.mkstemp(prefix=".drawn.", suffix=".tmp.mp4", dir=self.folder)
            os.close(fd)
            self._video_tmp = Path(name)
            height, width = bgr.shape[:2]
            self._writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.source.fps, (width, height))
            if not self._writer.isOpened():
                raise InsightFaceError(f"{self.folder}: cannot write video")
        self._writer.write(bgr)

    def finish(self) -> None:
        """Put the drawn video in place (images are in place as soon as they are drawn)."""
        if self._writer is None or self._video_tmp is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._video_tmp, self._claim(self.source.path.with_suffix(".mp4").name))
        self._video_tmp = None

    def close(self) -> None:
        """Drop an unfinished video and the folders made here if nothing was drawn."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._video_tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._video_tmp.unlink()
            self._video_tmp = None
        remove_empty(self._created)
