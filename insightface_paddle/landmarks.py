"""The landmark stage: facial keypoints of each detected face, from MediaPipe's short-range
BlazeFace (the `BlazeFaceKeypoints` model folder; tools/convert_mediapipe_face.py makes it).

That model was trained on faces filling a good part of its 128x128 input and misses small faces
in a whole group photo, so it runs on a square around each box of the main detector, expanded
`EXPANSION` times. Of its 896 anchors the best-scoring one whose box centre lies inside the
detector's box is decoded (the others may be a neighbour's face); none scoring `MIN_SCORE` means
no keypoints, and the caller falls back to the face square.

Decoding (the folder's `model_meta.json`): per anchor, 16 regressors are the box (cx, cy, w, h)
and the keypoints (x, y), in input pixels relative to the anchor centre; anchors sit at cell
centres of a 16x16 grid (2 per cell) and an 8x8 grid (6 per cell); score = sigmoid(logit).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InsightFaceError
from .predictor import (
    Normalization,
    Predictor,
    PredictorOptions,
    create_predictor,
    normalization_from_meta,
    read_model_meta,
)
from .recognition import crop_padded
from .workers import executor, parallel_workers

EXPANSION = 2.5
MIN_SCORE = 0.5
#: the model is tiny (about 100k parameters) and its per-op cost dominates: each call runs on one
#: thread, and where the predictor takes concurrent calls (ONNX Runtime) a photo's faces are split
#: among the worker threads, each cutting its crops and running the model on them (the 6 faces of
#: friends2.jpg: crops and keypoints 14-15.5 ms split in two, 17-21 ms as one call on crops made
#: in parallel; one face alone, as in a gallery photo, runs in 1.7 ms on one ONNX Runtime thread
#: against 2.6 ms on two). paddle.inference predictors take one call at a time.
KEYPOINT_THREADS = 1


def _preferred_backend(folder: Path, options: PredictorOptions) -> str:
    """ONNX Runtime when the folder has the converter's `model.onnx` and onnxruntime is
    installed (on CPU it runs this tiny network ~2x faster than paddle.inference, whose
    per-op cost dominates here), unless the options name a backend or a GPU."""
    if options.backend != "auto" or options.use_gpu or not (folder / "model.onnx").is_file():
        return options.backend
    return "onnx" if importlib.util.find_spec("onnxruntime") else "auto"


def anchor_centres(meta: dict[str, Any], input_size: int) -> np.ndarray:
    """[A, 2] anchor centres in input pixels, in the model's order (grid row, column, anchor)."""
    spec = meta["anchors"]
    offset = float(spec.get("offset", 0.5))
    centres = []
    for cells, per_cell in spec["grids"]:
        axis = (np.arange(cells) + offset) * input_size / cells
        ys, xs = np.meshgrid(axis, axis, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass(frozen=True)
class Square:
    """An axis-aligned square crop of an image, in whole pixels."""

    x: int
    y: int
    side: int


def expanded_square(box: np.ndarray, expansion: float = EXPANSION) -> Square:
    side = max(box[2] - box[0], box[3] - box[1]) * expansion
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side_px = max(1, round(side))
    return Square(round(cx - side_px / 2), round(cy - side_px / 2), side_px)


class KeypointModel:
    def __init__(self, predictor: Predictor, meta: dict[str, Any], source: Path) -> None:
        try:
            size = meta["input"]["size"]
            self.input_size = int(size[0])
            self.keypoint_names: list[str] = [str(n) for n in meta["keypoints"]]
            self.anchors = anchor_centres(meta, self.input_size)
            regressors = meta["regressors"]
            self.per_anchor = int(regressors["per_anchor"])
            self.unit = self.input_size * float(meta["anchors"].get("size", 1.0)) / float(
                regressors["scale"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InsightFaceError(f"{source}: not a keypoint model's metadata ({exc})") from None
        if self.per_anchor != 4 + 2 * len(self.keypoint_names):
            raise InsightFaceError(f"{source}: {self.per_anchor} regressors per anchor do not "
                                   f"hold a box and {len(self.keypoint_names)} keypoints")
        self.normalization: Normalization = normalization_from_meta(meta, source)
        self.predictor = predictor
        self._input = predictor.input_names[0]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str],
                    options: PredictorOptions | None = None) -> KeypointModel:
        folder = Path(folder)
        meta = read_model_meta(folder)
        if meta is None or meta.get("task") != "keypoints":
            raise InsightFaceError(f"{folder}: not a keypoint model (model_meta.json with task "
                                   "'keypoints' expected)")
        size = int(meta.get("input", {}).get("size", [128])[0])
        probe = np.zeros((1, 3, size, size), np.float32)
        options = options or PredictorOptions()
        options = replace(options, backend=_preferred_backend(folder, options),
                          cpu_threads=KEYPOINT_THREADS)
        predictor = create_predictor(folder, options,
                                     probe=lambda p: p.run({p.input_names[0]: probe}))
        return cls(predictor, meta, folder)

    def prepare(self, rgb: np.ndarray, squares: list[Square]) -> np.ndarray:
        """uint8 RGB and crop squares -> the model's input [K, 3, s, s]. The crops are made on
        the shared worker threads (one after another when called on one of them): area-resizing
        a ~500 px square to 128 takes ~1.4 ms, and the 6 faces of a 1920x1080 photo took 10.4 ms
        one after another, 7.1 ms on 2 cores."""
        size = self.input_size
        batch = np.zeros((len(squares), 3, size, size), np.float32)

        def fill(i: int) -> None:
            sq = squares[i]
            crop = crop_padded(rgb, np.array([sq.x, sq.y, sq.x + sq.side, sq.y + sq.side]))
            shrink = sq.side > size
            resized = cv2.resize(crop, (size, size),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            self.normalization.into_chw(resized, batch[i])

        if len(squares) > 1 and parallel_workers() > 1:
            list(executor().map(fill, range(len(squares))))
        else:
            for i in range(len(squares)):
                fill(i)
        return batch

    def _infer(self, rgb: np.ndarray, squares: list[Square]) -> tuple[np.ndarray, np.ndarray]:
        """-> the model's regressors [K, A, R] and logits [K, A] for the crops of `squares`."""
        batch = self.prepare(rgb, squares)
        regressors, logits = self.predictor.run({self._input: batch})[:2]
        return regressors, logits.reshape(len(squares), -1)

    def _infer_all(self, rgb: np.ndarray, squares: list[Square]
                   ) -> tuple[np.ndarray, np.ndarray]:
        """`_infer` over all squares; split among the worker threads (crops and model call in
        each) when the predictor takes concurrent calls, else one call on crops made in
        parallel. A share runs on a pool thread, so its crops are made there one by one."""
        parts = min(parallel_workers(), len(squares))
        if parts < 2 or not self.predictor.concurrent_runs:
            return self._infer(rgb, squares)
        shares = [[squares[i] for i in part]
                  for part in np.array_split(np.arange(len(squares)), parts)]
        outputs = list(executor().map(lambda share: self._infer(rgb, share), shares))
        return (np.concatenate([o[0] for o in outputs]),
                np.concatenate([o[1] for o in outputs]))

    def decode(self, regressors: np.ndarray, logits: np.ndarray, inner: tuple[float, float,
               float, float]) -> np.ndarray | None:
        """One crop's outputs [A, R], [A] -> keypoints [P, 2] in input pixels (pixel edges at
        integers), or None. `inner` (x1, y1, x2, y2): where the face's centre may lie."""
        scores = 0.5 * (1.0 + np.tanh(0.5 * logits))  # the sigmoid, without overflow
        centres = regressors[:, :2] * self.unit + self.anchors
        inside = ((centres[:, 0] >= inner[0]) & (centres[:, 0] <= inner[2]) &
                  (centres[:, 1] >= inner[1]) & (centres[:, 1] <= inner[3]))
        candidates = np.flatnonzero(inside & (scores >= MIN_SCORE))
        if not len(candidates):
            return None
        best = candidates[np.argmax(scores[candidates])]
        points = regressors[best, 4:].reshape(-1, 2) * self.unit + self.anchors[best]
        return points.astype(np.float32)

    def locate(self, rgb: np.ndarray, boxes: np.ndarray) -> list[np.ndarray | None]:
        """uint8 RGB and detector boxes [K, >=4] -> per box its keypoints [P, 2] in image
        pixels (OpenCV's convention: pixel centres at integers), or None when none are found."""
        if not len(boxes):
            return []
        squares = [expanded_square(b) for b in boxes]
        regressors, logits = self._infer_all(rgb, squares)
        found: list[np.ndarray | None] = []
        for box, sq, reg, logit in zip(boxes, squares, regressors, logits, strict=True):
            to_input = self.input_size / sq.side
            inner = ((box[0] - sq.x) * to_input, (box[1] - sq.y) * to_input,
                     (box[2] - sq.x) * to_input, (box[3] - sq.y) * to_input)
            points = self.decode(reg, logit, inner)
            found.append(None if points is None else
                         points / to_input + np.array([sq.x, sq.y], np.float32) - 0.5)
        return found
