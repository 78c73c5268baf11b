"""The face index: labelled unit embeddings, searched by cosine similarity.

File format (version 2, docs/index_format.md): one `.npz` read with `allow_pickle=False` holding
`embeddings` float32 [N, D], `labels` unicode [N], `sources` unicode [N], `content_sha256`
uint8 [N, 32] (the photo file's sha256, to skip photos added twice), `meta` (a JSON string: format
version, the model's name, weights fingerprint and embedding size, how it was built) and,
optionally, the trained approximate-search structure (`ann_*`, see `ann.py`). Version 1 files
(without hashes or structure) are still read. No pickle: an index file can be shared without it
being able to run code.

Search: exact search is a blocked scan (`search.py`) returning k distinct identities, each scored
by its best entry; `approximate=True` asks an IVF-PQ structure (`ann.py`) for candidates and
rescores them exactly.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import ann, search
from .errors import InsightFaceError
from .fileio import atomic_path
from .legacy import load_legacy_index
from .recognition import ModelSignature, l2_normalize

log = logging.getLogger(__name__)

INDEX_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: an embedding whose length differs from 1 by more than this is refused on load
UNIT_TOLERANCE = 1e-3
#: permissions of a new index file (it holds biometric data) unless the caller asks otherwise
NEW_FILE_MODE = 0o600
#: facts of `info` that two indexes must share to be merged or extended
POLICY_KEYS = ("channel_order", "faces")
HASH_BYTES = 32
NO_HASH = bytes(HASH_BYTES)
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
    #: sha256 of each entry's photo file, uint8 [N, 32]; zeros when unknown (imports, API adds)
    hashes: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.embeddings is None:
            self.embeddings = np.zeros((0, self.model.embedding_size), np.float32)
        self.embeddings = search.gallery_layout(self.embeddings)
        if not self.sources:
            self.sources = [""] * len(self.labels)
        if self.hashes is None:
            self.hashes = np.zeros((len(self.labels), HASH_BYTES), np.uint8)
        self.hashes = np.asarray(self.hashes, np.uint8).reshape(-1, HASH_BYTES)
        self._check_shapes()
        self._invalidate()

    def _invalidate(self) -> None:
        self._ann: ann.AnnIndex | None = None
        self._grouping: tuple[list[str], np.ndarray] | None = None

    def _check_shapes(self) -> None:
        n, dim = self.embeddings.shape
        if dim != self.model.embedding_size:
            raise InsightFaceError(f"index embeddings are {dim}-D but the model "
                                   f"{self.model.describe()} gives {self.model.embedding_size}-D")
        if not n == len(self.labels) == len(self.sources) == len(self.hashes):
            raise InsightFaceError(f"index has {n} embeddings, {len(self.labels)} labels, "
                                   f"{len(self.sources)} sources and {len(self.hashes)} hashes")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"FaceIndex({len(self)} entries, {len(set(self.labels))} identities, "
                f"model {self.model.describe()}, {self.embeddings.shape[1]}-D"
                f"{', approximate search ready' if self._ann is not None else ''})")

    def known_hashes(self) -> set[bytes]:
        """The sha256 digests of the photos in the index (unknown ones left out)."""
        return set(map(bytes, self.hashes)) - {NO_HASH}

    @property
    def identities(self) -> list[str]:
        return sorted(set(self.labels))

    # -- editing --------------------------------------------------------------------------
    def add(self, labels: Sequence[str], embeddings: np.ndarray,
            sources: Sequence[str] | None = None, hashes: Sequence[str] | None = None) -> None:
        """Append entries; embeddings [K, D] are normalised here (zero or non-finite refused)."""
        embeddings = np.asarray(embeddings, np.float32).reshape(len(labels), -1)
        if embeddings.shape[1] != self.model.embedding_size:
            raise InsightFaceError(f"cannot add {embeddings.shape[1]}-D embeddings to an index "
                                   f"of {self.model.describe()}")
        if any(not label or label == UNKNOWN for label in labels):
            raise InsightFaceError(f"identity labels must be non-empty and not {UNKNOWN!r}")
        norms = np.linalg.norm(embeddings, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-6))
        if len(bad):
            raise InsightFaceError(f"embedding of {labels[bad[0]]!r} (entry {bad[0]}) is zero or "
                                   "not finite")
        self.embeddings = search.gallery_layout(
            np.concatenate([self.embeddings, l2_normalize(embeddings)]))
        self.labels.extend(labels)
        self.sources.extend(sources if sources is not None else [""] * len(labels))
        self.hashes = np.concatenate([self.hashes, hash_rows(hashes, len(labels))])
        self._check_shapes()
        self._invalidate()

    def remove(self, label: str) -> int:
        """Drop every entry of `label`; returns how many there were."""
        keep = np.array([x != label for x in self.labels], dtype=bool)
        removed = int((~keep).sum())
        if removed == 0:
            raise InsightFaceError(f"identity {label!r} is not in the index "
                                   f"({len(self.identities)} identities)")
        self.embeddings = search.gallery_layout(self.embeddings[keep])
        self.labels = [x for x, k in zip(self.labels, keep, strict=True) if k]
        self.sources = [x for x, k in zip(self.sources, keep, strict=True) if k]
        self.hashes = self.hashes[keep]
        self._invalidate()
        return removed

    def check_mergeable(self, other: FaceIndex, what: str = "the other index") -> None:
        """Refuse to mix embeddings of another model, channel order or crop policy."""
        try:
            self.check_model(other.model)
        except InsightFaceError:
            raise InsightFaceError(f"{what} was built with {other.model.describe()} but this one "
                                   f"with {self.model.describe()}: embeddings of two models "
                                   "cannot be merged") from None
        if len(self) and len(other):
            for key in POLICY_KEYS:
                mine, theirs = self.info.get(key), other.info.get(key)
                if mine != theirs:
                    raise InsightFaceError(f"{what} holds {key} {theirs!r} embeddings but this "
                                           f"index {mine!r}: they cannot be merged")

    def merge(self, other: FaceIndex, what: str = "the other index") -> int:
        """Append the entries of `other` (same model and policy) not already here (same photo
        content) -> how many were appended."""
        self.check_mergeable(other, what)
        known = self.known_hashes()
        keep = [i for i, h in enumerate(map(bytes, other.hashes)) if h == NO_HASH or
                h not in known]
        if not len(self):
            self.info.update({key: other.info[key] for key in POLICY_KEYS if key in other.info})
        if keep:
            self.embeddings = search.gallery_layout(
                np.concatenate([self.embeddings, other.embeddings[keep]]))
            self.labels.extend(other.labels[i] for i in keep)
            self.sources.extend(other.sources[i] for i in keep)
            self.hashes = np.concatenate([self.hashes, other.hashes[keep]])
            self._invalidate()
        return len(keep)

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
        if len(self) == 0 or len(queries) == 0 or k < 1:
            return [[] for _ in range(len(queries))]
        names, identity_of_row = self._groups()
        if approximate and len(self) >= ann.MIN_ENTRIES:
            found = self._approximate(queries, identity_of_row, k)
        else:
            found = search.top_identities(self.embeddings, identity_of_row, len(names), queries,
                                          k)
        return [[Candidate(names[i], s.item()) for i, s in zip(ids, sims, strict=True)]
                for ids, sims in found]

    def _groups(self) -> tuple[list[str], np.ndarray]:
        """Identity names and each entry's identity number."""
        if self._grouping is None:
            numbers: dict[str, int] = {}
            ids = np.fromiter((numbers.setdefault(x, len(numbers)) for x in self.labels),
                              np.int64, len(self.labels))
            self._grouping = (list(numbers), ids)
        return self._grouping

    @property
    def ann(self) -> ann.AnnIndex:
        """The approximate-search structure of these embeddings (trained on first use)."""
        if self._ann is None:
            self._ann = ann.AnnIndex.train(self.embeddings)
        return self._ann

    def _approximate(self, queries: np.ndarray, identity_of_row: np.ndarray, k: int,
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Candidate rows from the IVF-PQ codes, rescored exactly, k best identities."""
        # several photos per identity and coarse 4-bit codes: over-fetch candidates
        rows = self.ann.candidates(queries, max(128, 24 * k))  # [Q, R], -1 padded
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        scores = np.einsum("qrd,qd->qr", self.embeddings[safe], queries)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        found = []
        for query in range(len(queries)):
            keep = order[query][valid[query][order[query]]]
            found.append(search.first_identities(identity_of_row[safe[query][keep]],
                                                 scores[query][keep], k))
        return found

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], mode: int | None = None,
             with_ann: bool | None = None) -> Path:
        """Write the index atomically (see `fileio.exclusive_lock` for concurrent writers).

        `mode`: the file's permissions; default: those of the file replaced, else 0600 (an
        index holds biometric data). `with_ann`: store the approximate-search structure (trained
        now if needed); default: when it was already built.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise InsightFaceError(f"{path}: index files end in .npz")
        if mode is None:
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
            except FileNotFoundError:
                mode = NEW_FILE_MODE
        meta: dict[str, Any] = {
            "format_version": INDEX_FORMAT_VERSION,
            "model": {"name": self.model.name, "fingerprint": self.model.fingerprint,
                      "embedding_size": self.model.embedding_size},
            "info": self.info,
        }
        arrays: dict[str, np.ndarray] = {}
        wanted = with_ann or (with_ann is None and self._ann is not None)
        if wanted and len(self) >= ann.MIN_ENTRIES:
            meta["ann"] = self.ann.to_meta()
            arrays = self.ann.to_arrays()
        with atomic_path(path, mode) as tmp:
            np.savez(tmp, embeddings=self.embeddings, labels=np.asarray(self.labels, dtype=str),
                     sources=np.asarray(self.sources, dtype=str),
                     content_sha256=self.hashes,
                     meta=np.asarray(json.dumps(meta)), **arrays)
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
                optional = [key for key in ("content_sha256", *ann.ARRAYS) if key in data.files]
                arrays = {key: data[key] for key in (*keys, *optional)}
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
            ann_meta = meta.get("ann")
            if ann_meta is not None and not isinstance(ann_meta, dict):
                raise TypeError("'ann' is not an object")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad(f"bad metadata: {exc}") from None
        if version not in READABLE_VERSIONS:
            raise InsightFaceError(f"{path}: index format version {version!r} is not supported "
                                   f"(this version reads {', '.join(map(str, READABLE_VERSIONS))})")
        embeddings, labels, sources = arrays["embeddings"], arrays["labels"], arrays["sources"]
        hashes = arrays.get("content_sha256", np.zeros((len(labels), HASH_BYTES), np.uint8))
        if embeddings.ndim != 2 or embeddings.dtype.kind != "f" or any(
                a.ndim != 1 or a.dtype.kind != "U" for a in (labels, sources)) or \
                hashes.dtype != np.uint8 or hashes.shape != (len(labels), HASH_BYTES):
            raise bad(f"arrays of shapes {embeddings.shape}, {labels.shape}, {sources.shape}, "
                      f"{hashes.shape}")
        with ThreadPoolExecutor(1) as pool:
            # hashing 512 MB takes ~0.5 s; it releases the GIL, so it overlaps the checks below
            checksum = pool.submit(ann.embeddings_checksum, embeddings) if ann_meta else None
            check_unit_rows(embeddings, labels, str(path))
            index = cls(signature, embeddings, labels.tolist(), sources.tolist(), info, hashes)
            index._groups()  # the first search needs the identity numbers anyway
            if checksum is not None:
                index._attach_ann(arrays, ann_meta, str(path), checksum.result())
        return index

    def _attach_ann(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], source: str,
                    checksum: str) -> None:
        """Use a saved approximate-search structure if it describes these very embeddings
        (`checksum`: theirs)."""
        missing = [name for name in ann.ARRAYS if name not in arrays]
        if missing:
            raise InsightFaceError(f"{source}: not an insightface-paddle index (metadata names an "
                                   f"approximate-search structure but {missing[0]!r} is missing)")
        saved = ann.AnnIndex.from_arrays(arrays, meta, len(self), self.embeddings.shape[1],
                                         source)
        if saved.checksum != checksum:
            log.warning("%s: the saved approximate-search structure was made for other "
                        "embeddings (checksum mismatch): ignored, it is rebuilt on the first "
                        "approximate search", source)
            return
        self._ann = saved

    @classmethod
    def from_legacy(cls, path: str | os.PathLike[str], model: ModelSignature) -> FaceIndex:
        """Import the old tool's pickled `index.bin` (read through the restricted unpickler).

        The old file does not say which model made it: `model` is the caller's statement (the
        old tool's default was MobileFace). Its features were embedded from BGR whole photos.
        """
        labels, features = load_legacy_index(path)  # refuses empty, zero or NaN features
        if features.shape[1] != model.embedding_size:
            raise InsightFaceError(f"{path}: features are {features.shape[1]}-D but "
                                   f"{model.describe()} gives {model.embedding_size}-D")
        info = {"imported_from": str(path), "channel_order": "BGR", "faces": "whole photo"}
        index = cls(model, info=info)
        index.add(labels, features, [f"legacy:{i}" for i in range(len(labels))])
        return index


def hash_rows(hashes: Sequence[str] | None, count: int) -> np.ndarray:
    """Hex sha256 digests ("" unknown) -> uint8 [count, 32]."""
    if hashes is None:
        return np.zeros((count, HASH_BYTES), np.uint8)
    if len(hashes) != count:
        raise InsightFaceError(f"{len(hashes)} photo hashes for {count} entries")
    try:
        data = b"".join(bytes.fromhex(h) if h else NO_HASH for h in hashes)
    except ValueError:
        raise InsightFaceError("photo hashes must be hex sha256 digests") from None
    if len(data) != count * HASH_BYTES:
        raise InsightFaceError("photo hashes must be hex sha256 digests")
    return np.frombuffer(data, np.uint8).reshape(count, HASH_BYTES).copy()


def check_unit_rows(embeddings: np.ndarray, labels: np.ndarray, source: str) -> None:
    """Refuse rows that are not finite unit vectors: scaled rows would win every search and
    NaN rows would silently drop out of it."""
    if not len(embeddings):
        return
    norms = np.sqrt(np.einsum("nd,nd->n", embeddings, embeddings))
    bad = np.flatnonzero(~(np.abs(norms - 1.0) <= UNIT_TOLERANCE))  # NaN compares False
    if len(bad):
        row = int(bad[0])
        raise InsightFaceError(f"{source}: embedding {row} ({labels[row]!s}) has length "
                               f"{norms[row]:.4g}, not 1: the index is damaged or was not "
                               f"written by insightface-paddle ({len(bad)} such rows)")


def merge_files(paths: Sequence[str | os.PathLike[str]]) -> FaceIndex:
    """One index holding the entries of `paths` in order (same model and crop policy)."""
    if not paths:
        raise InsightFaceError("nothing to merge")
    merged = FaceIndex.load(paths[0])
    for path in paths[1:]:
        merged.merge(FaceIndex.load(path), what=str(path))
    return merged
