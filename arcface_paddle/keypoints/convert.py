"""MediaPipe's `face_detection_short_range.tflite` -> a Paddle inference model folder.

The folder holds `inference.json` + `inference.pdiparams` (input `image` [N, 3, 128, 128]),
`model_meta.json` (input size and normalisation, anchor layout, keypoint order, the source file's
sha256; docs/model_metadata.md), `SHA256SUMS` (so the zoo notices later corruption) and the
source's licence when it sits beside the `.tflite` file. The source must be the file published in
`mediapipe==0.10.14` (its sha256 is pinned): a modified file is refused. It comes from a path, or
from that wheel fetched from the package index by pip, whose sha256 is pinned too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from insightface_paddle.fileio import sha256_file

from ..errors import ArcFaceError, require_output_folder
from .blazeface_short import BLOCKS, HEADS, INPUT_SIZE, REGRESSORS, BlazeFaceShortRange
from .tflite_file import TfliteGraph, read_tflite

MODEL_NAME = "BlazeFaceKeypoints"
MEDIAPIPE_VERSION = "0.10.14"
SOURCE_NAME = "face_detection_short_range.tflite"
SOURCE_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
WHEEL_MEMBER = f"mediapipe/modules/face_detection/{SOURCE_NAME}"
WHEEL_LICENSE = f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE"
#: the cp311 manylinux x86_64 wheel of mediapipe 0.10.14 on the package index
WHEEL_NAME = "mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4"
#: MediaPipe's order of the six keypoints ("right" is the subject's right: the image's left)
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion",
             "left_ear_tragion")
GRIDS = ((16, 2), (8, 6))  # (cells per side, anchors per cell) of the two heads


def model_meta(source_sha256: str) -> dict[str, Any]:
    return {
        "format_version": 1,
        "task": "keypoints",
        "name": MODEL_NAME,
        "input": {"name": "image", "size": [INPUT_SIZE, INPUT_SIZE], "channel_order": "RGB",
                  "mean": [127.5] * 3, "std": [127.5] * 3},
        "outputs": ["regressors", "logits"],
        "anchors": {"grids": [list(g) for g in GRIDS], "offset": 0.5, "size": 1.0},
        "regressors": {"per_anchor": REGRESSORS, "scale": float(INPUT_SIZE),
                       "layout": "cx, cy, w, h, then x, y of each keypoint; input pixels, "
                                 "centres relative to the anchor centre"},
        "keypoints": list(KEYPOINTS),
        "score": "sigmoid(logit)",
        "source": {"file": SOURCE_NAME, "sha256": source_sha256,
                   "package": f"mediapipe=={MEDIAPIPE_VERSION}", "license": "Apache-2.0"},
    }


def _tflite_layer_names() -> list[tuple[str, str]]:
    """(our parameter prefix, the .tflite tensor prefix) of every convolution."""
    pairs = [("stem", "conv2d")]
    for i in range(len(BLOCKS)):
        pairs.append((f"blocks.{i}.depthwise", "depthwise_conv2d" + (f"_{i}" if i else "")))
        pairs.append((f"blocks.{i}.pointwise", f"conv2d_{i + 1}"))
    for head, (tap, _) in enumerate(HEADS):
        # MediaPipe names a head after the feature map's stride (8 or 16 input pixels per cell)
        stride = INPUT_SIZE // GRIDS[head][0]
        pairs.append((f"classifiers.{head}", f"classificator_{stride}"))
        pairs.append((f"regressors.{head}", f"regressor_{stride}"))
        del tap
    return pairs


def _check_graph(graph: TfliteGraph, source: Path) -> None:
    strides = [op.stride for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D"]
    expected = [stride for _, _, stride in BLOCKS]
    pools = sum(op.kind == "MAX_POOL_2D" for op in graph.ops)
    if strides != expected or pools != expected.count(2):
        raise ArcFaceError(f"{source}: not MediaPipe's short-range face detector (depthwise "
                           f"strides {strides}, {pools} max-pools)")
    spatial = [op for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D"]
    spatial.append(next(op for op in graph.ops if op.kind == "CONV_2D"))  # the 5x5 stem
    if any(op.padding != "SAME" for op in spatial):
        raise ArcFaceError(f"{source}: expected SAME padding in the 3x3 and 5x5 convolutions")


def weights_from_tflite(graph: TfliteGraph, source: Path) -> dict[str, np.ndarray]:
    """Our parameter name -> array, TFLite's OHWI kernels turned into Paddle's OIHW."""
    arrays = {}
    for ours, theirs in _tflite_layer_names():
        kernel = graph.constants.get(f"{theirs}/Kernel")
        bias = graph.constants.get(f"{theirs}/Bias")
        if kernel is None or bias is None:
            raise ArcFaceError(f"{source}: no weights named {theirs}/Kernel and {theirs}/Bias")
        # depthwise kernels are [1, H, W, C]: their channel axis is the last one as well
        order = (3, 0, 1, 2) if ours.endswith("depthwise") else (0, 3, 1, 2)
        arrays[f"{ours}.weight"] = np.ascontiguousarray(kernel.transpose(order))
        arrays[f"{ours}.bias"] = bias.astype(np.float32)
    return arrays


def build_from_tflite(source: Path) -> BlazeFaceShortRange:
    graph = read_tflite(source)
    _check_graph(graph, source)
    arrays = weights_from_tflite(graph, source)
    model = BlazeFaceShortRange()
    state = model.state_dict()
    if set(state) != set(arrays):
        raise ArcFaceError(f"{source}: weights {sorted(set(arrays) ^ set(state))} do not match")
    for name, value in state.items():
        if tuple(value.shape) != arrays[name].shape:
            raise ArcFaceError(f"{source}: {name} is {arrays[name].shape}, expected "
                               f"{tuple(value.shape)}")
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in arrays.items()})
    model.eval()
    return model


def check_source(source: Path) -> str:
    """The sha256 of `source`, which must be the published file."""
    if not source.is_file():
        raise ArcFaceError(f"{source}: no such file")
    digest = sha256_file(source)
    if digest != SOURCE_SHA256:
        raise ArcFaceError(f"{source}: sha256 {digest[:12]}... is not that of {SOURCE_NAME} "
                           f"from mediapipe=={MEDIAPIPE_VERSION} ({SOURCE_SHA256[:12]}...); "
                           "refusing a modified or different file")
    return digest


def fetch_from_wheel(workdir: Path) -> Path:
    """Download mediapipe's wheel with pip, check its sha256, extract the `.tflite` file (and
    the licence beside it)."""
    command = [sys.executable, "-m", "pip", "download", f"mediapipe=={MEDIAPIPE_VERSION}",
               "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_17_x86_64",
               "--python-version", "3.11", "--implementation", "cp", "-d", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = workdir / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise ArcFaceError(f"cannot download mediapipe=={MEDIAPIPE_VERSION} ({last}); "
                           "pass the .tflite file with --source instead")
    return extract_from_wheel(wheel, workdir)


def extract_from_wheel(wheel: Path, workdir: Path) -> Path:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ArcFaceError(f"{wheel}: sha256 {digest[:12]}... is not that of {WHEEL_NAME}")
    target = workdir / SOURCE_NAME
    try:
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(WHEEL_MEMBER))
            (workdir / "LICENSE").write_bytes(archive.read(WHEEL_LICENSE))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ArcFaceError(f"{wheel}: no {WHEEL_MEMBER} ({exc})") from None
    return target


def save_inference_model(model: BlazeFaceShortRange, folder: Path, meta: dict[str, Any],
                         licence: Path | None = None) -> None:
    """Write the folder under a temporary name beside it, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        spec = [paddle.static.InputSpec([None, 3, INPUT_SIZE, INPUT_SIZE], "float32", "image")]
        with warnings.catch_warnings():
            # Paddle's own tracing asks each padded tensor for its device, once per block
            warnings.filterwarnings("ignore", message="Tensor do not have 'place'")
            static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
            paddle.jit.save(static, str(staging / "inference"), input_spec=spec)
            add_onnx_copy(model, staging)
        (staging / "model_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if licence is not None and licence.is_file():
            shutil.copyfile(licence, staging / "LICENSE")
        files = sorted(p for p in staging.iterdir() if p.is_file())
        (staging / "SHA256SUMS").write_text(
            "".join(f"{sha256_file(p)}  {p.name}\n" for p in files))
        os.chmod(staging, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: largest difference allowed between the ONNX copy's outputs and the Paddle model's (regressors
#: are in input pixels, logits unbounded: both measured at ~1e-5 on random crops)
ONNX_TOLERANCE = 1e-3


def add_onnx_copy(model: BlazeFaceShortRange, folder: Path) -> None:
    """Write the saved model again as `model.onnx` (paddle2onnx), checked against the Layer on
    random crops. The runtime runs it with ONNX Runtime where that is installed: for this tiny
    network Paddle's per-op cost dominates (six crops: 7 ms against 16 ms on 2 cores). Without
    paddle2onnx or onnxruntime the folder holds the Paddle model alone."""
    import importlib.util

    from ..export import convert_to_onnx

    if not all(importlib.util.find_spec(m) for m in ("paddle2onnx", "onnxruntime")):
        return
    import onnxruntime

    target = folder / "model.onnx"
    convert_to_onnx(folder, target)
    crops = np.random.default_rng(0).uniform(-1, 1, (4, 3, INPUT_SIZE, INPUT_SIZE))
    crops = crops.astype(np.float32)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: crops})
    with paddle.no_grad():
        want = [t.numpy() for t in model(paddle.to_tensor(crops))]
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    if worst > ONNX_TOLERANCE:
        raise ArcFaceError(f"the ONNX copy of the keypoint model differs by {worst:.2g}")


def check_output(output: Path) -> None:
    """Refuse, before any download or conversion, an `output` the model folder cannot replace:
    a file, a folder holding anything but an earlier conversion (it is replaced whole), or a
    place where nothing can be written (the folder is staged beside it)."""
    require_output_folder(output, "--output")
    if output.is_dir():
        require_output_folder(output.parent, "--output")
    if output.is_dir() and any(output.iterdir()) and not _is_conversion(output):
        raise ArcFaceError(f"--output {output}: a folder that is not a {MODEL_NAME} model "
                           "folder; the conversion would replace it whole, choose a new folder")


def _is_conversion(folder: Path) -> bool:
    """Whether `folder` holds a model folder this converter wrote."""
    try:
        meta = json.loads((folder / "model_meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("name") == MODEL_NAME


def convert_mediapipe_face(output: str | os.PathLike[str],
                           source: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Convert `source` (None: fetch the mediapipe wheel) into the model folder `output`;
    returns the metadata written. `output` is checked first (`check_output`)."""
    output = Path(output)
    check_output(output)
    with tempfile.TemporaryDirectory(prefix="mediapipe_face.") as workdir:
        path = Path(source) if source is not None else fetch_from_wheel(Path(workdir))
        digest = check_source(path)
        model = build_from_tflite(path)
        meta = model_meta(digest)
        save_inference_model(model, output, meta, path.parent / "LICENSE")
    return meta
