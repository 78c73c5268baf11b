"""Face image preprocessing for training and evaluation.

The definitions live in the runtime (`insightface_paddle`), so a trained model is fed exactly
as the runtime will feed it: decoding is `insightface_paddle.media.decode_image`, and resize,
normalisation (RGB, (pixel - 127.5) / 127.5) and CHW layout are `insightface_paddle.recognition.
preprocess_faces`; the mirror is its `mirror`. This module adds the training error type.
"""

from __future__ import annotations

import numpy as np

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.media import decode_image
from insightface_paddle.recognition import mirror, preprocess_faces

from ..errors import ArcFaceError


def decode_rgb(data: bytes | np.ndarray, source: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes (or a uint8 array of them) -> uint8 RGB [H, W, 3]; `source` names
    the file/record in errors."""
    if isinstance(data, np.ndarray):  # verification .bin files may hold uint8 arrays
        data = np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    try:
        return decode_image(bytes(data), source)
    except InsightFaceError as exc:
        raise ArcFaceError(str(exc)) from None


def normalize_chw(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] with the face normalisation (no resize when
    already at the model's 112x112)."""
    return preprocess_faces([rgb], input_size=(rgb.shape[1], rgb.shape[0]))[0]


#: mirror CHW images (or NCHW batches) left-right
hflip_chw = mirror
