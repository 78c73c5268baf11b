"""Inputs: an image, a folder of images or a video, read as uint8 RGB frames."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG

import cv2
import numpy as np

from .checks import DEFAULT_MAX_PIXELS, check_pixels
from .errors import InsightFaceError
from .image_header import image_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def decode_image(data: bytes, source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Encoded bytes -> uint8 RGB [H, W, 3] (alpha dropped, grey expanded).

    The size the header declares is checked against `max_pixels` before decoding, so a small
    file that expands to gigabytes is refused without allocating them.
    """
    if not data:
        raise InsightFaceError(f"{source}: empty file")
    declared = image_size(data)
    if declared is not None:
        check_pixels(*declared, max_pixels, source)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. above OpenCV's own pixel limit in a format we cannot size
        raise InsightFaceError(f"{source}: cannot decode ({str(exc).strip().splitlines()[-1]})"
                               ) from None
    if image is None:
        raise InsightFaceError(f"{source}: not an image (cannot decode)")
    if declared is None:
        check_pixels(image.shape[1], image.shape[0], max_pixels, source)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file worth reading: 4 bytes per pixel (uncompressed RGBA) plus room
    for metadata."""
    return 4 * max_pixels + (16 << 20)


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
               ) -> np.ndarray:
    path = Path(path)
    try:
        stat = path.stat()  # before opening: opening a pipe would wait for a writer
        if S_ISDIR(stat.st_mode):
            raise InsightFaceError(f"{path}: is a folder, not an image file")
        if not S_ISREG(stat.st_mode):  # /dev/zero, a pipe: reading would never end
            raise InsightFaceError(f"{path}: not a regular file")
        if stat.st_size > max_file_bytes(max_pixels):
            raise InsightFaceError(
                f"{path}: {stat.st_size / 1e6:.0f} MB is more than an image within the pixel "
                "limit takes (raise it with --max_megapixels)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise InsightFaceError(f"{path}: no such file") from None
    except OSError as exc:
        raise InsightFaceError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, str(path), max_pixels)


def as_rgb(image: np.ndarray, channel_order: str) -> np.ndarray:
    """An ndarray from the caller -> uint8 RGB [H, W, 3]; `channel_order` is "bgr" or "rgb"."""
    if not isinstance(channel_order, str) or channel_order.lower() not in ("bgr", "rgb"):
        raise InsightFaceError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"{image.dtype} array" if isinstance(image, np.ndarray) else type(image).__name__
        raise InsightFaceError(f"image arrays must be uint8 [H, W, 3], got {kind}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InsightFaceError(f"image arrays must be [H, W, 3], got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InsightFaceError(f"image arrays must not be empty, got shape {image.shape}")
    image = image[:, :, :3]
    return np.ascontiguousarray(image[:, :, ::-1] if channel_order.lower() == "bgr" else image)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_folder_inputs(folder: Path) -> list[Path]:
    """The images and videos directly in `folder`, by name."""
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in suffixes)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _probe_video(path: Path) -> tuple[bool, float, int, int, int]:
    """(first frame readable, fps, frame count, width, height) of a video file."""
    capture = cv2.VideoCapture(str(path))
    try:
        ok, _ = capture.read() if capture.isOpened() else (False, None)
        return (bool(ok), capture.get(cv2.CAP_PROP_FPS) or 25.0,
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()


def _video_in_a_folder(path: Path) -> str:
    """Why a video in an input folder is not read: the one line reported for it."""
    if not _probe_video(path)[0]:
        return f"{path}: cannot read video"
    return (f"{path}: a video; a folder input reads only its images (give the video as --input "
            "on its own)")


@dataclass(frozen=True)
class Frame:
    #: file name for images, "<video name>#<frame number>" for video frames
    name: str
    rgb: np.ndarray


@dataclass(frozen=True)
class Unreadable:
    """An input of a folder that could not be read (or a video in it, which a folder input does
    not read): it is reported and skipped, not fatal."""

    name: str
    #: one line naming the file and the problem
    message: str


class InputSource:
    """What `--input` names: one image, every image in a folder, or every frame of a video.

    Iterating yields a `Frame` per readable image or video frame and an `Unreadable` per image
    of a folder that cannot be read and per video in a folder, in folder order: a video there is
    not passed over in silence, its line says it cannot be read or to give it on its own. A lone
    image or a video that cannot be read is refused here, before any model is loaded.
    """

    def __init__(self, path: str | os.PathLike[str],
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.path = Path(path)
        self.fps = 0.0
        self.max_pixels = max_pixels
        #: a lone image is decoded once, to check it, and kept for the prediction
        self._image: np.ndarray | None = None
        if not self.path.exists():
            raise InsightFaceError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.kind = "folder"
            try:
                #: images and videos in folder order; `files` holds the images
                self.inputs = list_folder_inputs(self.path)
            except OSError as exc:
                raise InsightFaceError(f"{self.path}: cannot list ({exc.strerror})") from None
            self.files = [path for path in self.inputs if not is_video(path)]
            if not self.files:
                videos = "; a video is read when given as --input on its own" if self.inputs \
                    else ""
                raise InsightFaceError(f"{self.path}: folder holds no images "
                                       f"({', '.join(sorted(IMAGE_SUFFIXES))}){videos}")
        elif is_video(self.path):
            self.kind = "video"
            self.files = self.inputs = [self.path]
            ok, self.fps, self.frame_count, width, height = _probe_video(self.path)
            if not ok:
                raise InsightFaceError(f"{self.path}: cannot read video")
            check_pixels(width, height, max_pixels, str(self.path))
        else:
            self.kind = "image"
            self.files = self.inputs = [self.path]
            # fail now, before any model is loaded
            self._image = read_image(self.path, max_pixels)

    def __len__(self) -> int:
        if self.kind == "folder":
            return len(self.inputs)
        return self.frame_count if self.kind == "video" else len(self.files)

    def __iter__(self) -> Iterator[Frame | Unreadable]:
        if self.kind == "video":
            yield from self._video_frames()
            return
        if self._image is not None:
            yield Frame(self.path.name, self._image)
            return
        for path in self.inputs:
            if is_video(path):
                yield Unreadable(path.name, _video_in_a_folder(path))
                continue
            try:
                yield Frame(path.name, read_image(path, self.max_pixels))
            except InsightFaceError as exc:
                yield Unreadable(path.name, str(exc))

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
