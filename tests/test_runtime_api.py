"""The Python API apps call: paths or arrays in either channel order, faces out, no files."""

from __future__ import annotations

import os
import tempfile

import cv2
import numpy as np
import pytest

from friends_truth import match_truth
from insightface_paddle import Face, FaceIndex, InsightFace, InsightFaceError


@pytest.fixture(scope="module")
def friends_app(app, friends_index):
    app.set_index(friends_index)
    return app


@pytest.mark.slow
def test_build_index_adds_to_a_base_index(app, shared, tmp_path):
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()
    (tmp_path / "two.txt").write_text("\n".join(line for line in lines
                                                if line.split("\t")[1] in ("Ross", "Joey")))
    (tmp_path / "one.txt").write_text("\n".join(line for line in lines
                                                if line.split("\t")[1] == "Rachel"))
    base = app.build_index(gallery, tmp_path / "two.txt", progress=False)
    grown = app.build_index(gallery, tmp_path / "one.txt", base=base, progress=False)
    assert grown.identities == ["Joey", "Rachel", "Ross"]
    assert grown.info["faces"] == "whole photo" and grown.info["channel_order"] == "RGB"


@pytest.mark.slow
def test_path_and_arrays_in_both_channel_orders_agree(friends_app, shared, tmp_path):
    path = shared("demo/friends/query/friends1.jpg")
    bgr = cv2.imread(str(path))
    before = set(os.listdir(tempfile.gettempdir()))
    by_path = friends_app.predict(path)
    by_bgr = friends_app.predict(bgr)
    by_rgb = friends_app.predict(np.ascontiguousarray(bgr[:, :, ::-1]), channel_order="rgb")
    assert set(os.listdir(tempfile.gettempdir())) == before  # nothing written
    assert all(isinstance(f, Face) for f in by_path) and len(by_path) == 6
    for a, b, c in zip(by_path, by_bgr, by_rgb, strict=True):
        assert a.label == b.label == c.label
        np.testing.assert_allclose(a.box, b.box)
        np.testing.assert_allclose(a.embedding, c.embedding, atol=1e-6)
        assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-5)
        assert a.label in {x.label for x in a.candidates} and len(a.candidates) == 5
    truth = match_truth("friends1.jpg", [f.box for f in by_path])
    assert sum(by_path[i].label == who for who, i in truth.items()) >= 5
    # channel order matters: reading BGR as RGB changes the embeddings
    swapped = friends_app.predict(bgr, channel_order="rgb")
    pairs = zip(by_path, swapped, strict=True)
    assert min(float(a.embedding @ s.embedding) for a, s in pairs) < 0.99


@pytest.mark.slow
def test_threshold_unknown_and_embed(friends_app, shared):
    path = shared("demo/friends/query/friends2.jpg")
    strict = InsightFace(index=friends_app.index, rec_thresh=0.99)
    assert {f.label for f in strict.predict(path)} == {"unknown"}
    faces = friends_app.predict(path)
    boxes = np.array([f.box for f in faces])
    np.testing.assert_allclose(friends_app.embed(path, boxes),
                               np.stack([f.embedding for f in faces]), atol=1e-6)
    whole = friends_app.embed(cv2.imread(str(path)))
    assert whole.shape == (1, 128)


def test_bad_arguments_raise_the_one_error_type(friends_app):
    with pytest.raises(InsightFaceError, match="channel_order"):
        friends_app.predict(np.zeros((10, 10, 3), np.uint8), channel_order="bgra")
    with pytest.raises(InsightFaceError, match="uint8"):
        friends_app.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(InsightFaceError, match="nothing to do"):
        InsightFace(det_model=None, rec_model=None)
    with pytest.raises(InsightFaceError, match="no such file"):
        friends_app.predict("/no/such/photo.jpg")


@pytest.mark.slow
def test_detection_only_and_recognition_only(model_home, shared):
    path = shared("demo/friends/query/Rachel.png")
    detect_only = InsightFace(rec_model=None)
    faces = detect_only.predict(path)
    assert len(faces) == 1 and faces[0].label is None and faces[0].embedding is None
    index = FaceIndex.from_legacy(shared("demo/friends/index.bin"),
                                  InsightFace(det_model=None).embedder.signature)
    recognise_only = InsightFace(det_model=None, index=index)
    whole = recognise_only.predict(cv2.imread(str(path)))
    assert len(whole) == 1 and whole[0].score == 1.0 and whole[0].label is not None
    assert whole[0].box == (0.0, 0.0, float(cv2.imread(str(path)).shape[1]),
                            float(cv2.imread(str(path)).shape[0]))


@pytest.mark.slow
def test_kinds_of_embeddings_do_not_mix_and_bgr_imports_warn(app, shared, tmp_path, caplog):
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()
    (tmp_path / "ross.txt").write_text("\n".join(line for line in lines
                                                 if line.split("\t")[1] == "Ross"))
    whole = app.build_index(gallery, tmp_path / "ross.txt", progress=False)
    with pytest.raises(InsightFaceError, match="'whole photo' embeddings; adding 'largest det"):
        app.build_index(gallery, tmp_path / "ross.txt", detect_faces=True, base=whole,
                        progress=False)
    legacy = FaceIndex.from_legacy(shared("demo/friends/index.bin"), app.embedder.signature)
    with pytest.raises(InsightFaceError, match="channel_order 'BGR'"):
        app.build_index(gallery, tmp_path / "ross.txt", base=legacy, progress=False)
    previous = app.index
    try:
        with caplog.at_level("WARNING"):
            app.set_index(legacy)
        assert "embedded from BGR photos" in caplog.text
    finally:
        app.index = previous  # the app is shared by the module's tests
