"""The crop policy: which pixels of a detected face the recognizer sees. Queries, gallery
photos (`--detect_gallery`), `embed` and the benchmarks all crop through `FaceCropper`.

  keypoints  the landmark stage (landmarks.py) finds the eyes, nose tip and mouth centre, and
             a similarity warp puts them on the 112x112 ArcFace template, as in training; where
             it finds none, the face square is used and the face says so (`crop`)
  none       the face square of the detector box (recognition.face_square)

`keypoints` is the default where the `BlazeFaceKeypoints` model folder exists; without it the
default falls back to `none` with one line saying how to make the folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from . import zoo
from .alignment import TEMPLATE_POINTS, warp_to_template
from .errors import InsightFaceError
from .landmarks import KeypointModel
from .predictor import PredictorOptions
from .recognition import crop_face

log = logging.getLogger(__name__)

ALIGN_CHOICES = ("keypoints", "none")
KEYPOINT_MODEL = "BlazeFaceKeypoints"

#: `FaceCrop.crop` values
ALIGNED = "aligned"
FACE_SQUARE = "face square"
FALLBACK = "face square (no keypoints found)"
WHOLE_IMAGE = "whole image"


@dataclass
class FaceCrop:
    #: uint8 RGB pixels for the recognizer
    image: np.ndarray
    #: one of ALIGNED, FACE_SQUARE, FALLBACK, WHOLE_IMAGE
    crop: str
    #: keypoints [P, 2] in image pixels, None when not found or not asked for
    landmarks: np.ndarray | None = None


class FaceCropper:
    def __init__(self, align: str, keypoints: KeypointModel | None = None) -> None:
        if align not in ALIGN_CHOICES:
            raise InsightFaceError(f"--align must be one of {', '.join(ALIGN_CHOICES)}, "
                                   f"got {align!r}")
        if align == "keypoints" and keypoints is None:
            raise InsightFaceError("--align keypoints needs a keypoint model")
        self.align = align
        self.keypoints = keypoints if align == "keypoints" else None
        if self.keypoints is not None:
            names = self.keypoints.keypoint_names
            self._used = [i for i, n in enumerate(names) if n in TEMPLATE_POINTS]
            if len(self._used) < 3:
                raise InsightFaceError(f"the keypoint model's points {names} hold fewer than "
                                       "three of the template's")
            self._template = np.stack([TEMPLATE_POINTS[names[i]] for i in self._used])

    def crop(self, rgb: np.ndarray, boxes: np.ndarray) -> list[FaceCrop]:
        """uint8 RGB [H, W, 3] and detector boxes [K, >=4] -> K crops, in box order."""
        if self.keypoints is None:
            return [FaceCrop(crop_face(rgb, b), FACE_SQUARE) for b in boxes]
        out = []
        for box, points in zip(boxes, self.keypoints.locate(rgb, boxes), strict=True):
            if points is None:
                out.append(FaceCrop(crop_face(rgb, box), FALLBACK))
            else:
                image = warp_to_template(rgb, points[self._used], self._template)
                out.append(FaceCrop(image, ALIGNED, points))
        return out


def make_cropper(align: str | None, model: str | os.PathLike[str] = KEYPOINT_MODEL,
                 options: PredictorOptions | None = None) -> FaceCropper:
    """`align` None: keypoints when `model` can be found, else none (saying how to get it)."""
    if align is None:
        try:
            folder = zoo.resolve(model, "keypoints")
        except InsightFaceError as exc:
            log.warning("faces are not aligned (--align none): %s", exc)
            return FaceCropper("none")
        return FaceCropper("keypoints", KeypointModel.from_folder(folder, options))
    if align == "keypoints":
        return FaceCropper(align, KeypointModel.from_folder(zoo.resolve(model, "keypoints"),
                                                            options))
    return FaceCropper(align)
