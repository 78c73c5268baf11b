"""Inputs: an image, a folder of images or a video, read as uint8 RGB frames."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InsightFaceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Encoded bytes -> uint8 RGB [H, W, 3] (alpha dropped, grey expanded)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise InsightFaceError(f"{source}: not an image (cannot decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InsightFaceError(f"{path}: no such file") from None
    except OSError as exc:
        raise InsightFaceError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, str(path))


def as_rgb(image: np.ndarray, channel_order: str) -> np.ndarray:
    """An ndarray from the caller -> uint8 RGB [H, W, 3]; `channel_order` is "bgr" or "rgb"."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InsightFaceError("image arrays must be uint8 [H, W, 3]")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InsightFaceError(f"image arrays must be [H, W, 3], got shape {image.shape}")
    order = channel_order.lower()
    if order not in ("bgr", "rgb"):
        raise InsightFaceError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if order == "bgr" else image)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class Frame:
    #: file name for images, "<video name>#<frame number>" for video frames
    name: str
    rgb: np.ndarray


class InputSource:
    """What `--input` names: one image, every image in a folder, or every frame of a video."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fps = 0.0
        #: a lone image is decoded once, to check it, and kept for the prediction
        self._image: np.ndarray | None = None
        if not self.path.exists():
            raise InsightFaceError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.kind = "folder"
            self.files = list_images(self.path)
            if not self.files:
                raise InsightFaceError(f"{self.path}: folder holds no images "
                                       f"({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self.kind = "video"
            self.files = [self.path]
            capture = cv2.VideoCapture(str(self.path))
            ok, _ = capture.read() if capture.isOpened() else (False, None)
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            capture.release()
            if not ok:
                raise InsightFaceError(f"{self.path}: cannot read video")
        else:
            self.kind = "image"
            self.files = [self.path]
            self._image = read_image(self.path)  # fail now, before any model is loaded

    def __len__(self) -> int:
        return self.frame_count if self.kind == "video" else len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames()
            return
        if self._image is not None:
            yield Frame(self.path.name, self._image)
            return
        for path in self.files:
            yield Frame(path.name, read_image(path))

    def _video_frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            number = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(f"{self.path.name}#{number}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                number += 1
        finally:
            capture.release()
