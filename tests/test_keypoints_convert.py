"""MediaPipe's short-range face detector in Paddle: the converter refuses other files, and the
converted model equals the TFLite reference interpreter on real face crops."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from arcface_paddle.errors import ArcFaceError
from arcface_paddle.keypoints import convert as conversion
from benchmarks.bench_lfw_raw_pipeline import central
from conftest import MEDIAPIPE_FACE
from insightface_paddle import landmarks, zoo
from insightface_paddle.fileio import sha256_file
from insightface_paddle.landmarks import MIN_SCORE, KeypointModel, expanded_square
from insightface_paddle.media import read_image
from insightface_paddle.predictor import PredictorOptions

REPO = Path(__file__).resolve().parents[1]


def test_tampered_or_foreign_files_are_refused(shared, tmp_path):
    data = bytearray(shared(MEDIAPIPE_FACE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    tampered = tmp_path / "tampered.tflite"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ArcFaceError, match="refusing a modified or different file"):
        conversion.convert_mediapipe_face(tmp_path / "out", tampered)
    assert not (tmp_path / "out").exists()
    # the tool says it in one line and writes nothing
    result = subprocess.run([sys.executable, str(REPO / "tools/convert_mediapipe_face.py"),
                             "--source", str(tampered), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "sha256" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_tool_says_only_what_it_wrote_and_replaces_only_its_own_folder(shared, tmp_path):
    """Paddle's tracing warnings and glog lines stay off stderr; an existing folder is replaced
    (whole) only when it holds an earlier conversion, never a folder of other files."""
    out = tmp_path / "keypoints"
    result = subprocess.run([sys.executable, str(REPO / "tools/convert_mediapipe_face.py"),
                             "--source", str(shared(MEDIAPIPE_FACE)), "--output", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"wrote {out}: BlazeFaceKeypoints")
    first = json.loads((out / "model_meta.json").read_text())
    conversion.convert_mediapipe_face(out, shared(MEDIAPIPE_FACE))  # its own: made again
    assert json.loads((out / "model_meta.json").read_text()) == first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ArcFaceError, match="not a BlazeFaceKeypoints model folder"):
        conversion.convert_mediapipe_face(mine, shared(MEDIAPIPE_FACE))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_structure_is_checked_beyond_the_digest(shared, tmp_path):
    graph = conversion.read_tflite(shared(MEDIAPIPE_FACE))
    conversion.build_from_tflite(shared(MEDIAPIPE_FACE))  # the real file passes
    graph.ops[:] = [op for op in graph.ops if op.kind != "MAX_POOL_2D"]
    with pytest.raises(ArcFaceError, match="not MediaPipe's short-range face detector"):
        conversion._check_graph(graph, Path("x.tflite"))
    del graph.constants["conv2d_5/Kernel"]
    with pytest.raises(ArcFaceError, match="conv2d_5/Kernel"):
        conversion.weights_from_tflite(graph, Path("x.tflite"))
    (tmp_path / "text.tflite").write_text("not a flatbuffer at all")
    with pytest.raises(ArcFaceError, match="not a TensorFlow Lite flatbuffer"):
        conversion.read_tflite(tmp_path / "text.tflite")


def test_a_wheel_that_is_not_the_pinned_one_is_refused(shared, tmp_path):
    wheel = tmp_path / conversion.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(conversion.WHEEL_MEMBER, shared(MEDIAPIPE_FACE).read_bytes())
    with pytest.raises(ArcFaceError, match=r"is not that of mediapipe-0\.10\.14"):
        conversion.extract_from_wheel(wheel, tmp_path)


def test_converted_folder_is_found_by_the_zoo_with_its_metadata(model_home, shared):
    folder = zoo.resolve("BlazeFaceKeypoints")
    meta = json.loads((folder / "model_meta.json").read_text())
    assert meta["input"]["size"] == [128, 128] and meta["input"]["mean"] == [127.5] * 3
    assert meta["keypoints"][:4] == ["right_eye", "left_eye", "nose_tip", "mouth_center"]
    assert meta["anchors"]["grids"] == [[16, 2], [8, 6]]
    assert meta["source"]["sha256"] == sha256_file(shared(MEDIAPIPE_FACE))
    sums = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text()
                .splitlines())
    assert sums["inference.pdiparams"] == sha256_file(folder / "inference.pdiparams")
    assert sums["model.onnx"] == sha256_file(folder / "model.onnx")  # the copy runtimes prefer
    # onnxruntime is installed here: the runtime takes the ONNX copy by itself, one thread per
    # call whatever the runtime's threads (a photo's faces are split among concurrent calls),
    # and no thread spinning for the cores between calls
    predictor = KeypointModel.from_folder(folder, PredictorOptions(cpu_threads=2)).predictor
    assert type(predictor).__name__ == "OnnxPredictor" and predictor.concurrent_runs
    session = predictor._session.get_session_options()
    assert session.intra_op_num_threads == landmarks.KEYPOINT_THREADS == 1
    assert session.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert (folder / "LICENSE").read_text().startswith(
        (shared("models/mediapipe_face_0.10.14/LICENSE")).read_text()[:200])


def test_missing_folder_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    with pytest.raises(zoo.InsightFaceError, match="make it with `python tools/convert_mediapipe"):
        zoo.resolve("BlazeFaceKeypoints")


def _real_crops(shared, detector, keypoints: KeypointModel) -> np.ndarray:
    """The landmark stage's own inputs: 200 raw LFW photos and every face of the Friends
    queries, as [N, 3, 128, 128]."""
    photos = sorted(shared("data/lfw_raw/images").glob("*/*.jpg"))[::5][:200]
    batches = []
    for path in [*photos, *sorted(shared("demo/friends/query").iterdir())]:
        rgb = read_image(path)
        boxes = detector.detect(rgb)
        if path.parent.parent.name == "images":
            boxes = boxes[[central(boxes, *rgb.shape[:2])]]
        batches.append(keypoints.prepare(rgb, [expanded_square(b) for b in boxes]))
    return np.concatenate(batches)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["paddle", "onnx"])
def test_port_equals_the_tflite_interpreter_on_real_crops(shared, detector, model_home, backend):
    """Both files of the folder: the Paddle model, and the ONNX copy the runtime prefers."""
    from ai_edge_litert.interpreter import Interpreter

    keypoints = KeypointModel.from_folder(zoo.resolve("BlazeFaceKeypoints"),
                                          PredictorOptions(backend=backend))
    assert type(keypoints.predictor).__name__.lower().startswith(backend)
    crops = _real_crops(shared, detector, keypoints)
    assert len(crops) == 200 + 13
    interpreter = Interpreter(model_path=str(shared(MEDIAPIPE_FACE)))
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    fetch = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    reference_boxes, reference_logits = [], []
    for crop in crops:
        interpreter.set_tensor(feed, np.ascontiguousarray(crop.transpose(1, 2, 0)[None]))
        interpreter.invoke()
        reference_boxes.append(interpreter.get_tensor(fetch["regressors"])[0])
        reference_logits.append(interpreter.get_tensor(fetch["classificators"])[0, :, 0])
    boxes, logits = keypoints.predictor.run({"image": crops})
    reference_boxes, reference_logits = np.stack(reference_boxes), np.stack(reference_logits)
    scores, reference_scores = (0.5 * (1 + np.tanh(0.5 * x)) for x in (logits, reference_logits))
    assert np.abs(scores - reference_scores).max() < 1e-4  # every anchor
    # regressors are in pixels of the 128x128 input: the boxes and keypoints of every anchor
    # that finds a face agree within 1e-3 px (background anchors regress to thousands of pixels,
    # where float32 summation order alone moves them by ~0.02)
    faces = reference_scores >= MIN_SCORE
    assert faces.any(axis=1).mean() > 0.95  # real faces, found
    assert np.abs(boxes - reference_boxes)[faces].max() < 1e-3
    best = reference_scores.argmax(axis=1)
    rows = np.arange(len(crops))
    assert np.abs(boxes[rows, best] - reference_boxes[rows, best]).max() < 1e-3
