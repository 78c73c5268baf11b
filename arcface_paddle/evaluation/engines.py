"""Models to evaluate, loaded through the fastest engine available.

A checkpoint's weights are rebuilt into a fresh backbone, saved with `paddle.jit.save` into a
temporary folder and loaded through the runtime's `paddle.inference` predictor with oneDNN, the
same path as an exported model (MobileFaceNet at batch 32 on 2 cores: about 13 img/s eager,
about 170 through paddle.inference; see benchmarks/bench_validation.py). "eager" and "to_static"
run the fresh layer itself, for comparison. Model folders and files (Paddle inference,
legacy `.pdmodel`, ONNX) load through the runtime as they are.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.predictor import (
    META_FILE,
    OnnxPredictor,
    PaddlePredictor,
    PredictorOptions,
    model_files,
)
from insightface_paddle.recognition import FaceEmbedder

from ..checkpoint import load_backbone_weights
from ..errors import ArcFaceError
from ..export import fresh_backbone, save_paddle_inference
from .bin_eval import Embedder, LayerEmbedder

ENGINES = ("inference", "to_static", "eager")


def weights_embedder(arrays: dict[str, np.ndarray], backbone: str, embedding_size: int,
                     engine: str = "inference", options: PredictorOptions | None = None,
                     source: str = "weights") -> Embedder:
    """A fresh backbone holding `arrays`, run by `engine` ("inference": paddle.inference with
    oneDNN through an in-memory export; "to_static"; "eager")."""
    if engine not in ENGINES:
        raise ArcFaceError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    layer = fresh_backbone(backbone, embedding_size, arrays, source)
    if engine != "inference":
        return LayerEmbedder(layer, to_static=engine == "to_static")
    with tempfile.TemporaryDirectory(prefix="arcface_eval_") as folder:
        save_paddle_inference(layer, Path(folder))
        return FaceEmbedder.from_folder(Path(folder), backbone, options)


def checkpoint_embedder(checkpoint: str | os.PathLike[str], backbone: str | None = None,
                        embedding_size: int | None = None, engine: str = "inference",
                        options: PredictorOptions | None = None) -> Embedder:
    arrays, backbone, embedding_size, path = load_backbone_weights(checkpoint, backbone,
                                                                    embedding_size)
    return weights_embedder(arrays, backbone, embedding_size, engine, options, str(path))


def model_embedder(model: str | os.PathLike[str], options: PredictorOptions | None = None,
                   params: str | os.PathLike[str] | None = None, **kwargs: Any) -> FaceEmbedder:
    """A model folder (inference.json / legacy inference.pdmodel / model.onnx, with its
    model_meta.json if any) or a model file (`.onnx`; `.json`/`.pdmodel` with `params` or the
    `.pdiparams` beside it) -> the runtime's embedder."""
    path = Path(model)
    options = options or PredictorOptions()
    if path.is_dir():
        return FaceEmbedder.from_folder(path, options=options, **kwargs)
    if not path.is_file():
        raise InsightFaceError(f"{path}: no such model folder or file")
    backend = "onnx" if path.suffix == ".onnx" else "paddle"
    if params is None and (path.parent / META_FILE).is_file() and model_files(
            path.parent, backend)[1] == path:
        # a file of an export folder: the folder's metadata (preprocessing, name) applies
        return FaceEmbedder.from_folder(path.parent, options=replace(options, backend=backend),
                                        **kwargs)
    if path.suffix == ".onnx":
        return FaceEmbedder(OnnxPredictor(path, options), path.stem, **kwargs)
    if path.suffix not in (".json", ".pdmodel"):
        raise InsightFaceError(f"{path}: not a model file (.onnx, .json or .pdmodel)")
    params = Path(params) if params else path.with_suffix(".pdiparams")
    if not params.is_file():
        raise InsightFaceError(f"{path}: no weights file {params} (give --params_file)")
    try:
        return FaceEmbedder(PaddlePredictor(path, params, options), path.stem, **kwargs)
    except InsightFaceError:
        if not options.enable_mkldnn:
            raise
        # as create_predictor: some graphs fail their first run under oneDNN
        plain = replace(options, enable_mkldnn=False)
        return FaceEmbedder(PaddlePredictor(path, params, plain), path.stem, **kwargs)
