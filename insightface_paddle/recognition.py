"""Face embedding: crops of an image in, one batched predictor call per `max_batch_size` faces.

Preprocessing (published MobileFace / ArcFace, and this project's exports unless their
`model_meta.json` says otherwise): crop, resize to 112x112 bilinearly in float32, RGB,
(v - 127.5) / 127.5. The resize runs on float pixels like the old tool's, which is what lets the
project reproduce its index features exactly; resizing uint8 first rounds pixels and moves
embeddings by up to 2e-4 in cosine.

The crop. Recognition models are trained on faces warped onto the 112x112 ArcFace template; the
detector has no landmarks, so the crop is the square that template occupies, estimated from the
box. Measured on the 1163 raw LFW photos with their five landmarks
(benchmarks/bench_lfw_raw_pipeline.py): a square of the box's longer side, centred 7.6% of that
side above the box centre (pixels outside the image are black, as in an alignment warp). The old
tool stretched the box itself to a square; on LFW pairs that scores 82.8% against 96.2% here
(99.7% when aligned with the true landmarks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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

FACE_NORMALIZATION = Normalization((127.5, 127.5, 127.5), (127.5, 127.5, 127.5), "RGB")
INPUT_SIZE = (112, 112)
#: the ArcFace template square relative to a BlazeFace box (see the module docstring)
SQUARE_SHIFT_UP = 0.076


@dataclass(frozen=True)
class ModelSignature:
    """What an index must agree on with the model that searches it."""

    name: str
    fingerprint: str
    embedding_size: int

    def describe(self) -> str:
        return f"{self.name} ({self.embedding_size}-D, weights sha256 {self.fingerprint[:12]})"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; float32 unless the input is float64."""
    x = np.asarray(x)
    x = x if x.dtype == np.float64 else x.astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def preprocess_faces(faces: Sequence[np.ndarray] | np.ndarray,
                     normalization: Normalization = FACE_NORMALIZATION,
                     input_size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """uint8 RGB faces [H, W, 3] (any sizes; a list or an [N, H, W, 3] array) -> float32
    [N, 3, h, w]: bilinear resize in float32 to `input_size` (width, height) where the size
    differs, then `normalization` (its mean/std and channel order). The one face preprocessing
    of the project: training data, evaluation and the runtime all call it."""
    width, height = input_size
    batch = np.empty((len(faces), 3, height, width), np.float32)
    for i, face in enumerate(faces):
        pixels = face.astype(np.float32)
        if pixels.shape[:2] != (height, width):
            pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
        normalization.into_chw(pixels, batch[i])
    return batch


def mirror(batch: np.ndarray) -> np.ndarray:
    """Preprocessed images [..., H, W] mirrored left-right (contiguous copy)."""
    return np.ascontiguousarray(batch[..., ::-1])


def flip_views(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """[N, 3, h, w] -> (emb(x), emb(mirrored x)), each raw [N, D], from ONE call of `run` on
    the 2N images (one predictor call is cheaper than two half-size ones)."""
    out = np.asarray(run(np.concatenate([batch, mirror(batch)])), np.float32)
    return out[:len(batch)], out[len(batch):]


def flip_embedding(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """The insightface test-time embedding: emb(x) + emb(mirrored x), raw [N, D]."""
    plain, mirrored = flip_views(run, batch)
    return plain + mirrored


def face_square(box: np.ndarray) -> np.ndarray:
    """A detector box (x1, y1, x2, y2, ...) -> the square (x1, y1, x2, y2) to embed."""
    side = max(box[2] - box[0], box[3] - box[1])
    cx = (box[0] + box[2]) / 2
    cy = (box[1] + box[3]) / 2 - SQUARE_SHIFT_UP * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def crop_padded(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The pixels of `box`, black where it leaves the image (at least 1x1)."""
    height, width = image.shape[:2]
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = max(int(np.ceil(box[2])), x1 + 1), max(int(np.ceil(box[3])), y1 + 1)
    out = np.zeros((y2 - y1, x2 - x1, image.shape[2]), image.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out


def crop_face(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The face square of a detector box (see `face_square`)."""
    return crop_padded(image, face_square(box))


def input_size_from_meta(size: object, folder: Path) -> tuple[int, int]:
    """`model_meta.json`'s input size [width, height]: two positive integers."""
    if (not isinstance(size, list) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096
                       for v in size)):
        raise InsightFaceError(f"{folder}/model_meta.json: input size must be [width, height] "
                               f"in pixels (integers 1..4096), got {size!r}")
    return size[0], size[1]


class FaceEmbedder:
    def __init__(self, predictor: Predictor, name: str,
                 normalization: Normalization = FACE_NORMALIZATION,
                 input_size: tuple[int, int] = INPUT_SIZE, max_batch_size: int = 8) -> None:
        if len(predictor.input_names) != 1:
            raise InsightFaceError(f"{name}: a recognition model takes one input, this one takes "
                                   f"{predictor.input_names}")
        if max_batch_size < 1:
            raise InsightFaceError(f"--max_batch_size must be >= 1, got {max_batch_size}")
        self.predictor = predictor
        self.normalization = normalization
        self.input_size = input_size
        self.max_batch_size = max_batch_size
        self._input = predictor.input_names[0]
        probe = self.run(np.zeros((1, 3, input_size[1], input_size[0]), np.float32))
        if probe.ndim != 2:
            raise InsightFaceError(f"{name}: output shape {probe.shape} is not [batch, dim]")
        self.signature = ModelSignature(name, predictor.fingerprint, int(probe.shape[1]))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], name: str | None = None,
                    options: PredictorOptions | None = None, **kwargs) -> FaceEmbedder:
        folder = Path(folder)
        meta = read_model_meta(folder)
        if meta is not None:
            kwargs.setdefault("normalization", normalization_from_meta(meta, folder))
            size = meta.get("input", {}).get("size")
            if size:
                kwargs.setdefault("input_size", input_size_from_meta(size, folder))
            name = name or meta.get("name")
        width, height = kwargs.get("input_size", INPUT_SIZE)
        zeros = np.zeros((1, 3, height, width), np.float32)

        def probe(predictor: Predictor) -> None:
            if len(predictor.input_names) == 1:  # others (detectors) are refused by __init__
                predictor.run({predictor.input_names[0]: zeros})

        return cls(create_predictor(folder, options, probe=probe), name or folder.name, **kwargs)

    def preprocess(self, rgb: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """uint8 RGB [H, W, 3] and detector boxes [K, >=4] (None = the whole image) ->
        [K, 3, h, w] of their face squares."""
        crops = [rgb] if boxes is None else [crop_face(rgb, b) for b in boxes]
        return self.preprocess_images(crops)

    def preprocess_images(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Whole uint8 RGB images (gallery photos, aligned faces) -> [N, 3, h, w]."""
        return preprocess_faces(images, self.normalization, self.input_size)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """[N, 3, h, w] preprocessed -> raw embeddings [N, D], `max_batch_size` at a time."""
        outputs = [
            self.predictor.run({self._input: batch[i:i + self.max_batch_size]})[0]
            for i in range(0, len(batch), self.max_batch_size)
        ]
        if not outputs:
            size = getattr(getattr(self, "signature", None), "embedding_size", 0)
            return np.zeros((0, size), np.float32)
        return np.concatenate(outputs).astype(np.float32)

    def embed(self, rgb: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """Unit embeddings [K, D] of the faces in `boxes` (or of the whole image)."""
        return l2_normalize(self.run(self.preprocess(rgb, boxes)))
