"""Export a backbone's weights as a deployable model folder the runtime loads as it is.

    <output_dir>/inference.json + inference.pdiparams   paddle.inference, batch dimension free
    <output_dir>/model.onnx                             onnxruntime (paddle2onnx, opset 11)
    <output_dir>/model_meta.json                        preprocessing, embedding size, backbone,
                                                        sha256 of each weights file
                                                        (docs/model_metadata.md)

The network is always rebuilt from the weights (`build_backbone` + the arrays), never taken from
a training Layer: `paddle.jit.save` converts the forward it is given, and a trainer's Layer may
already carry a to_static forward of its own. Every file is written into a temporary folder
beside the target and renamed into place; the export checks itself before it returns (the same
real faces through the weights in dynamic mode and through every exported model).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.fileio import atomic_open, sha256_file
from insightface_paddle.folders import folder_for_output
from insightface_paddle.predictor import META_FILE, META_FORMAT_VERSION, PredictorOptions
from insightface_paddle.recognition import FACE_NORMALIZATION, INPUT_SIZE, FaceEmbedder

from .backbones import build_backbone
from .errors import ArcFaceError, require_output_folder
from .weights import assign_weights

EXPORT_TYPES = ("paddle", "onnx", "all")
PADDLE_FILES = ("inference.json", "inference.pdiparams")
ONNX_FILE = "model.onnx"
ONNX_OPSET = 11
INPUT_NAME = "x"
#: exported and checkpoint embeddings of the same faces must agree this well
MIN_COSINE = 0.99999


def fresh_backbone(backbone: str, embedding_size: int, arrays: Mapping[str, np.ndarray],
                   source: str | os.PathLike[str]) -> paddle.nn.Layer:
    """A new backbone filled with `arrays`, in eval mode (fp32 whatever the arrays' dtype)."""
    layer = build_backbone(backbone, embedding_size)
    assign_weights(layer, {k: np.asarray(v, np.float32) if np.issubdtype(np.asarray(v).dtype,
                           np.floating) else v for k, v in arrays.items()}, source)
    layer.eval()
    return layer


def save_paddle_inference(layer: paddle.nn.Layer, folder: Path,
                          input_size: tuple[int, int] = INPUT_SIZE) -> None:
    """`paddle.jit.save` of a freshly built layer -> folder/inference.json + .pdiparams with a
    free batch dimension (input "x", float32 [None, 3, h, w])."""
    width, height = input_size
    spec = paddle.static.InputSpec([None, 3, height, width], "float32", INPUT_NAME)
    try:
        paddle.jit.save(layer, str(folder / "inference"), input_spec=[spec])
    except Exception as exc:
        raise ArcFaceError(f"{folder}: paddle.jit.save failed ({exc})") from None
    for name in PADDLE_FILES:
        if not (folder / name).is_file():
            raise ArcFaceError(f"{folder}: paddle.jit.save wrote no {name}")


@contextlib.contextmanager
def _captured_stdout() -> Iterator[list[str]]:
    """File descriptor 1 into a temporary file while paddle2onnx runs: its C++ side prints
    progress lines there, which are not the tool's output -> a list that holds those lines
    once the block has ended (the cause of a failure is among them)."""
    import ctypes

    lines: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            ctypes.CDLL(None).fflush(None)  # C stdio's buffer, before fd 1 is given back
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def translatable_legacy_graph(pdmodel: Path, params: Path, scratch: Path) -> tuple[Path, Path]:
    """A legacy `.pdmodel` as Paddle's translator to PIR (which paddle2onnx runs first) accepts
    it -> (graph, params): a patched copy in `scratch` beside a link to the weights (the
    translator reads them from the graph's folder), or the files themselves when the graph
    needs nothing.

    `prelu` ops saved by Paddle before 2.3 (the published MobileFace's) carry no `data_format`;
    PIR's prelu requires one and the translation fails. The old op's only layout was NCHW, so
    that is filled in; nothing else changes."""
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    try:
        program.ParseFromString(pdmodel.read_bytes())
    except Exception as exc:
        raise ArcFaceError(f"{pdmodel}: not a Paddle program ({exc})") from None
    patched = 0
    for block in program.blocks:
        for op in block.ops:
            if op.type == "prelu" and not any(a.name == "data_format" for a in op.attrs):
                attr = op.attrs.add()
                attr.name, attr.type, attr.s = "data_format", framework_pb2.STRING, "NCHW"
                patched += 1
    if not patched:
        return pdmodel, params
    copy = scratch / pdmodel.name
    copy.write_bytes(program.SerializeToString())
    (scratch / params.name).symlink_to(params.resolve())
    return copy, scratch / params.name


def convert_to_onnx(folder: Path, target: Path, opset: int = ONNX_OPSET) -> None:
    """The Paddle model in `folder` (inference.json, or a legacy inference.pdmodel, with
    inference.pdiparams) -> `target` ONNX bytes through paddle2onnx.

    No optimiser runs (`optimize_tool=None`, no `save_file`): paddle2onnx's default optimiser
    pip-installs packages at export time, which an export must never do.
    """
    try:
        import paddle2onnx
    except ImportError:
        raise ArcFaceError("--export_type onnx needs paddle2onnx (pip install "
                           "paddle2onnx==2.1.0)") from None
    graphs = [folder / name for name in ("inference.json", "inference.pdmodel")]
    graph = next((g for g in graphs if g.is_file()), None)
    params = folder / "inference.pdiparams"
    if graph is None or not params.is_file():
        raise ArcFaceError(f"{folder}: no Paddle model to convert (inference.json or "
                           "inference.pdmodel with inference.pdiparams)")
    with tempfile.TemporaryDirectory(prefix="legacy_graph_") as scratch:
        if graph.suffix == ".pdmodel":
            graph, params = translatable_legacy_graph(graph, params, Path(scratch))
        failure: BaseException | None = None
        with _captured_stdout() as printed:
            try:
                model = paddle2onnx.export(str(graph), str(params), save_file=None,
                                           opset_version=opset, enable_onnx_checker=True,
                                           optimize_tool=None)
            except (Exception, SystemExit) as exc:  # paddle2onnx prints the cause, then exits
                failure = exc
        if failure is not None:
            hint = (" (legacy .pdmodel graphs may not translate; export the weights from a "
                    "checkpoint instead)") if graph.suffix == ".pdmodel" else ""
            said = [line for line in printed if "ERROR" in line]
            cause = said[-1].strip() if said else str(failure) or "no message"
            raise ArcFaceError(f"{folder}: ONNX conversion failed ({cause}){hint}") from None
    if not isinstance(model, (bytes, bytearray)) or not model:
        raise ArcFaceError(f"{folder}: ONNX conversion produced no model")
    with atomic_open(target, "wb") as handle:
        handle.write(model)


def model_meta(backbone: str, embedding_size: int, folder: Path,
               input_size: tuple[int, int] = INPUT_SIZE, source: str = "") -> dict[str, Any]:
    """The runtime's `model_meta.json` for the model files present in `folder`."""
    weights = {name: sha256_file(folder / name)
               for name in ("inference.pdiparams", ONNX_FILE) if (folder / name).is_file()}
    return {
        "format_version": META_FORMAT_VERSION,
        "task": "recognition",
        "name": backbone,
        "backbone": backbone,
        "embedding_size": int(embedding_size),
        "input": {"name": INPUT_NAME, "size": list(input_size),
                  "channel_order": FACE_NORMALIZATION.channel_order,
                  "mean": list(FACE_NORMALIZATION.mean), "std": list(FACE_NORMALIZATION.std)},
        "weights_sha256": weights,
        "source": source,
    }


def write_model_folder(layer: paddle.nn.Layer, folder: Path, backbone: str,
                       embedding_size: int, export_type: str = "paddle",
                       input_size: tuple[int, int] = INPUT_SIZE, source: str = "") -> None:
    """Write the model files of `export_type` and their metadata into an existing `folder`
    (files named as the runtime expects; ONNX-only exports drop the Paddle files)."""
    if export_type not in EXPORT_TYPES:
        raise ArcFaceError(f"--export_type {export_type!r}: expected one of "
                           f"{', '.join(EXPORT_TYPES)}")
    save_paddle_inference(layer, folder, input_size)
    if export_type in ("onnx", "all"):
        convert_to_onnx(folder, folder / ONNX_FILE)
    if export_type == "onnx":
        for name in (*PADDLE_FILES, "inference.pdiparams.info"):
            (folder / name).unlink(missing_ok=True)
    meta = model_meta(backbone, embedding_size, folder, input_size, source)
    with atomic_open(folder / META_FILE, "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2)


def exported_embedders(folder: Path, options: PredictorOptions | None = None
                       ) -> dict[str, FaceEmbedder]:
    """Every model in an export folder, loaded through the runtime: {"paddle": ..., "onnx": ...}."""
    options = options or PredictorOptions()
    found = {}
    if (folder / PADDLE_FILES[0]).is_file():
        found["paddle"] = FaceEmbedder.from_folder(folder, options=_with_backend(options, "paddle"))
    if (folder / ONNX_FILE).is_file():
        found["onnx"] = FaceEmbedder.from_folder(folder, options=_with_backend(options, "onnx"))
    return found


def _with_backend(options: PredictorOptions, backend: str) -> PredictorOptions:
    from dataclasses import replace

    return replace(options, backend=backend)


@dataclass(frozen=True)
class ParityReport:
    """Embeddings of the same faces: checkpoint (dynamic) against each exported model."""

    faces: int
    #: engine -> (max |embedding diff|, min cosine)
    engines: dict[str, tuple[float, float]]

    @property
    def passed(self) -> bool:
        return all(cos >= MIN_COSINE for _, cos in self.engines.values())

    def describe(self) -> str:
        parts = [f"{name}: max |diff| {diff:.3g}, min cosine {cos:.7f}"
                 for name, (diff, cos) in self.engines.items()]
        return f"{self.faces} faces; " + "; ".join(parts)


def check_parity(reference: np.ndarray, batch: np.ndarray, embedders: Mapping[str, FaceEmbedder]
                 ) -> ParityReport:
    """reference [N, D] embeddings of `batch` [N, 3, h, w] by the checkpoint -> how far each
    exported model's embeddings of the same batch lie from them."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    engines = {}
    for name, embedder in embedders.items():
        try:
            got = embedder.run(batch)
        except InsightFaceError as exc:
            raise ArcFaceError(f"exported {name} model does not run ({exc})") from None
        if got.shape != reference.shape:
            raise ArcFaceError(f"exported {name} model gives {list(got.shape)}, the checkpoint "
                               f"{list(reference.shape)}")
        cosine = np.sum(unit(got.astype(np.float64)) * unit(reference.astype(np.float64)), 1)
        engines[name] = (float(np.max(np.abs(got - reference))), float(np.min(cosine)))
    return ParityReport(len(batch), engines)


def export_weights(arrays: Mapping[str, np.ndarray], backbone: str, embedding_size: int,
                   output_dir: str | os.PathLike[str], check_faces: np.ndarray,
                   export_type: str = "paddle", source: str = "") -> ParityReport:
    """Export into `output_dir` (created; model files replaced) and verify on `check_faces`
    (preprocessed [N, 3, 112, 112]) -> the parity report; raises if any model disagrees,
    leaving `output_dir` untouched (a folder it had to create is removed again)."""
    with _staging_folder(output_dir) as (output, staging):
        layer = fresh_backbone(backbone, embedding_size, arrays, source or "weights")
        write_model_folder(layer, staging, backbone, embedding_size, export_type, source=source)
        with paddle.no_grad():
            reference = layer(paddle.to_tensor(check_faces)).numpy()
        report = check_parity(reference, check_faces, exported_embedders(staging))
        if not report.passed:
            raise ArcFaceError(f"export self-check failed, exported model differs from the "
                               f"checkpoint ({report.describe()})")
        for name in (*PADDLE_FILES, ONNX_FILE, META_FILE):
            if (staging / name).is_file():
                os.replace(staging / name, output / name)
            elif name != META_FILE:
                (output / name).unlink(missing_ok=True)  # a stale file of another export type
        return report


@contextlib.contextmanager
def _staging_folder(output_dir: str | os.PathLike[str]) -> Iterator[tuple[Path, Path]]:
    """(the output folder, made if missing; a temporary folder inside it) for the block. The
    temporary folder is always removed; the output folder too when the block put nothing in a
    folder it had to create."""
    output = Path(output_dir)  # checked by the callers before any model was read
    with folder_for_output(output, "--output_dir"):
        staging = Path(tempfile.mkdtemp(prefix=".export.", dir=output))
        try:
            yield output, staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


#: faces embedded by the self-check
CHECK_FACES = 64


def check_faces_from(path: str | os.PathLike[str] | None, count: int = CHECK_FACES
                     ) -> tuple[np.ndarray, str]:
    """Preprocessed faces [N, 3, 112, 112] for the self-check and where they came from: the
    first `count` of a verification `.bin` or of a folder of aligned face images; without a
    path, deterministic noise (said so in the returned description)."""
    from insightface_paddle.media import list_images, read_image
    from insightface_paddle.recognition import preprocess_faces

    from .data.transforms import decode_rgb
    from .data.verification_bin import load_verification_bin

    if path is None:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 256, (count, 112, 112, 3), dtype=np.uint8)
        return preprocess_faces(noise), f"{count} noise images (no --check_data given)"
    source = Path(path)
    if source.is_dir():
        files = list_images(source)[:count]
        if not files:
            raise ArcFaceError(f"--check_data {source}: no images in the folder")
        try:
            faces = [read_image(f) for f in files]
        except InsightFaceError as exc:
            raise ArcFaceError(f"--check_data: {exc}") from None
    elif source.is_file():
        vset = load_verification_bin(source)
        faces = [decode_rgb(data, f"{source} image {i}")
                 for i, data in enumerate(vset.images[:count])]
    else:
        raise ArcFaceError(f"--check_data {source}: no such file or folder")
    return preprocess_faces(faces), f"{len(faces)} faces of {source}"


def export_checkpoint(checkpoint: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                      export_type: str = "paddle", backbone: str | None = None,
                      embedding_size: int | None = None,
                      check_data: str | os.PathLike[str] | None = None
                      ) -> tuple[ParityReport, str]:
    """A training checkpoint (either graph mode) or weights file -> a model folder, checked on
    real faces -> (parity report, what the check embedded)."""
    from .checkpoint import load_backbone_weights

    if export_type not in EXPORT_TYPES:
        raise ArcFaceError(f"--export_type {export_type!r}: expected one of "
                           f"{', '.join(EXPORT_TYPES)}")
    require_output_folder(output_dir, "--output_dir")
    arrays, backbone, embedding_size, path = load_backbone_weights(checkpoint, backbone,
                                                                    embedding_size)
    faces, described = check_faces_from(check_data)
    report = export_weights(arrays, backbone, embedding_size, output_dir, faces, export_type,
                            source=str(path))
    return report, described


def convert_model_folder(model_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
                         check_data: str | os.PathLike[str] | None = None
                         ) -> tuple[ParityReport, str]:
    """A Paddle inference folder (e.g. the published MobileFace) -> `output_dir`/model.onnx +
    model_meta.json, checked against the Paddle model on the same faces (read, like the output
    folder, before the conversion starts)."""
    require_output_folder(output_dir, "--output_dir")
    source = Path(model_dir)
    try:
        paddle_model = FaceEmbedder.from_folder(source, options=PredictorOptions(
            backend="paddle"))
    except InsightFaceError as exc:
        raise ArcFaceError(f"--model_dir: {exc}") from None
    faces, described = check_faces_from(check_data)
    with _staging_folder(output_dir) as (output, staging):
        convert_to_onnx(source, staging / ONNX_FILE)
        report = check_parity(paddle_model.run(faces), faces, {
            "onnx": FaceEmbedder.from_folder(staging, options=PredictorOptions(backend="onnx"))})
        if not report.passed:
            raise ArcFaceError(f"ONNX conversion self-check failed ({report.describe()})")
        meta = model_meta(paddle_model.signature.name, paddle_model.signature.embedding_size,
                          staging, paddle_model.input_size, str(source))
        meta["input"].update(mean=list(paddle_model.normalization.mean),
                             std=list(paddle_model.normalization.std),
                             channel_order=paddle_model.normalization.channel_order)
        with atomic_open(staging / META_FILE, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)
        for name in (ONNX_FILE, META_FILE):
            os.replace(staging / name, output / name)
        return report, described
