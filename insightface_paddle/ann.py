"""Approximate search: faiss IVF lists of 4-bit PQ fast-scan codes, candidates rescored exactly.

The IVF-PQ codes only choose candidate rows (a few hundred per query out of millions); their
similarities are then recomputed from the index's float embeddings, so every reported score is
exact and only recall is approximate.

The trained structure is kept as plain arrays (coarse centroids, PQ codebooks, each row's list and
its code), saved with the index (docs/index_format.md) and tied to the embeddings by the sha256
of their bytes: loading it rebuilds the faiss index in well under a second, where training it
again on 1M entries takes tens of seconds. Rows are only ever read from these arrays after their
ranges were checked, so a tampered file cannot make faiss read out of bounds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InsightFaceError

KIND = "ivf-pq4-fastscan"
#: below this many entries the exact scan is as fast as any approximate structure
MIN_ENTRIES = 4096
#: names of the arrays in the index file
ARRAYS = ("ann_centroids", "ann_pq_centroids", "ann_lists", "ann_codes")


def embeddings_checksum(embeddings: np.ndarray) -> str:
    """sha256 of the float32 embeddings' bytes in row order (~0.4 s for 512 MB)."""
    data = np.ascontiguousarray(embeddings, np.float32)
    return hashlib.sha256(memoryview(data).cast("B")).hexdigest()


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise InsightFaceError("approximate search needs faiss: "
                               "pip install insightface-paddle[faiss]") from None
    return faiss


@dataclass
class AnnIndex:
    """IVF coarse lists + PQ codes of the rows of one embedding matrix [N, D]."""

    centroids: np.ndarray  # float32 [L, D]
    pq_centroids: np.ndarray  # float32 [M, 16, D / M]
    lists: np.ndarray  # int32 [N], the coarse list of each row
    codes: np.ndarray  # uint8 [N, M / 2], each row's PQ code
    checksum: str  # embeddings_checksum of the rows these codes describe
    nprobe: int = 64
    _faiss_index: Any = field(default=None, repr=False)

    @classmethod
    def train(cls, embeddings: np.ndarray, seed: int = 0) -> AnnIndex:
        """Train and fill on [N, D] unit rows: sqrt(N) lists, D/4 sub-quantizers of 4 bits."""
        faiss = _faiss()
        embeddings = np.ascontiguousarray(embeddings, np.float32)
        n, dim = embeddings.shape
        if n < MIN_ENTRIES:
            raise InsightFaceError(f"approximate search needs at least {MIN_ENTRIES} entries")
        if dim % 8:
            raise InsightFaceError(f"approximate search needs a multiple of 8 dimensions, "
                                   f"not {dim}")
        n_lists = int(min(np.sqrt(n), n // 64))
        sub = dim // 4
        sample = embeddings
        if n > 64 * n_lists:
            sample = embeddings[np.sort(np.random.default_rng(seed).choice(
                n, 64 * n_lists, replace=False))]
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(quantizer, dim, n_lists, sub, 4, faiss.METRIC_INNER_PRODUCT)
        ivf.by_residual = False  # codes independent of the list: stored once, checked simply
        ivf.train(sample)
        _, lists = quantizer.search(embeddings, 1)
        pq_centroids = faiss.vector_to_array(ivf.pq.centroids).reshape(sub, 16, 4)
        return cls(quantizer.reconstruct_n(0, n_lists).astype(np.float32), pq_centroids,
                   lists.ravel().astype(np.int32), ivf.pq.compute_codes(embeddings),
                   embeddings_checksum(embeddings))

    # -- files ----------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = (self.centroids, self.pq_centroids, self.lists, self.codes)
        return dict(zip(ARRAYS, arrays, strict=True))

    def to_meta(self) -> dict[str, Any]:
        return {"kind": KIND, "checksum": self.checksum, "nprobe": self.nprobe}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                    n_rows: int, dim: int, source: str) -> AnnIndex:
        """Check every shape and range, so faiss never sees an index it could misread."""
        def bad(why: str) -> InsightFaceError:
            return InsightFaceError(f"{source}: bad approximate-search structure ({why})")

        if meta.get("kind") != KIND:
            raise bad(f"kind {meta.get('kind')!r}, expected {KIND!r}")
        centroids, pq, lists, codes = (arrays[name] for name in ARRAYS)
        sub = dim // 4
        expected = {"ann_centroids": (np.float32, (len(centroids), dim)),
                    "ann_pq_centroids": (np.float32, (sub, 16, 4)),
                    "ann_lists": (np.int32, (n_rows,)),
                    "ann_codes": (np.uint8, (n_rows, sub // 2))}
        for name, (dtype, shape) in expected.items():
            array = arrays[name]
            if array.dtype != dtype or array.shape != shape:
                raise bad(f"{name} is {array.dtype} {array.shape}, expected "
                          f"{np.dtype(dtype)} {shape}")
        if not len(centroids) or (n_rows and (lists.min() < 0 or lists.max() >= len(centroids))):
            raise bad("row lists out of range")
        if not (np.isfinite(centroids).all() and np.isfinite(pq).all()):
            raise bad("non-finite centroids")
        nprobe = meta.get("nprobe")
        if not isinstance(nprobe, int) or nprobe < 1:
            raise bad(f"nprobe {nprobe!r}")
        return cls(centroids, pq, lists, codes, str(meta.get("checksum")), nprobe)

    # -- search ---------------------------------------------------------------------------
    def _index(self) -> Any:
        """The faiss fast-scan index, made from the arrays without training or encoding."""
        if self._faiss_index is None:
            faiss = _faiss()
            n_lists, dim = self.centroids.shape
            sub = self.pq_centroids.shape[0]
            quantizer = faiss.IndexFlatIP(dim)
            quantizer.add(np.ascontiguousarray(self.centroids))
            ivf = faiss.IndexIVFPQ(quantizer, dim, n_lists, sub, 4, faiss.METRIC_INNER_PRODUCT)
            ivf.by_residual = False
            faiss.copy_array_to_vector(self.pq_centroids.ravel(), ivf.pq.centroids)
            ivf.is_trained = True
            order = np.argsort(self.lists, kind="stable")
            bounds = np.searchsorted(self.lists[order], np.arange(n_lists + 1))
            for number in range(n_lists):
                rows = order[bounds[number]:bounds[number + 1]].astype(np.int64)
                if len(rows):
                    codes = np.ascontiguousarray(self.codes[rows])
                    ivf.invlists.add_entries(number, len(rows), faiss.swig_ptr(rows),
                                             faiss.swig_ptr(codes))
            ivf.ntotal = len(self.lists)
            fast = faiss.IndexIVFPQFastScan(ivf)
            fast.nprobe = min(self.nprobe, n_lists)
            # the fast-scan index borrows the quantizer: keep its owners alive beside it
            self._faiss_index = (fast, ivf, quantizer)
        return self._faiss_index[0]

    def candidates(self, queries: np.ndarray, count: int) -> np.ndarray:
        """queries [Q, D] -> rows [Q, count] by approximate score (-1 where lists ran out)."""
        index = self._index()
        _, rows = index.search(np.ascontiguousarray(queries, np.float32),
                               min(count, len(self.lists)))
        return rows
