"""Draw faces onto an image: box, name and similarity (or detection score)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .api import Face

#: distinct, readable colours (RGB); a label always gets the same one
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40),
           (128, 0, 0), (0, 0, 128)]
UNKNOWN_COLOUR = (160, 160, 160)
LANDMARK_COLOUR = (255, 255, 0)


def colour_for(label: str | None, identities: Sequence[str] = ()) -> tuple[int, int, int]:
    """A stable colour: by the label's place among `identities` (distinct for up to 12 of
    them), else by a hash of the label."""
    if label is None or label == "unknown":
        return UNKNOWN_COLOUR
    if label in identities:
        return PALETTE[list(identities).index(label) % len(PALETTE)]
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def caption(face: Face) -> str:
    if face.label is None:
        return f"face {face.score:.3f}"
    if face.similarity is None:
        return face.label
    return f"{face.label} {face.similarity:.3f}"


def draw_faces(rgb: np.ndarray, faces: Sequence[Face], identities: Sequence[str] = (),
               landmarks: bool = False) -> np.ndarray:
    """uint8 RGB image -> a copy with every face drawn (with `landmarks`, its keypoints as
    dots too); scales line and text to the image."""
    canvas = rgb.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    font_scale = max(0.4, max(canvas.shape[:2]) / 1600)
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        colour = colour_for(face.label, identities)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        if landmarks and face.landmarks is not None:
            radius = max(2, round(max(x2 - x1, y2 - y1) / 40))
            for x, y in face.landmarks:
                cv2.circle(canvas, (round(float(x)), round(float(y))), radius, LANDMARK_COLOUR,
                           cv2.FILLED, cv2.LINE_AA)
        text = caption(face)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, y1 - th - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, cv2.FILLED)
        cv2.putText(canvas, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas
