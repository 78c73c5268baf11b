"""Score a model on an insightface verification set (LFW, CFP-FP, AgeDB-30 `.bin`).

Faces are decoded batch by batch and go through the runtime's one face preprocessing
(`insightface_paddle.recognition.preprocess_faces`, with the model's own normalisation and input
size); the embedding is emb(x) + emb(mirrored x) (`flip_views`), as insightface evaluates.
Memory holds the encoded set and the embeddings, never float copies of every image. Pairs are
scored by the one 10-fold protocol in `verification.py`.

The model is anything with `run(batch [N, 3, h, w] float32) -> [N, D]`, `normalization` and
`input_size`: a runtime `FaceEmbedder` (paddle.inference / onnxruntime, what `engines.py`
builds for checkpoints too), a `LayerEmbedder` around a dynamic layer, or a bare function of
the batch (taken with the default face preprocessing).

With several ranks `evaluate_sets` splits the faces of a set over the ranks and gathers the
embeddings, so every rank works on its share and none waits in a barrier for long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import paddle
from tqdm import tqdm

from insightface_paddle.predictor import Normalization
from insightface_paddle.recognition import (
    FACE_NORMALIZATION,
    INPUT_SIZE,
    flip_views,
    preprocess_faces,
)

from .. import distributed
from ..data.transforms import decode_rgb
from ..data.verification_bin import VerificationSet
from ..errors import ArcFaceError
from .verification import VerificationResult, pair_cosine, ten_fold_accuracy

#: float32 [B, 3, 112, 112] -> embeddings [B, D]
EmbedFn = Callable[[np.ndarray], np.ndarray]


class Embedder(Protocol):
    normalization: Normalization
    input_size: tuple[int, int]

    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class FunctionEmbedder:
    """A bare embedding function with the default face preprocessing."""

    fn: EmbedFn
    normalization: Normalization = FACE_NORMALIZATION
    input_size: tuple[int, int] = INPUT_SIZE

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(batch), np.float32)


ModelLike = Embedder | EmbedFn


def as_embedder(model: ModelLike) -> Embedder:
    return model if hasattr(model, "run") else FunctionEmbedder(model)  # type: ignore[return-value]


class LayerEmbedder:
    """A dynamic layer run eagerly (or through `paddle.jit.to_static` of a copy's forward),
    in eval mode and without gradient; the layer's train/eval mode is restored afterwards,
    so a trainer can validate mid-run."""

    normalization = FACE_NORMALIZATION
    input_size = INPUT_SIZE

    def __init__(self, layer: paddle.nn.Layer, to_static: bool = False) -> None:
        self.layer = layer
        self._forward = paddle.jit.to_static(layer.forward, full_graph=True) if to_static \
            else layer

    def run(self, batch: np.ndarray) -> np.ndarray:
        was_training = self.layer.training
        self.layer.eval()
        try:
            with paddle.no_grad():
                return self._forward(paddle.to_tensor(batch)).astype("float32").numpy()
        finally:
            if was_training:
                self.layer.train()


def paddle_layer_embed_fn(layer: paddle.nn.Layer) -> EmbedFn:
    """A dynamic layer as an EmbedFn (see `LayerEmbedder`)."""
    return LayerEmbedder(layer).run


def embed_views(model: ModelLike, images: Sequence[bytes], batch_size: int = 64,
                mirror: bool = True, name: str = "images", progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Encoded images -> (emb(x) [N, D], emb(mirrored x) [N, D] or None), raw float32, in
    order; `name` labels errors and the progress bar."""
    if batch_size < 1:
        raise ArcFaceError(f"--batch_size must be positive, got {batch_size}")
    if not len(images):
        raise ArcFaceError(f"{name}: no images to embed")
    embedder = as_embedder(model)
    plain, mirrored = [], []
    for start in tqdm(range(0, len(images), batch_size), desc=f"embedding {name}",
                      unit="batch", leave=False,
                      disable=None if progress else True):  # None: only on a terminal
        stop = min(start + batch_size, len(images))
        faces = [decode_rgb(images[i], f"{name} image {i}") for i in range(start, stop)]
        batch = preprocess_faces(faces, embedder.normalization, embedder.input_size)
        if mirror:
            a, b = flip_views(embedder.run, batch)
            plain.append(a)
            mirrored.append(b)
        else:
            plain.append(np.asarray(embedder.run(batch), np.float32))
    return np.concatenate(plain), np.concatenate(mirrored) if mirror else None


def embed_images(model: ModelLike, images: Sequence[bytes], batch_size: int = 64,
                 flip: bool = True, name: str = "images") -> np.ndarray:
    """Encoded images -> embeddings float32 [N, D]: emb(x), plus emb(mirrored x) with `flip`."""
    plain, mirrored = embed_views(model, images, batch_size, flip, name)
    return plain if mirrored is None else plain + mirrored


@dataclass(frozen=True)
class SetReport:
    """The scores of one verification set."""

    name: str
    pairs: int
    result: VerificationResult
    #: mean L2 norm of the (unflipped) embeddings before normalisation
    xnorm: float
    #: cosine similarity of each pair [N] and its label [N], for the ROC curve
    cosine: np.ndarray
    issame: np.ndarray

    @property
    def accuracy(self) -> float:
        return self.result.accuracy

    @property
    def accuracy_std(self) -> float:
        return self.result.accuracy_std

    @property
    def fold_accuracies(self) -> tuple[float, ...]:
        return self.result.fold_accuracies

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pairs": self.pairs, **self.result.as_dict(),
                "xnorm": self.xnorm}


def score_embeddings(name: str, plain: np.ndarray, mirrored: np.ndarray | None,
                     issame: np.ndarray) -> SetReport:
    """Embeddings [2N, D] of a set's faces (pairs side by side) -> its report."""
    embeddings = plain if mirrored is None else plain + mirrored
    cosine = pair_cosine(embeddings)
    xnorm = float(np.mean(np.linalg.norm(plain.astype(np.float64), axis=1)))
    return SetReport(name, len(issame), ten_fold_accuracy(cosine, issame), xnorm, cosine,
                     np.asarray(issame, bool))


def _check_layout(vset: VerificationSet) -> None:
    if len(vset.images) != 2 * len(vset.issame):
        raise ArcFaceError(f"{vset.name}: {len(vset.images)} images for {len(vset.issame)} "
                           "pairs; need two images per pair")


def evaluate_verification_set(model: ModelLike, vset: VerificationSet, batch_size: int = 64,
                              flip: bool = True, progress: bool = True) -> SetReport:
    """Embed every image of `vset` in this process and report its scores."""
    _check_layout(vset)
    plain, mirrored = embed_views(model, vset.images, batch_size, flip, vset.name, progress)
    return score_embeddings(vset.name, plain, mirrored, vset.issame)


def rank_slice(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """This rank's contiguous share [start, stop) of `count` items, ceil(count / W) each."""
    per_rank = -(-count // world_size)
    return min(rank * per_rank, count), min((rank + 1) * per_rank, count)


def _gather_rows(rows: np.ndarray, count: int, width: int) -> np.ndarray:
    """Every rank's rows [n_r, width] (n_r <= ceil(count / W)) -> all rows [count, width] in
    rank order (collective: padded to equal size for all_gather)."""
    world_size = distributed.get_world_size()
    per_rank = -(-count // world_size)
    padded = np.zeros((per_rank, width), np.float32)
    if len(rows):
        padded[:len(rows)] = rows
    gathered = distributed.all_gather_concat(paddle.to_tensor(padded)).numpy()
    parts = [gathered[r * per_rank:r * per_rank + (stop - start)]
             for r, (start, stop) in enumerate(rank_slice(count, r, world_size)
                                               for r in range(world_size))]
    return np.concatenate(parts)


def evaluate_sets(model: ModelLike, sets: Sequence[VerificationSet], batch_size: int = 64,
                  flip: bool = True, progress: bool = True) -> list[SetReport]:
    """Collective under several ranks (every rank calls it with the same sets): each rank
    embeds its share of every set's faces, the embeddings are gathered, and every rank scores
    the whole set. One rank: `evaluate_verification_set` for each set."""
    world_size = distributed.get_world_size()
    if world_size == 1:
        return [evaluate_verification_set(model, vset, batch_size, flip, progress)
                for vset in sets]
    rank = distributed.get_rank()
    reports = []
    for vset in sets:
        _check_layout(vset)
        start, stop = rank_slice(len(vset.images), rank, world_size)
        if stop > start:
            plain, mirrored = embed_views(model, vset.images[start:stop], batch_size, flip,
                                          vset.name, progress and rank == 0)
        else:  # more ranks than faces: this rank only joins the gather
            plain, mirrored = np.zeros((0, 0), np.float32), None
        width = _agree_width(plain.shape[1] if len(plain) else 0)
        both = plain if mirrored is None else np.concatenate([plain, mirrored], axis=1)
        gathered = _gather_rows(both.reshape(len(both), -1), len(vset.images),
                                width * (2 if flip else 1))
        reports.append(score_embeddings(vset.name, gathered[:, :width],
                                        gathered[:, width:] if flip else None, vset.issame))
    return reports


def _agree_width(width: int) -> int:
    """The embedding size all ranks agree on (a rank without faces reports 0)."""
    return int(distributed.all_reduce_max(paddle.to_tensor([width], "int64")).numpy()[0])
