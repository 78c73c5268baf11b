"""Read pickles written by older tools without letting them run code.

`pickle.load` executes whatever callables a file names, so a downloaded `index.bin` or `lfw.bin`
could run arbitrary code. Here every global a pickle asks for is looked up in an explicit
allow-list of harmless constructors; anything else aborts the load before it is called.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InsightFaceError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

AllowedGlobals = Mapping[tuple[str, str], Callable[..., Any]]


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Python 3 pickles store `bytes` at protocol 2 as `_codecs.encode(text, 'latin1')`."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise InsightFaceError(f"pickle asks for codec {encoding!r}; only latin-1 is allowed")
    return text.encode("latin1", errors)


#: Globals needed for plain containers of `bytes` (insightface verification `.bin` files).
BYTES_GLOBALS: AllowedGlobals = {("_codecs", "encode"): _latin1_encode}

#: Globals needed for numpy arrays of plain dtypes (the old tool's `index.bin`).
NUMPY_GLOBALS: AllowedGlobals = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BufferedIOBase, allowed: AllowedGlobals, source: str) -> None:
        # encoding="bytes" keeps Python 2 `str` payloads (old insightface bins) as bytes.
        super().__init__(stream, encoding="bytes")
        self._allowed = allowed
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise InsightFaceError(
                f"{self._source}: refused to unpickle: it calls {module}.{name}, which is not "
                "on the allow-list (the file may be malicious)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise InsightFaceError(f"{self._source}: refused to unpickle: persistent id {pid!r}")


def restricted_loads(data: bytes, allowed: AllowedGlobals, source: str = "<bytes>") -> Any:
    """Unpickle `data`, allowing only the globals in `allowed`; errors name `source`."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), allowed, source).load()
    except InsightFaceError:
        raise
    except Exception as exc:  # truncated or garbled files raise many different types
        raise InsightFaceError(f"{source}: not a readable pickle ({exc})") from None


def restricted_load(path: str | os.PathLike[str], allowed: AllowedGlobals) -> Any:
    """Read and unpickle a file through the allow-list."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InsightFaceError(f"{path}: cannot read ({exc.strerror})") from None
    return restricted_loads(data, allowed, str(path))


def load_legacy_index(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read the old insight-face-paddle `index.bin`: {"label": [str], "feature": [(1, D) float]}.

    Returns labels and a float32 [N, D] matrix; refuses any other structure.
    """
    obj = restricted_load(path, NUMPY_GLOBALS)

    def fail(why: str) -> InsightFaceError:
        return InsightFaceError(f"{path}: not an old insight-face-paddle index ({why})")

    if not isinstance(obj, dict):
        raise fail(f"top level is {type(obj).__name__}, expected dict")
    keys = {k.decode() if isinstance(k, bytes) else k for k in obj}
    if keys != {"label", "feature"}:
        raise fail(f"keys {sorted(map(str, keys))}, expected ['feature', 'label']")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    labels, features = obj["label"], obj["feature"]
    if not isinstance(labels, list) or not isinstance(features, list):
        raise fail("label and feature must be lists")
    if len(labels) != len(features):
        raise fail(f"{len(labels)} labels but {len(features)} features")
    labels = [x.decode() if isinstance(x, bytes) else x for x in labels]
    if not all(isinstance(x, str) for x in labels):
        raise fail("labels must be strings")
    if not all(isinstance(f, np.ndarray) and f.dtype.kind == "f" for f in features):
        raise fail("features must be float arrays")
    if not features:  # checked here so the CLI refuses it before loading a model
        raise InsightFaceError(f"{path}: the old index holds no entries")
    sizes = {f.size for f in features}
    if len(sizes) != 1:
        raise fail(f"features have different sizes {sorted(sizes)}")
    matrix = np.stack([f.reshape(-1) for f in features]).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms < 1e-6))
    if len(bad):  # NaN rows would silently never match, zero rows cannot be normalised
        raise fail(f"feature {bad[0]} ({labels[bad[0]]!r}) is zero or not finite")
    return labels, matrix
