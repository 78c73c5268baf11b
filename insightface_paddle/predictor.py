"""One interface over paddle.inference and onnxruntime, plus the metadata a model carries.

A model folder holds one of
  - `inference.json` + `inference.pdiparams`   (Paddle >= 3, PIR; what `paddle.jit.save` writes)
  - `inference.pdmodel` + `inference.pdiparams` (legacy Paddle, e.g. the published zoo models)
  - `model.onnx`                                (onnxruntime)
and optionally `infer_cfg.yml` (PaddleDetection's preprocessing) or `model_meta.json` (written by
this project's export; see docs/model_metadata.md), so deployment preprocesses as training did.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import InsightFaceError
from .fileio import sha256_file

log = logging.getLogger(__name__)

META_FILE = "model_meta.json"
META_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PredictorOptions:
    use_gpu: bool = False
    gpu_id: int = 0
    cpu_threads: int = max(1, min(8, os.cpu_count() or 1))
    #: oneDNN is ~8x faster than plain CPU kernels for these models on x86
    enable_mkldnn: bool = True
    #: "auto" picks by the files present; "paddle" or "onnx" force one
    backend: str = "auto"
    #: for a model one of Paddle's passes miscompiles
    graph_fix: GraphFix | None = None


@dataclass(frozen=True)
class GraphFix:
    """How to load a model one of oneDNN's passes miscompiles on CPU: a legacy program
    (`.pdmodel`) is edited by `rewrite` (a `ProgramDesc` in, changed in place, -> whether the
    passes can then run safely); a PIR program (`.json`), which is not edited here, or one the
    rewrite could not make safe, runs without `passes`."""

    rewrite: Callable[[Any], bool]
    passes: tuple[str, ...]


@dataclass(frozen=True)
class Normalization:
    """Pixel normalisation on the 0..255 scale: (v - mean) / std, channels in `channel_order`."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """float32 RGB [..., 3] -> normalised float32 in the model's channel order."""
        image = rgb if self.channel_order == "RGB" else rgb[..., ::-1]
        return (image - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def into_chw(self, rgb: np.ndarray, out: np.ndarray) -> np.ndarray:
        """RGB [h, w, 3] (uint8 or float) -> normalised into `out` float32 [3, h, w], planar as
        the models take it; one pass per channel, no temporaries (4x faster than `apply` and a
        transpose on a 640x360 image)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InsightFaceError(f"expected an RGB image [h, w, 3], got shape {rgb.shape}")
        sources = (0, 1, 2) if self.channel_order == "RGB" else (2, 1, 0)
        for channel, source in enumerate(sources):
            np.subtract(rgb[:, :, source], np.float32(self.mean[channel]), out=out[channel],
                        dtype=np.float32)
            np.divide(out[channel], np.float32(self.std[channel]), out=out[channel])
        return out


class Predictor(Protocol):
    input_names: list[str]
    #: sha256 of the weights file: two models with equal fingerprints embed identically
    fingerprint: str
    #: whether `run` may be called from several threads at once: an ONNX Runtime session may,
    #: a paddle.inference predictor (one set of input and output tensors) may not
    concurrent_runs: bool

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def model_files(folder: Path, backend: str = "auto") -> tuple[str, Path, Path | None]:
    """-> (backend, graph file, weights file or None) for the model stored in `folder`; a
    folder holding both kinds gives the Paddle one unless `backend` is "onnx"."""
    if not folder.is_dir():
        raise InsightFaceError(f"model folder not found: {folder}")
    if backend == "onnx" and (folder / "model.onnx").is_file():
        return "onnx", folder / "model.onnx", None
    params = folder / "inference.pdiparams"
    for graph in (folder / "inference.json", folder / "inference.pdmodel"):
        if graph.is_file():
            if not params.is_file():
                raise InsightFaceError(f"{folder}: has {graph.name} but no inference.pdiparams")
            return "paddle", graph, params
    if (folder / "model.onnx").is_file():
        return "onnx", folder / "model.onnx", None
    raise InsightFaceError(
        f"{folder}: no model found (expected inference.json or inference.pdmodel with "
        "inference.pdiparams, or model.onnx)"
    )


def _read_graph(graph: Path) -> Any:
    """-> the legacy `ProgramDesc` of a `.pdmodel`, or None for the PIR `.json`; rejects files
    Paddle would crash on (it segfaults on a garbage `.pdmodel`)."""
    data = graph.read_bytes()
    if graph.suffix == ".json":
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InsightFaceError(f"{graph}: corrupt model graph ({exc})") from None
        if not isinstance(parsed, dict) or "program" not in parsed:
            raise InsightFaceError(f"{graph}: not a Paddle program")
        return None
    from google.protobuf.message import DecodeError  # installed with paddle
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    try:
        program.ParseFromString(data)
    except DecodeError:
        raise InsightFaceError(f"{graph}: corrupt model graph (not a Paddle program)") from None
    ops = {op.type for block in program.blocks for op in block.ops}
    if not {"feed", "fetch"} <= ops:
        raise InsightFaceError(f"{graph}: not an inference model (no feed/fetch ops)")
    return program


#: how long (ms) Paddle's OpenMP threads keep spinning after a parallel region. Intel's default,
#: 200 ms, keeps a core busy long after each model call, so the work between calls (keypoint
#: crops and ONNX Runtime's keypoint model, the worker pool, the read-ahead thread) gets one core
#: of two: with 1 ms the landmark stage of friends2.jpg took 14-15 ms instead of 26-27, and the
#: model calls themselves no longer (ops within a call follow each other in microseconds);
#: benchmarks/bench_openmp_blocktime.py. 0 is far worse (every op waits for its threads to wake).
#: A value the user set in the environment is kept.
OPENMP_BLOCKTIME_MS = "1"


def _import_paddle_inference() -> Any:
    # read when Paddle's OpenMP runtime starts, at the first model loaded, not at import
    os.environ.setdefault("KMP_BLOCKTIME", OPENMP_BLOCKTIME_MS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # paddle warns about ccache at import
            import paddle.inference as paddle_infer
    except ImportError:
        raise InsightFaceError(
            "PaddlePaddle is not installed: pip install paddlepaddle (CPU) or paddlepaddle-gpu"
        ) from None
    return paddle_infer


class PaddlePredictor:
    def __init__(self, graph: Path, params: Path, options: PredictorOptions) -> None:
        paddle_infer = _import_paddle_inference()
        program = _read_graph(graph)
        # the passes at fault are oneDNN's: on GPU or plain CPU kernels the model loads as it is
        fix = options.graph_fix if options.enable_mkldnn and not options.use_gpu else None
        delete_passes = fix is not None
        if fix is not None and program is not None:
            delete_passes = not fix.rewrite(program)
            config = paddle_infer.Config()
            graph_bytes, params_bytes = program.SerializeToString(), params.read_bytes()
            config.set_model_buffer(graph_bytes, len(graph_bytes), params_bytes, len(params_bytes))
        else:
            config = paddle_infer.Config(str(graph), str(params))
        if options.use_gpu:
            config.enable_use_gpu(256, options.gpu_id)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(options.cpu_threads)
            if options.enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(16)  # bounded memory across input shapes
            else:
                config.disable_mkldnn()
        if fix is not None and delete_passes:
            for name in fix.passes:
                config.delete_pass(name)
        config.disable_glog_info()
        config.switch_use_feed_fetch_ops(False)
        self.source = graph.parent
        try:
            self._predictor = paddle_infer.create_predictor(config)
        except Exception as exc:  # paddle raises RuntimeError/ValueError/... for bad files
            raise InsightFaceError(f"{graph.parent}: cannot load model ({_first_line(exc)})"
                                   ) from None
        self.input_names = list(self._predictor.get_input_names())
        self._output_names = list(self._predictor.get_output_names())
        self.fingerprint = sha256_file(params)
        self.concurrent_runs = False

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            for name in self.input_names:
                handle = self._predictor.get_input_handle(name)
                value = np.ascontiguousarray(feeds[name])
                handle.reshape(value.shape)
                handle.copy_from_cpu(value)
            self._predictor.run()
            return [self._predictor.get_output_handle(n).copy_to_cpu()
                    for n in self._output_names]
        except Exception as exc:  # paddle raises RuntimeError/NotImplementedError/...
            raise InsightFaceError(f"{self.source}: inference failed ({_first_line(exc)})"
                                   ) from None


class OnnxPredictor:
    def __init__(self, graph: Path, options: PredictorOptions) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InsightFaceError(
                f"{graph}: ONNX models need onnxruntime (pip install insightface-paddle[onnx])"
            ) from None
        providers = ["CPUExecutionProvider"]
        if options.use_gpu:
            providers.insert(0, "CUDAExecutionProvider")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.cpu_threads
        session_options.log_severity_level = 3
        # its idle threads would spin for the cores the next model in the pipeline (the
        # detector or recogniser in paddle.inference) needs
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(graph), sess_options=session_options, providers=providers
            )
        except Exception as exc:
            raise InsightFaceError(f"{graph}: cannot load ONNX model ({exc})") from None
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.fingerprint = sha256_file(graph)
        self.concurrent_runs = True
        self.source = graph.parent

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self._session.run(None, {n: feeds[n] for n in self.input_names}))
        except Exception as exc:
            raise InsightFaceError(f"{self.source}: inference failed ({_first_line(exc)})"
                                   ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_predictor(folder: Path, options: PredictorOptions | None = None,
                     probe: Callable[[Predictor], object] | None = None) -> Predictor:
    """Load the model in `folder`; `probe(predictor)` runs a tiny input through it.

    Some graphs load under oneDNN but fail at their first run (e.g. models translated to the
    PIR format); when the probe fails there, the model is reloaded with plain CPU kernels.
    """
    options = options or PredictorOptions()
    backend, graph, params = model_files(folder, options.backend)
    if options.backend not in ("auto", backend):
        raise InsightFaceError(f"{folder}: holds a {backend} model, not {options.backend}")
    if backend == "onnx":
        predictor: Predictor = OnnxPredictor(graph, options)
    else:
        assert params is not None
        predictor = PaddlePredictor(graph, params, options)
    if probe is None:
        return predictor
    try:
        probe(predictor)
        return predictor
    except InsightFaceError as exc:
        if backend != "paddle" or options.use_gpu or not options.enable_mkldnn:
            raise
        log.warning("%s; retrying with oneDNN off", exc)
    assert params is not None
    predictor = PaddlePredictor(graph, params, replace(options, enable_mkldnn=False))
    probe(predictor)
    return predictor


def read_model_meta(folder: Path) -> dict[str, Any] | None:
    """This project's `model_meta.json`, validated, or None when the folder has none."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InsightFaceError(f"{path}: unreadable model metadata ({exc})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != META_FORMAT_VERSION:
        raise InsightFaceError(f"{path}: unsupported model metadata version {version!r}")
    return meta


def normalization_from_meta(meta: dict[str, Any], source: Path) -> Normalization:
    try:
        spec = meta["input"]
        mean, std = tuple(map(float, spec["mean"])), tuple(map(float, spec["std"]))
        order = str(spec.get("channel_order", "RGB")).upper()
    except (KeyError, TypeError, ValueError) as exc:
        raise InsightFaceError(f"{source}: model metadata lacks input mean/std ({exc})") from None
    if len(mean) != 3 or len(std) != 3 or order not in ("RGB", "BGR"):
        raise InsightFaceError(f"{source}: model metadata needs 3 means, 3 stds, RGB or BGR")
    return Normalization(mean, std, order)  # type: ignore[arg-type]
