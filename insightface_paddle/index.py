"""The face index: labelled unit embeddings, searched by cosine similarity.

File format (version 1, docs/index_format.md): one `.npz` read with `allow_pickle=False` holding
`embeddings` float32 [N, D], `labels` unicode [N], `sources` unicode [N] and `meta` (a JSON string:
format version, the model's name, weights fingerprint and embedding size, how it was built).
No pickle: an index file can be shared without it being able to run code.

Search: exact search is one matrix product followed by a per-identity maximum, so the top-k
candidates are k distinct identities. `approximate=True` uses a faiss IVF index (optional
dependency) for galleries of 100k entries and more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InsightFaceError
from .fileio import atomic_path
from .legacy import load_legacy_index
from .recognition import ModelSignature, l2_normalize

INDEX_FORMAT_VERSION = 1
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Candidate:
    label: str
    similarity: float


@dataclass
class FaceIndex:
    model: ModelSignature
    embeddings: np.ndarray = field(default=None)  # type: ignore[assignment]
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    #: free-form facts about how the index was built (channel order, face detection, ...)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.embeddings is None:
            self.embeddings = np.zeros((0, self.model.embedding_size), np.float32)
        self.embeddings = np.asarray(self.embeddings, np.float32)
        if not self.sources:
            self.sources = [""] * len(self.labels)
        self._check_shapes()
        self._invalidate()

    def _invalidate(self) -> None:
        self._faiss: Any = None
        self._grouping: tuple[list[str], np.ndarray, np.ndarray] | None = None

    def _check_shapes(self) -> None:
        n, dim = self.embeddings.shape
        if dim != self.model.embedding_size:
            raise InsightFaceError(f"index embeddings are {dim}-D but the model "
                                   f"{self.model.describe()} gives {self.model.embedding_size}-D")
        if not n == len(self.labels) == len(self.sources):
            raise InsightFaceError(f"index has {n} embeddings, {len(self.labels)} labels and "
                                   f"{len(self.sources)} sources")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def identities(self) -> list[str]:
        return sorted(set(self.labels))

    # -- editing --------------------------------------------------------------------------
    def add(self, labels: Sequence[str], embeddings: np.ndarray,
            sources: Sequence[str] | None = None) -> None:
        """Append entries; embeddings [K, D] are normalised here."""
        embeddings = np.asarray(embeddings, np.float32).reshape(len(labels), -1)
        if embeddings.shape[1] != self.model.embedding_size:
            raise InsightFaceError(f"cannot add {embeddings.shape[1]}-D embeddings to an index "
                                   f"of {self.model.describe()}")
        if any(not label or label == UNKNOWN for label in labels):
            raise InsightFaceError(f"identity labels must be non-empty and not {UNKNOWN!r}")
        self.embeddings = np.concatenate([self.embeddings, l2_normalize(embeddings)])
        self.labels.extend(labels)
        self.sources.extend(sources if sources is not None else [""] * len(labels))
        self._check_shapes()
        self._invalidate()

    def remove(self, label: str) -> int:
        """Drop every entry of `label`; returns how many there were."""
        keep = np.array([x != label for x in self.labels], dtype=bool)
        removed = int((~keep).sum())
        if removed == 0:
            raise InsightFaceError(f"identity {label!r} is not in the index "
                                   f"({len(self.identities)} identities)")
        self.embeddings = self.embeddings[keep]
        self.labels = [x for x, k in zip(self.labels, keep) if k]
        self.sources = [x for x, k in zip(self.sources, keep) if k]
        self._invalidate()
        return removed

    # -- search ---------------------------------------------------------------------------
    def check_model(self, model: ModelSignature) -> None:
        """Refuse queries embedded by a model other than the one that built the index."""
        if (model.fingerprint, model.embedding_size) != (self.model.fingerprint,
                                                          self.model.embedding_size):
            raise InsightFaceError(
                f"the index was built with {self.model.describe()} but the recognition model is "
                f"{model.describe()}: rebuild the index with this model"
            )

    def search(self, queries: np.ndarray, model: ModelSignature, k: int = 5,
               approximate: bool = False) -> list[list[Candidate]]:
        """queries [Q, D] from `model` -> per query up to k distinct identities, best first."""
        self.check_model(model)
        queries = np.asarray(queries, np.float32).reshape(-1, self.model.embedding_size)
        queries = l2_normalize(queries)
        if len(self) == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        if approximate:
            rows, sims = self._faiss_search(queries, k)
            return [self._distinct(r, s, k) for r, s in zip(rows, sims)]
        names, order, starts = self._groups()
        similarity = queries @ self.embeddings.T  # [Q, N]
        # regroup the scores (not the far larger embedding matrix) by identity
        best = np.maximum.reduceat(similarity[:, order], starts, axis=1)  # [Q, identities]
        k = min(k, best.shape[1])
        top = np.argpartition(-best, k - 1, axis=1)[:, :k]  # the k best, unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(best, top, 1), 1), 1)
        return [[Candidate(names[i], float(row[i])) for i in ids] for row, ids in zip(best, top)]

    def _groups(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Identity names, the entry order that groups them, and where each group starts."""
        if self._grouping is None:
            names, ids = np.unique(np.asarray(self.labels), return_inverse=True)
            order = np.argsort(ids, kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
            self._grouping = ([str(n) for n in names], order, starts)
        return self._grouping

    def _distinct(self, rows: np.ndarray, sims: np.ndarray, k: int) -> list[Candidate]:
        seen: dict[str, float] = {}
        for row, sim in zip(rows, sims):
            if row >= 0 and self.labels[row] not in seen:
                seen[self.labels[row]] = float(sim)
        return [Candidate(label, sim) for label, sim in list(seen.items())[:k]]

    def _faiss_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._faiss is None:
            self._faiss = build_faiss_ivf(self.embeddings)
        # several photos per identity: over-fetch so k distinct identities survive
        sims, rows = self._faiss.search(queries, min(len(self), max(4 * k, 32)))
        return rows, sims

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            raise InsightFaceError(f"{path}: index files end in .npz")
        meta = {
            "format_version": INDEX_FORMAT_VERSION,
            "model": {"name": self.model.name, "fingerprint": self.model.fingerprint,
                      "embedding_size": self.model.embedding_size},
            "info": self.info,
        }
        with atomic_path(path) as tmp:
            np.savez(tmp, embeddings=self.embeddings, labels=np.asarray(self.labels, dtype=str),
                     sources=np.asarray(self.sources, dtype=str), meta=np.asarray(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaceIndex:
        path = Path(path)
        if not path.is_file():
            raise InsightFaceError(f"{path}: no such index file")

        def bad(why: object) -> InsightFaceError:
            return InsightFaceError(f"{path}: not an insightface-paddle index ({why})")

        keys = ("embeddings", "labels", "sources", "meta")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in keys if key not in data.files]
                if missing:
                    raise bad(f"no {missing[0]!r} array")
                arrays = {key: data[key] for key in keys}
        except InsightFaceError:
            raise
        except ValueError as exc:  # numpy's own advice here would be to allow pickle: never
            why = "not an archive of plain arrays; pickled data is refused" if "pickle" in str(
                exc) else exc
            raise bad(why) from None
        except Exception as exc:  # a damaged zip raises BadZipFile, EOFError, OSError, ...
            raise bad(f"{type(exc).__name__}: {exc}") from None
        try:
            meta = json.loads(str(arrays["meta"]))
            model = meta["model"]
            signature = ModelSignature(str(model["name"]), str(model["fingerprint"]),
                                       int(model["embedding_size"]))
            version, info = meta.get("format_version"), dict(meta.get("info", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad(f"bad metadata: {exc}") from None
        if version != INDEX_FORMAT_VERSION:
            raise InsightFaceError(f"{path}: index format version {version!r} is not supported "
                                   f"(this version reads {INDEX_FORMAT_VERSION})")
        embeddings, labels, sources = arrays["embeddings"], arrays["labels"], arrays["sources"]
        if embeddings.ndim != 2 or embeddings.dtype.kind != "f" or labels.ndim != 1 or \
                sources.ndim != 1 or labels.dtype.kind != "U" or sources.dtype.kind != "U":
            raise bad(f"arrays of shapes {embeddings.shape}, {labels.shape}, {sources.shape}")
        return cls(signature, embeddings, [str(x) for x in labels], [str(x) for x in sources],
                   info)

    @classmethod
    def from_legacy(cls, path: str | os.PathLike[str], model: ModelSignature) -> FaceIndex:
        """Import the old tool's pickled `index.bin` (read through the restricted unpickler).

        The old file does not say which model made it: `model` is the caller's statement (the
        old tool's default was MobileFace). Its features were embedded from BGR whole photos.
        """
        labels, features = load_legacy_index(path)
        if features.size and features.shape[1] != model.embedding_size:
            raise InsightFaceError(f"{path}: features are {features.shape[1]}-D but "
                                   f"{model.describe()} gives {model.embedding_size}-D")
        info = {"imported_from": str(path), "channel_order": "BGR", "faces": "whole photo"}
        index = cls(model, info=info)
        index.add(labels, features, [f"legacy:{i}" for i in range(len(labels))])
        return index


def build_faiss_ivf(embeddings: np.ndarray, nprobe: int = 64) -> Any:
    """An inverted-file faiss index over unit vectors (inner product = cosine).

    sqrt(N) lists trained on 64 points each, 64 lists probed: on 1M random 128-D entries this
    finds the exact top-1 for every query at ~2 ms, and builds in ~10 s
    (benchmarks/bench_index_search.py).
    """
    try:
        import faiss
    except ImportError:
        raise InsightFaceError("approximate search needs faiss: "
                               "pip install insightface-paddle[faiss]") from None
    n, dim = embeddings.shape
    nlist = int(max(1, min(np.sqrt(n), n // 39)))  # faiss wants >= 39 training points per list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = embeddings
    if n > 64 * nlist:
        sample = embeddings[np.random.default_rng(0).choice(n, 64 * nlist, replace=False)]
    index.train(np.ascontiguousarray(sample))
    index.add(np.ascontiguousarray(embeddings))
    index.nprobe = min(nprobe, nlist)
    return index
