"""Faithfulness proof on real data: the published MobileFace weights in our MobileFaceNet_128.

The full figures (6000 LFW pairs with flip) come from tools/import_published_mobileface.py; here
a few hundred real faces keep the test inside its time budget.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from arcface_paddle.backbones import build_backbone
from arcface_paddle.data.verification_bin import (
    VerificationSet,
    load_verification_bin,
    save_verification_bin,
)
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.published_mobileface import (
    compare_with_published,
    map_legacy_parameters,
    published_embed_fn,
    read_legacy_model,
)
from arcface_paddle.weights import layer_arrays, load_weights, save_weights

REPO = Path(__file__).resolve().parents[1]
MODEL = "models/mobileface_v1.0_infer"
#: LFW's first fold is 300 "same" pairs then 300 "different" pairs; interleave 64 of each
PAIR_INDICES = [i for k in range(64) for i in (k, 300 + k)]


@pytest.fixture(scope="module")
def legacy_ops(shared):
    ops, io = read_legacy_model(shared(MODEL))
    assert list(io["feeds"]) == ["x"]
    return ops


@pytest.fixture(scope="module")
def imported(legacy_ops):
    model = build_backbone("MobileFaceNet_128")
    state = map_legacy_parameters(legacy_ops, model)
    model.set_state_dict({name: paddle.to_tensor(value) for name, value in state.items()})
    model.eval()
    return model


@pytest.fixture(scope="module")
def lfw_subset(shared) -> VerificationSet:
    lfw = load_verification_bin(shared("data/lfw.bin"))
    images = [lfw.images[2 * p + side] for p in PAIR_INDICES for side in (0, 1)]
    return VerificationSet("lfw", images, lfw.issame[PAIR_INDICES])


@pytest.mark.slow
def test_embeddings_and_accuracy_equal_the_published_model(shared, imported, lfw_subset):
    published = published_embed_fn(shared(MODEL))
    report = compare_with_published(imported, published, lfw_subset,
                                    compare_images=len(lfw_subset.images), flip=False)
    assert report.images_compared == 256 and report.pairs == 128
    assert report.max_abs_diff <= 1e-4
    assert report.accuracy_diff <= 1e-3
    assert report.ours_accuracy > 0.9  # real faces: far above chance
    assert report.passed


def test_every_mismatch_stops_the_import(legacy_ops):
    model = build_backbone("MobileFaceNet_128")
    parameter_ops = [i for i, op in enumerate(legacy_ops) if op.tensors]

    missing_op = [op for i, op in enumerate(legacy_ops) if i != parameter_ops[5]]
    with pytest.raises(ArcFaceError, match="conv/BN/PReLU ops"):
        map_legacy_parameters(missing_op, model)

    wrong_stride = copy.deepcopy(legacy_ops)
    wrong_stride[parameter_ops[0]].attrs["strides"] = [1, 1]
    with pytest.raises(ArcFaceError, match="conv1"):
        map_legacy_parameters(wrong_stride, model)

    foreign_op = copy.deepcopy(legacy_ops)
    foreign_op[3].type = "relu6"
    with pytest.raises(ArcFaceError, match="relu6"):
        map_legacy_parameters(foreign_op, model)

    with pytest.raises(ArcFaceError, match=r"embedding\.conv\.weight"):
        map_legacy_parameters(legacy_ops, build_backbone("MobileFaceNet", embedding_size=256))


def test_weights_file_round_trip(tmp_path, imported):
    path = tmp_path / "mobileface.npz"
    save_weights(path, layer_arrays(imported), "MobileFaceNet_128", 128)
    fresh = build_backbone("MobileFaceNet_128")
    assert load_weights(fresh, path)["backbone"] == "MobileFaceNet_128"
    fresh.eval()
    x = paddle.to_tensor(np.random.default_rng(0).uniform(-1, 1, (2, 3, 112, 112)), "float32")
    with paddle.no_grad():
        np.testing.assert_array_equal(fresh(x).numpy(), imported(x).numpy())
    with pytest.raises(ArcFaceError, match=r"has shape .* the backbone expects"):
        load_weights(build_backbone("MobileFaceNet"), path)


def test_tool_reports_a_bad_model_folder_in_one_line(tmp_path):
    tiny_usable_set(tmp_path / "x.bin")  # the set is checked first: make it pass
    child = subprocess.run([sys.executable, str(REPO / "tools/import_published_mobileface.py"),
                            "--model_dir", str(tmp_path), "--bin_path", str(tmp_path / "x.bin")],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 1
    assert child.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}: no inference.pdmodel (expected a legacy Paddle inference model)")
    assert "Traceback" not in child.stderr


def tiny_usable_set(path: Path) -> None:
    """10 pairs of real 112x112 images: enough for the 10-fold protocol."""
    import cv2

    rng = np.random.default_rng(3)
    faces = [cv2.imencode(".png", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))[1]
             .tobytes() for _ in range(20)]
    save_verification_bin(path, faces, [k % 2 == 0 for k in range(10)])


@pytest.mark.parametrize("faithful", [True, False])
def test_weights_are_written_only_after_they_passed(tmp_path, monkeypatch, faithful):
    """Issue 10 item 20: the weights were written before the comparison; now a failed one
    leaves no file, and the work ahead is announced with an estimate."""
    import arcface_paddle.published_mobileface as published_mobileface

    paddle.seed(0)
    model = build_backbone("MobileFaceNet_128")
    model.eval()
    ours = published_mobileface.paddle_layer_embed_fn(model)
    monkeypatch.setattr(published_mobileface, "import_published_mobileface", lambda _: model)
    monkeypatch.setattr(published_mobileface, "published_embed_fn", lambda *_: (
        ours if faithful else lambda batch: ours(batch) + 0.01))
    tiny_usable_set(tmp_path / "set.bin")
    lines: list[str] = []
    report = published_mobileface.import_and_verify(
        "model", tmp_path / "set.bin", tmp_path / "w.npz", compare_images=20, batch_size=8,
        flip=False, say=lines.append)
    assert report.passed is faithful
    assert (tmp_path / "w.npz").exists() is faithful
    assert len(lines) == 1 and lines[0].startswith("comparing both models on 10 set pairs")
    assert "about" in lines[0] and "min" in lines[0]


def test_output_and_set_are_checked_before_the_import(tmp_path, monkeypatch):
    import arcface_paddle.published_mobileface as published_mobileface

    def never(_):
        raise AssertionError("the model was imported before the cheap checks")

    monkeypatch.setattr(published_mobileface, "import_published_mobileface", never)
    tiny_usable_set(tmp_path / "set.bin")
    (tmp_path / "folder.npz").mkdir()
    save_verification_bin(tmp_path / "two.bin", [b"\xff\xd8\xffx"] * 4, [True, False])
    for output, bin_name, why in [(tmp_path / "folder.npz", "set.bin", "is a folder"),
                                  (None, "missing.bin", "missing.bin"),
                                  (None, "two.bin", "2 pairs")]:
        with pytest.raises(ArcFaceError, match=why):
            published_mobileface.import_and_verify("model", tmp_path / bin_name, output)
    with pytest.raises(ArcFaceError, match="--pairs 5"):
        published_mobileface.import_and_verify("model", tmp_path / "set.bin", pairs=5)
