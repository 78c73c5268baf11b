"""Validation, export and inference: preprocessing shared with the runtime, the engines, the
tools' outputs and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest

from arcface_paddle.backbones import build_backbone
from arcface_paddle.data.datasets import synthetic_verification_pairs
from arcface_paddle.data.transforms import normalize_chw
from arcface_paddle.data.verification_bin import (
    VerificationSet,
    check_usable_verification_set,
    save_verification_bin,
)
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.evaluation.bin_eval import (
    LayerEmbedder,
    evaluate_verification_set,
    rank_slice,
)
from arcface_paddle.evaluation.engines import checkpoint_embedder
from arcface_paddle.export import convert_model_folder, export_checkpoint
from arcface_paddle.weights import layer_arrays, save_weights
from dist_scripts import tiny_backbones
from dist_scripts.launching import clean_env
from insightface_paddle.fileio import sha256_file
from insightface_paddle.recognition import (
    FACE_NORMALIZATION,
    flip_embedding,
    flip_views,
    preprocess_faces,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A TinyFaceNet weights file with BN statistics that are not the identity."""
    tiny_backbones.register()
    paddle.seed(3)
    layer = build_backbone("TinyFaceNet", 32)
    arrays = layer_arrays(layer)
    rng = np.random.default_rng(3)
    for name in arrays:
        if name.endswith(("_mean", "_variance")):
            arrays[name] = rng.uniform(0.1, 0.5, arrays[name].shape).astype(np.float32)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    save_weights(path, arrays, "TinyFaceNet", 32)
    return path


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    images, issame = synthetic_verification_pairs(40, seed=5)
    path = tmp_path_factory.mktemp("sets") / "synth.bin"
    save_verification_bin(path, images, issame)
    return path


def run_tool(name: str, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """tools/<name> with the test backbones registered."""
    return subprocess.run([sys.executable, str(REPO / "tests" / "dist_scripts" / "run_tool.py"),
                           name.removesuffix(".py"), *args], env=env or clean_env(),
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for needle in needles:
        assert needle in last, last


# -- one preprocessing ---------------------------------------------------------------------------
def test_preprocessing_resizes_in_float_and_training_uses_the_same_function():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (150, 130, 3), dtype=np.uint8)
    batch = preprocess_faces([face])
    resized = cv2.resize(face.astype(np.float32), (112, 112), interpolation=cv2.INTER_LINEAR)
    expected = ((resized - 127.5) / 127.5).transpose(2, 0, 1)
    np.testing.assert_array_equal(batch[0], expected)
    uint8_first = (cv2.resize(face, (112, 112)).astype(np.float32) - 127.5) / 127.5
    assert np.abs(uint8_first.transpose(2, 0, 1) - batch[0]).max() > 1e-3  # not resized in uint8
    aligned = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(normalize_chw(aligned), preprocess_faces([aligned])[0])
    np.testing.assert_array_equal(preprocess_faces(aligned[None])[0],
                                  FACE_NORMALIZATION.apply(aligned.astype(np.float32))
                                  .transpose(2, 0, 1))


def test_flip_embedding_is_one_call_on_both_views():
    calls = []

    def run(batch):
        calls.append(len(batch))
        return batch[:, 0, 0, :4].copy()  # the first four pixels of the first row

    batch = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    plain, mirrored = flip_views(run, batch)
    np.testing.assert_array_equal(plain, batch[:, 0, 0, :4])
    np.testing.assert_array_equal(mirrored, batch[:, 0, 0, ::-1][:, :4])
    np.testing.assert_array_equal(flip_embedding(run, batch), plain + mirrored)
    assert calls == [4, 4]


def test_rank_slices_cover_every_face_once():
    for count, world in ((12000, 2), (7, 3), (2, 4)):
        slices = [rank_slice(count, r, world) for r in range(world)]
        covered = [i for start, stop in slices for i in range(start, stop)]
        assert covered == list(range(count))


# -- engines -------------------------------------------------------------------------------------
def test_inference_engine_scores_like_eager(tiny_weights, small_set):
    from arcface_paddle.data.verification_bin import load_verification_bin

    vset = load_verification_bin(small_set)
    fast = evaluate_verification_set(checkpoint_embedder(tiny_weights), vset, 16)
    eager = evaluate_verification_set(checkpoint_embedder(tiny_weights, engine="eager"), vset, 16)
    np.testing.assert_allclose(fast.cosine, eager.cosine, atol=1e-5)
    assert fast.accuracy == eager.accuracy
    assert fast.xnorm == pytest.approx(eager.xnorm, rel=1e-5)
    assert isinstance(checkpoint_embedder(tiny_weights, engine="eager"), LayerEmbedder)


def test_checkpoint_flags_must_match_what_it_holds(tiny_weights):
    with pytest.raises(ArcFaceError, match="backbone TinyFaceNet, not --backbone MobileFaceNet"):
        checkpoint_embedder(tiny_weights, backbone="MobileFaceNet")
    with pytest.raises(ArcFaceError, match="embedding size 32, not --embedding_size 64"):
        checkpoint_embedder(tiny_weights, embedding_size=64)


def test_unusable_sets_are_refused():
    images, issame = synthetic_verification_pairs(10, seed=1)
    check_usable_verification_set(VerificationSet("ok", images, issame))
    with pytest.raises(ArcFaceError, match="two: 2 pairs"):
        check_usable_verification_set(VerificationSet("two", images[:4], issame[:2]))
    broken = [*images[:5], b"\xff\xd8\xffjunk", *images[6:]]
    with pytest.raises(ArcFaceError, match="bad image 5"):
        check_usable_verification_set(VerificationSet("bad", broken, issame))


# -- export --------------------------------------------------------------------------------------
def test_export_writes_a_checked_model_folder_without_running_pip(tiny_weights, small_set,
                                                                  tmp_path, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"export started a process: {args}")

    for name in ("Popen", "run", "call", "check_call", "check_output"):
        monkeypatch.setattr(subprocess, name, no_subprocess)
    out = tmp_path / "exported"
    report, checked = export_checkpoint(tiny_weights, out, "all", check_data=small_set)
    monkeypatch.undo()
    assert "faces of" in checked and report.passed
    assert set(report.engines) == {"paddle", "onnx"}
    assert all(cos >= 0.99999 for _, cos in report.engines.values())
    assert sorted(p.name for p in out.iterdir()) == ["inference.json", "inference.pdiparams",
                                                     "model.onnx", "model_meta.json"]
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["embedding_size"] == 32 and meta["backbone"] == "TinyFaceNet"
    assert meta["weights_sha256"]["inference.pdiparams"] == sha256_file(
        out / "inference.pdiparams")
    assert meta["weights_sha256"]["model.onnx"] == sha256_file(out / "model.onnx")

    # the three score the same verification set alike
    results = {}
    for label, args in (("checkpoint", ["--checkpoint_dir", str(tiny_weights)]),
                        ("paddle", ["--model_dir", str(out)]),
                        ("onnx", ["--model_dir", str(out / "model.onnx")])):
        json_path = tmp_path / f"{label}.json"
        result = run_tool("validation.py", *args, "--val_targets", str(small_set),
                          "--batch_size", "16", "--json", str(json_path))
        assert result.returncode == 0, result.stderr[-2000:]
        assert "TAR@FAR=0.001" in result.stdout and "XNorm" in result.stdout
        written = json.loads(json_path.read_text())
        results[label] = written["sets"]["synth"]
        if label == "onnx":  # a file of the export folder: the folder's metadata applies
            assert written["model"]["name"] == "TinyFaceNet"
    for label in ("paddle", "onnx"):
        assert results[label]["accuracy"] == results["checkpoint"]["accuracy"]
        assert results[label]["xnorm"] == pytest.approx(results["checkpoint"]["xnorm"],
                                                        rel=1e-5)


def test_validation_plots_one_roc_image_per_set(tiny_weights, small_set, tmp_path):
    result = run_tool("validation.py", "--checkpoint_dir", str(tiny_weights), "--val_targets",
                      f"{small_set},{small_set.parent / 'synth.bin'}", "--plot",
                      str(tmp_path / "roc"), "--batch_size", "40")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "embedding" not in result.stderr and "batch/s" not in result.stderr  # no bar in a pipe
    image = cv2.imread(str(tmp_path / "roc" / "roc_synth.png"))
    assert image is not None and image.shape[0] > 100


# -- one-line errors -----------------------------------------------------------------------------
def test_validation_errors_are_one_line(tiny_weights, small_set, tmp_path):
    data = str(small_set.parent)
    assert_one_line_error(run_tool("validation.py", "--checkpoint_dir", str(tiny_weights),
                                   "--data_dir", data, "--val_targets", "agedb_30"),
                          "agedb_30", "synth")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")
    assert_one_line_error(run_tool("validation.py", "--checkpoint_dir", str(tiny_weights),
                                   "--val_targets", str(bad)), "bad.bin")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    assert_one_line_error(run_tool("validation.py", "--model_dir", str(empty),
                                   "--val_targets", str(small_set)), "no model found")
    assert_one_line_error(run_tool("validation.py", "--checkpoint_dir", str(tiny_weights),
                                   "--backbone", "FresResNet50", "--val_targets",
                                   str(small_set)), "--backbone FresResNet50")


def test_a_detector_folder_is_not_taken_for_a_recognition_model(shared, small_set, tmp_path):
    detector = shared("models/blazeface_fpn_ssh_1000e_v1.0_infer")
    for tool, args in (("export.py", ["--export_type", "onnx", "--output_dir",
                                      str(tmp_path / "out")]),
                       ("validation.py", ["--val_targets", str(small_set)])):
        assert_one_line_error(run_tool(tool, "--model_dir", str(detector), *args),
                              "a recognition model takes one input")
    assert not (tmp_path / "out").exists()


def test_onnx_without_onnxruntime_is_one_line(tiny_weights, small_set, tmp_path):
    out = tmp_path / "onnx_only"
    export_checkpoint(tiny_weights, out, "onnx", check_data=small_set)
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model_meta.json"]
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('blocked for the test')\n")
    env = clean_env()
    env["PYTHONPATH"] = f"{blocker}:{env['PYTHONPATH']}"
    result = run_tool("validation.py", "--model_dir", str(out), "--val_targets", str(small_set),
                      env=env)
    assert_one_line_error(result, "onnxruntime")


def test_inference_tool_writes_embeddings_and_sources(tiny_weights, small_set, tmp_path):
    from arcface_paddle.data.verification_bin import load_verification_bin

    out = tmp_path / "exported"
    export_checkpoint(tiny_weights, out, "paddle", check_data=small_set)
    faces = tmp_path / "faces"
    faces.mkdir()
    vset = load_verification_bin(small_set)
    for i in range(3):
        (faces / f"{i}.png").write_bytes(vset.images[i])
    (faces / "3.png").write_bytes(b"not a png")
    result = run_tool("inference.py", "--export_type", "paddle", "--model_file",
                      str(out / "inference.json"), "--params_file",
                      str(out / "inference.pdiparams"), "--image_path", str(faces),
                      "--output", str(tmp_path / "emb"), "--benchmark", "--batch_sizes", "1,2",
                      "--benchmark_runs", "3")
    assert result.returncode == 1  # one input failed, the others were embedded
    assert "3.png" in result.stderr and "Traceback" not in result.stderr
    assert "p99 ms" in result.stdout
    embeddings = np.load(tmp_path / "emb" / "embeddings.npy")
    sources = (tmp_path / "emb" / "sources.txt").read_text().splitlines()
    assert embeddings.shape == (3, 32) and [Path(s).name for s in sources] == [
        "0.png", "1.png", "2.png"]
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    eager = checkpoint_embedder(tiny_weights, engine="eager")
    from insightface_paddle.media import decode_image

    expected = eager.run(preprocess_faces([decode_image(vset.images[i], "x")
                                           for i in range(3)]))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


# -- the export works in the runtime as it is ----------------------------------------------------
@pytest.mark.slow
def test_exported_folder_builds_an_index_that_refuses_mobileface_queries(
        tiny_weights, small_set, tmp_path, shared, model_home, capsys):
    from insightface_paddle.cli import main as cli

    out = tmp_path / "exported"
    export_checkpoint(tiny_weights, out, "paddle", check_data=small_set)
    gallery = tmp_path / "gallery"
    source = shared("demo/friends/gallery")
    for person in ("Chandler", "Joey"):
        (gallery / person).mkdir(parents=True)
        for photo in sorted((source / person).iterdir())[:2]:
            (gallery / person / photo.name).write_bytes(photo.read_bytes())
    index = tmp_path / "tiny_index.npz"
    assert cli(["--build_index", str(index), "--img_dir", str(gallery), "--rec_model",
                str(out), "--detect_gallery"]) == 0
    query = str(shared("demo/friends/query/friends2.jpg"))
    assert cli(["--det", "--rec", "--index", str(index), "--rec_model", str(out), "--input",
                query, "--output", str(tmp_path / "drawn")]) == 0
    printed = capsys.readouterr().out
    assert "friends2.jpg" in printed  # a result table: detected, embedded, searched
    assert cli(["--det", "--rec", "--index", str(index), "--rec_model", "MobileFace",
                "--input", query]) == 1
    assert "TinyFaceNet" in capsys.readouterr().err


def test_the_readme_evaluation_snippet_runs(small_set, shared, capsys):
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "model = " in snippet  # the snippet defines what it evaluates
    snippet = snippet.replace("../shared/data/lfw.bin", str(small_set)).replace(
        "../shared/models/mobileface_v1.0_infer", str(shared("models/mobileface_v1.0_infer")))
    exec(compile(snippet, "README.md", "exec"), {})
    accuracy = float(capsys.readouterr().out.split()[0])
    assert 0.5 <= accuracy <= 1.0


@pytest.mark.slow
def test_the_scripts_export_validate_and_embed(small_set, tmp_path):
    """export_dynamic.sh -> validation_static.sh (same checkpoint format) -> inference.sh."""
    paddle.seed(1)
    weights = tmp_path / "mobile.npz"
    save_weights(weights, layer_arrays(build_backbone("MobileFaceNet", 32)), "MobileFaceNet", 32)
    env = clean_env()
    env.update(BACKBONE="MobileFaceNet", EMBEDDING_SIZE="32", CHECKPOINT_DIR=str(weights),
               OUTPUT_DIR=str(tmp_path / "exported"), CHECK_DATA=str(small_set),
               DATA_DIR=str(small_set.parent), VAL_TARGETS="synth", BATCH_SIZE="40",
               MODEL_DIR=str(tmp_path / "exported"), IMAGE_PATH=str(tmp_path / "faces"))
    from arcface_paddle.data.verification_bin import load_verification_bin

    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "a.png").write_bytes(load_verification_bin(small_set).images[0])

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(["sh", str(REPO / "scripts" / name), *args], env=env,
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
        return result

    assert "self-check on 64 faces" in script("export_dynamic.sh").stdout
    assert "synth" in script("validation_static.sh").stdout
    script("inference.sh", "--output", str(tmp_path / "emb"))
    assert np.load(tmp_path / "emb" / "embeddings.npy").shape == (1, 32)


@pytest.mark.slow
def test_the_published_legacy_mobileface_converts_to_onnx(shared, tmp_path):
    """Its prelu ops predate `data_format`, which the translation to PIR requires: the export
    fills in the old default, and the ONNX model embeds real faces as the original does."""
    out = tmp_path / "mobileface_onnx"
    report, checked = convert_model_folder(shared("models/mobileface_v1.0_infer"), out,
                                           shared("data/lfw.bin"))
    assert report.passed and "lfw.bin" in checked
    max_diff, min_cosine = report.engines["onnx"]
    assert max_diff < 1e-4 and min_cosine >= 0.99999
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model_meta.json"]
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["embedding_size"] == 128 and meta["input"]["channel_order"].lower() == "rgb"
