"""Model folders in every supported format load behind one interface; bad ones fail cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from insightface_paddle.detection import FaceDetector, keep_concat_relus_apart
from insightface_paddle.errors import InsightFaceError
from insightface_paddle.media import read_image
from insightface_paddle.predictor import (
    Normalization,
    PredictorOptions,
    create_predictor,
    model_files,
)
from insightface_paddle.recognition import FaceEmbedder, preprocess_faces


def test_folder_layouts(tmp_path):
    with pytest.raises(InsightFaceError, match="model folder not found"):
        model_files(tmp_path / "absent")
    with pytest.raises(InsightFaceError, match="no model found"):
        model_files(tmp_path)
    (tmp_path / "inference.json").write_text("{}")
    with pytest.raises(InsightFaceError, match=r"no inference\.pdiparams"):
        model_files(tmp_path)
    (tmp_path / "inference.pdiparams").write_bytes(b"")
    assert model_files(tmp_path)[0] == "paddle"


def test_truncated_weights_fail_cleanly(shared, tmp_path):
    source = shared("models/mobileface_v1.0_infer")
    shutil.copy(source / "inference.pdmodel", tmp_path)
    (tmp_path / "inference.pdiparams").write_bytes(
        (source / "inference.pdiparams").read_bytes()[:100_000])
    with pytest.raises(InsightFaceError, match="cannot load model"):
        create_predictor(tmp_path)


@pytest.fixture(scope="module")
def blazeface_pir(tmp_path_factory, shared) -> Path:
    """The published BlazeFace translated to the current PIR format (`inference.json`)."""
    source = shared("models/blazeface_fpn_ssh_1000e_v1.0_infer")
    cache = tmp_path_factory.mktemp("pir_cache")
    script = (
        "import sys, paddle.inference as pi\n"
        "c = pi.Config(sys.argv[1] + '/inference.pdmodel', sys.argv[1] + '/inference.pdiparams')\n"
        "c.disable_gpu(); c.disable_mkldnn(); c.switch_ir_optim(False); c.enable_new_ir(True)\n"
        "c.enable_save_optim_model(True); c.set_optim_cache_dir(sys.argv[2])\n"
        "pi.create_predictor(c)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(source), str(cache)], check=True,
                   capture_output=True)
    target = tmp_path_factory.mktemp("blazeface_pir")
    shutil.move(cache / "_optimized.json", target / "inference.json")
    shutil.move(cache / "_optimized.pdiparams", target / "inference.pdiparams")
    shutil.copy(source / "infer_cfg.yml", target)
    return target


@pytest.mark.slow
def test_detector_gives_the_same_boxes_from_both_formats_and_kernels(blazeface_pir, detector,
                                                                     model_home, shared, caplog):
    """Legacy and PIR formats, oneDNN with its fusions (the default) and plain CPU kernels: the
    same boxes, on one-pass and two-pass photos, small faces and one filling the photo."""
    plain = PredictorOptions(enable_mkldnn=False)
    legacy = FaceDetector.from_folder(model_home / "blazeface_fpn_ssh_1000e_v1.0_infer", plain)
    # oneDNN cannot run this translated program: the probe notices and falls back, with a word
    with caplog.at_level("WARNING"):
        pir = FaceDetector.from_folder(blazeface_pir)
    assert "retrying with oneDNN off" in caplog.text
    for name, faces in (("friends2.jpg", 6), ("friends1.jpg", 6), ("Rachel.png", 1)):
        rgb = read_image(shared(f"demo/friends/query/{name}"))
        reference = legacy.detect(rgb)
        assert len(reference) == faces, name
        np.testing.assert_allclose(pir.detect(rgb), reference, atol=0.05, err_msg=name)
        np.testing.assert_allclose(detector.detect(rgb), reference, atol=0.05, err_msg=name)


def test_only_the_concat_fed_relus_are_rewritten(shared):
    """The detector's program rewrite touches the two relus Paddle's fusion mishandles (those
    after a concat) and nothing else; the rewritten ones compute relu."""
    program = _blazeface_program(shared)
    before = [(op.type, len(op.attrs)) for op in program.blocks[0].ops]
    assert keep_concat_relus_apart(program)  # nothing else after a concat: safe for the pass
    after = program.blocks[0].ops
    changed = [i for i, op in enumerate(after) if (op.type, len(op.attrs)) != before[i]]
    assert len(after) == len(before) and len(changed) == 2
    producers = {name: op.type for op in after for out in op.outputs for name in out.arguments}
    for i in changed:
        op = after[i]
        assert before[i][0] == "relu" and op.type == "thresholded_relu"
        assert producers[op.inputs[0].arguments[0]] == "concat"
        assert [a.f for a in op.attrs if a.name in ("threshold", "value")] == [0.0, 0.0]
    assert sum(op.type == "relu" for op in after) == sum(t == "relu" for t, _ in before) - 2


def _blazeface_program(shared):
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(
        shared("models/blazeface_fpn_ssh_1000e_v1.0_infer/inference.pdmodel").read_bytes())
    return program


@pytest.mark.slow
def test_a_concat_fed_activation_without_a_stand_in_turns_the_fusion_off(detector, shared,
                                                                       tmp_path):
    """Another export whose concat feeds, say, leaky_relu: the rewrite cannot keep it apart, so
    the pass is deleted and the boxes stay right. Here BlazeFace's two concat-fed relus become
    leaky_relu(alpha=0), the same function; fused, they move friends2.jpg's boxes by 13 px."""
    from paddle.base.proto import framework_pb2

    program = _blazeface_program(shared)
    producers = {n: op.type for op in program.blocks[0].ops for out in op.outputs
                 for n in out.arguments}
    concat_fed = [op for op in program.blocks[0].ops
                  if op.type == "relu" and producers[op.inputs[0].arguments[0]] == "concat"]
    assert len(concat_fed) == 2
    for op in concat_fed:
        op.type = "leaky_relu"
        alpha = op.attrs.add()
        alpha.name, alpha.type, alpha.f = "alpha", framework_pb2.FLOAT, 0.0
    (tmp_path / "inference.pdmodel").write_bytes(program.SerializeToString())
    assert not keep_concat_relus_apart(program)
    source = shared("models/blazeface_fpn_ssh_1000e_v1.0_infer")
    for name in ("inference.pdiparams", "infer_cfg.yml"):
        (tmp_path / name).symlink_to(source / name)
    edited = FaceDetector.from_folder(tmp_path)
    for name in ("friends2.jpg", "Rachel.png"):
        rgb = read_image(shared(f"demo/friends/query/{name}"))
        np.testing.assert_allclose(edited.detect(rgb), detector.detect(rgb), atol=0.05,
                                   err_msg=name)


class TinyRecognizer:
    """Built lazily so importing this test module does not import paddle."""

    @staticmethod
    def export(folder: Path, height: int, width: int) -> None:
        import paddle

        class Net(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.conv = paddle.nn.Conv2D(3, 8, 3, stride=2)
                self.act = paddle.nn.PReLU(8)
                self.fc = paddle.nn.Linear(8, 16)

            def forward(self, x):
                return self.fc(paddle.mean(self.act(self.conv(x)), axis=[2, 3]))

        paddle.seed(7)
        net = Net()
        net.eval()
        spec = [paddle.static.InputSpec([None, 3, height, width], "float32", "x")]
        paddle.jit.save(net, str(folder / "inference"), input_spec=spec)


@pytest.mark.slow
def test_exported_model_metadata_and_onnx_backend(tmp_path):
    paddle_dir, onnx_dir = tmp_path / "paddle", tmp_path / "onnx"
    TinyRecognizer.export(paddle_dir, height=112, width=96)
    meta = {"format_version": 1, "task": "recognition", "name": "TinyNet", "embedding_size": 16,
            "input": {"name": "x", "size": [96, 112], "channel_order": "BGR",
                      "mean": [10.0, 20.0, 30.0], "std": [50.0, 60.0, 70.0]}}
    (paddle_dir / "model_meta.json").write_text(json.dumps(meta))
    onnx_dir.mkdir()
    subprocess.run(["paddle2onnx", "--model_dir", str(paddle_dir), "--model_filename",
                    "inference.json", "--params_filename", "inference.pdiparams", "--save_file",
                    str(onnx_dir / "model.onnx"), "--optimize_tool", "None"],
                   check=True, capture_output=True)
    shutil.copy(paddle_dir / "model_meta.json", onnx_dir)

    by_paddle = FaceEmbedder.from_folder(paddle_dir)
    by_onnx = FaceEmbedder.from_folder(onnx_dir)
    assert by_paddle.signature.name == "TinyNet" and by_paddle.signature.embedding_size == 16
    rgb = np.random.default_rng(0).integers(0, 256, (130, 120, 3), dtype=np.uint8)
    batch = by_paddle.preprocess(rgb)
    bgr = rgb[..., ::-1].astype(np.float32)
    import cv2

    manual = (cv2.resize(bgr, (96, 112)) - [10.0, 20.0, 30.0]) / [50.0, 60.0, 70.0]  # w, h
    np.testing.assert_allclose(batch[0], manual.transpose(2, 0, 1), atol=1e-4)
    np.testing.assert_allclose(by_onnx.run(batch), by_paddle.run(batch), atol=1e-5)

    (paddle_dir / "model_meta.json").write_text(json.dumps({**meta, "format_version": 7}))
    with pytest.raises(InsightFaceError, match="unsupported model metadata version 7"):
        FaceEmbedder.from_folder(paddle_dir)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_in_place_normalisation_equals_apply_and_transpose(order):
    norm = Normalization((123.0, 117.0, 104.0), (58.0, 57.0, 57.5), order)
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    out = np.full((3, 9, 6), 7.0, np.float32)  # a larger buffer: only the view is written
    norm.into_chw(rgb, out[:, :7, :5])
    expected = norm.apply(rgb.astype(np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(out[:, :7, :5], expected, rtol=1e-6, atol=1e-6)
    assert np.all(out[:, 7:, :] == 7.0) and np.all(out[:, :, 5:] == 7.0)


@pytest.mark.parametrize("shape", [(7, 5, 4), (7, 5, 1), (7, 5)])
def test_faces_that_are_not_rgb_are_refused(shape):
    """RGBA, one-channel and 2-D faces: one clear error, not their first three channels or a
    broadcast (the preprocessing is shared with training, where such a face is a data bug)."""
    face = np.zeros(shape, np.uint8)
    with pytest.raises(InsightFaceError, match=r"RGB image \[h, w, 3\], got shape"):
        preprocess_faces([face])


@pytest.mark.parametrize("user_value", [None, "30"])
def test_openmp_threads_stop_spinning_soon_after_a_call_unless_the_user_says(model_home,
                                                                           user_value):
    """Loading a Paddle model sets Intel OpenMP's block time to 1 ms (its 200 ms default keeps a
    core spinning through the work between model calls); a value in the environment is kept."""
    script = (
        "import ctypes, sys\n"
        "from insightface_paddle import zoo\n"
        "from insightface_paddle.recognition import FaceEmbedder\n"
        "FaceEmbedder.from_folder(zoo.resolve('MobileFace'))\n"
        "lib = [l.split()[-1] for l in open('/proc/self/maps') if 'libiomp5' in l][0]\n"
        "print(ctypes.CDLL(lib).kmp_get_blocktime())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KMP_BLOCKTIME"}
    if user_value is not None:
        env["KMP_BLOCKTIME"] = user_value
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.split()[-1] == (user_value or "1")
