"""Face image preprocessing shared by training, evaluation and export metadata.

One definition: RGB, (pixel - 127.5) / 127.5, CHW. The exported model's metadata records these
constants so the runtime preprocesses exactly as training did.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ArcFaceError

#: per-channel mean and std in RGB order on the 0..255 scale: (v/255 - 0.5) / 0.5
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)
CHANNEL_ORDER = "RGB"


def decode_rgb(data: bytes | np.ndarray, source: str = "<bytes>") -> np.ndarray:
    """Encoded image bytes -> uint8 RGB [H, W, 3]; `source` names the file/record in errors."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise ArcFaceError(f"{source}: not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def normalize_chw(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] with the training mean/std."""
    mean = np.asarray(MEAN, dtype=np.float32)
    std = np.asarray(STD, dtype=np.float32)
    return ((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1).copy()


def hflip_chw(batch: np.ndarray) -> np.ndarray:
    """Mirror CHW images (or NCHW batches) left-right."""
    return np.ascontiguousarray(batch[..., ::-1])
