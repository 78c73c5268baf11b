"""Backbone weights files: the one format of checkpoints' `backbone.npz`, imported published
weights and the input of export.

A numpy `.npz` read with `allow_pickle=False`: one float array per state-dict entry under its
structured name ("stages.0.0.conv1.weight"; fp32 master values under pure fp16) plus `__meta__`,
the uint8 bytes of a JSON object {"format", "format_version", "backbone", "embedding_size"}, so a
file says which `build_backbone(...)` it fits. Written atomically (temporary name, fsync, rename).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from insightface_paddle.fileio import atomic_open

from .errors import ArcFaceError

WEIGHTS_FORMAT = "arcface_paddle.weights"
WEIGHTS_FORMAT_VERSION = 1
META_KEY = "__meta__"
#: what a truncated or tampered .npz raises while it is opened or one of its arrays is read
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def layer_arrays(layer: paddle.nn.Layer) -> dict[str, np.ndarray]:
    """A layer's state dict as numpy arrays by structured name."""
    return {name: np.ascontiguousarray(value.numpy()) for name, value in layer.state_dict().items()}


def save_weights(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], backbone: str,
                 embedding_size: int) -> Path:
    meta = {"format": WEIGHTS_FORMAT, "format_version": WEIGHTS_FORMAT_VERSION,
            "backbone": backbone, "embedding_size": int(embedding_size)}
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **payload)
    return Path(path)


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """-> (arrays by structured name, meta); refuses other files and other versions."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: no such weights file") from None
    except NPZ_ERRORS as exc:
        raise ArcFaceError(f"{path}: not a weights file, or truncated ({exc})") from None
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes())
    except (KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != WEIGHTS_FORMAT:
        raise ArcFaceError(f"{path}: not an {WEIGHTS_FORMAT} file")
    if meta.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise ArcFaceError(f"{path}: format_version {meta.get('format_version')!r}; this "
                           f"version reads {WEIGHTS_FORMAT_VERSION}")
    return arrays, meta


def check_float_arrays(arrays: Mapping[str, np.ndarray], source: str | os.PathLike[str]) -> None:
    """Weights and optimizer state are finite floating-point arrays: a tampered or diverged
    file (ints, strings, NaN, inf) is refused here rather than trained on."""
    for name, value in arrays.items():
        if value.dtype.kind != "f":
            raise ArcFaceError(f"{source}: {name} holds {value.dtype}, expected floating point")
        if not np.isfinite(value).all():
            raise ArcFaceError(f"{source}: {name} holds NaN or infinite values")


def assign_weights(layer: paddle.nn.Layer, arrays: Mapping[str, np.ndarray],
                   source: str | os.PathLike[str]) -> None:
    """Fill every tensor of `layer` from `arrays`: names and shapes must match exactly."""
    state = layer.state_dict()
    missing = sorted(set(state) - set(arrays))
    extra = sorted(set(arrays) - set(state))
    if missing or extra:
        raise ArcFaceError(f"{source}: does not fit the backbone (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}); was it written for another backbone?")
    check_float_arrays(arrays, source)
    for name, tensor in state.items():
        value = arrays[name]
        if tuple(value.shape) != tuple(tensor.shape):
            raise ArcFaceError(f"{source}: {name} has shape {list(value.shape)}, the backbone "
                               f"expects {list(tensor.shape)}")
        tensor.set_value(paddle.to_tensor(value).astype(tensor.dtype))


def load_weights(layer: paddle.nn.Layer, path: str | os.PathLike[str]) -> dict[str, Any]:
    """`read_weights` + `assign_weights` -> the file's meta."""
    arrays, meta = read_weights(path)
    assign_weights(layer, arrays, path)
    return meta
