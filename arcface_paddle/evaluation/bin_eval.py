"""Score any embedding function on an insightface verification set (LFW, CFP-FP, AgeDB-30 `.bin`).

Images go through the training preprocessing (`data.transforms`); with `flip` each embedding is
emb(x) + emb(mirrored x), as insightface evaluates. Pairs are scored by the one 10-fold protocol
in `verification.py`. The embedding function sees float32 NCHW batches and returns numpy, so a
dynamic layer, a `paddle.inference` predictor or onnxruntime plug in alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import cv2
import numpy as np
import paddle
from tqdm import tqdm

from ..data.transforms import decode_rgb, hflip_chw, normalize_chw
from ..data.verification_bin import VerificationSet
from ..errors import ArcFaceError
from .verification import VerificationResult, pair_cosine, ten_fold_accuracy

IMAGE_SIZE = 112

#: float32 [B, 3, 112, 112] -> embeddings [B, D]
EmbedFn = Callable[[np.ndarray], np.ndarray]


def preprocess(data: bytes, source: str) -> np.ndarray:
    """Encoded face -> float32 [3, 112, 112], resized only when not already 112x112."""
    rgb = decode_rgb(data, source)
    if rgb.shape[:2] != (IMAGE_SIZE, IMAGE_SIZE):
        rgb = cv2.resize(rgb, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    return normalize_chw(rgb)


def embed_views(embed_fn: EmbedFn, images: Sequence[bytes], batch_size: int = 64,
                mirror: bool = True, name: str = "images") -> tuple[np.ndarray, np.ndarray | None]:
    """Encoded images -> (emb(x) [N, D], emb(mirrored x) [N, D] or None), float32, in order;
    `name` labels errors and the progress bar."""
    if batch_size < 1:
        raise ArcFaceError(f"batch_size must be positive, got {batch_size}")
    if not images:
        raise ArcFaceError(f"{name}: no images to embed")
    plain, mirrored = [], []
    for start in tqdm(range(0, len(images), batch_size), desc=f"embedding {name}",
                      unit="batch", leave=False):
        batch = np.stack([preprocess(images[i], f"{name} image {i}")
                          for i in range(start, min(start + batch_size, len(images)))])
        plain.append(np.asarray(embed_fn(batch), dtype=np.float32))
        if mirror:
            mirrored.append(np.asarray(embed_fn(hflip_chw(batch)), dtype=np.float32))
    return np.concatenate(plain), np.concatenate(mirrored) if mirror else None


def embed_images(embed_fn: EmbedFn, images: Sequence[bytes], batch_size: int = 64,
                 flip: bool = True, name: str = "images") -> np.ndarray:
    """Encoded images -> embeddings float32 [N, D]: emb(x), plus emb(mirrored x) with `flip`."""
    plain, mirrored = embed_views(embed_fn, images, batch_size, flip, name)
    return plain if mirrored is None else plain + mirrored


def evaluate_verification_set(embed_fn: EmbedFn, vset: VerificationSet, batch_size: int = 64,
                              flip: bool = True) -> VerificationResult:
    """Embed every image of `vset` and report the 10-fold accuracy of its pairs."""
    if len(vset.images) != 2 * len(vset.issame):
        raise ArcFaceError(f"{vset.name}: {len(vset.images)} images for {len(vset.issame)} pairs;"
                           " need two images per pair")
    embeddings = embed_images(embed_fn, vset.images, batch_size, flip, vset.name)
    return ten_fold_accuracy(pair_cosine(embeddings), vset.issame)


def paddle_layer_embed_fn(layer: paddle.nn.Layer) -> EmbedFn:
    """A dynamic layer as an EmbedFn: eval mode and no gradient while it runs; the layer's
    train/eval mode is restored afterwards, so a trainer can validate mid-run."""

    def embed(batch: np.ndarray) -> np.ndarray:
        was_training = layer.training
        layer.eval()
        try:
            with paddle.no_grad():
                return layer(paddle.to_tensor(batch)).astype("float32").numpy()
        finally:
            if was_training:
                layer.train()

    return embed
