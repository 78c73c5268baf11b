"""The landmark stage and the crop policy: keypoints decoded on real faces, the similarity warp
onto the ArcFace template, the fallback to the face square, the index's policy check, the CLI."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest

from benchmarks.lfw_raw import read_landmarks
from insightface_paddle import InsightFace, InsightFaceError, workers
from insightface_paddle.alignment import (
    ARCFACE_TEMPLATE,
    similarity_transform,
    warp_to_template,
)
from insightface_paddle.cli import main
from insightface_paddle.face_crops import ALIGNED, FACE_SQUARE, FALLBACK, FaceCropper
from insightface_paddle.landmarks import KeypointModel, Square, anchor_centres
from insightface_paddle.media import read_image
from insightface_paddle.recognition import crop_face


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_similarity_fit_recovers_the_transform_and_least_squares():
    truth = _similarity(0.3, 2.5, (40.0, -7.0))
    points = ARCFACE_TEMPLATE @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(similarity_transform(ARCFACE_TEMPLATE, points), truth, atol=1e-4)
    # noisy points: no other similarity has a smaller squared error
    noisy = points + np.random.default_rng(0).normal(0, 3, points.shape)
    fit = similarity_transform(ARCFACE_TEMPLATE, noisy).astype(np.float64)

    def error(m: np.ndarray) -> float:
        return float(((ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2] - noisy) ** 2).sum())

    for nudge in np.random.default_rng(1).normal(0, 0.02, (50, 4)):
        a, b = fit[0, 0] + nudge[0], fit[1, 0] + nudge[1]
        other = np.array([[a, -b, fit[0, 2] + nudge[2]], [b, a, fit[1, 2] + nudge[3]]])
        assert error(other) >= error(fit)
    mirrored = ARCFACE_TEMPLATE * [-1, 1]  # a reflection is not a similarity: never fitted
    assert np.linalg.det(similarity_transform(ARCFACE_TEMPLATE, mirrored)[:, :2]) > 0
    with pytest.raises(InsightFaceError, match="coincide"):
        similarity_transform(np.zeros((4, 2)), ARCFACE_TEMPLATE[:4])


def test_warp_puts_the_points_on_the_template():
    image = np.zeros((400, 500, 3), np.uint8)
    transform = _similarity(-0.4, 3.0, (150.0, 60.0))
    points = ARCFACE_TEMPLATE @ transform[:, :2].T + transform[:, 2]
    for x, y in points:
        cv2.circle(image, (round(x), round(y)), 6, (255, 255, 255), cv2.FILLED)
    aligned = warp_to_template(image, points, ARCFACE_TEMPLATE)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    count, _, _, centres = cv2.connectedComponentsWithStats((aligned[..., 0] > 127).astype(
        np.uint8))
    found = sorted(map(tuple, centres[1:]))
    assert count - 1 == 5
    for expected, got in zip(sorted(map(tuple, ARCFACE_TEMPLATE)), found, strict=True):
        assert np.hypot(*(np.subtract(expected, got))) < 1.0


def test_anchor_layout():
    meta = {"anchors": {"grids": [[16, 2], [8, 6]], "offset": 0.5}}
    anchors = anchor_centres(meta, 128)
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[:3], [[4, 4], [4, 4], [12, 4]])
    np.testing.assert_allclose(anchors[512:519], [[8, 8]] * 6 + [[24, 8]])


@pytest.fixture(scope="module")
def keypoints(model_home) -> KeypointModel:
    from insightface_paddle import zoo

    return KeypointModel.from_folder(zoo.resolve("BlazeFaceKeypoints"))


def test_decoding_picks_the_face_inside_the_box(keypoints):
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    logits[[0, 600]] = [8.0, 3.0]  # a stronger face in the corner, a weaker one in the middle
    regressors[600, 4:] = np.arange(12)
    centre = tuple(keypoints.anchors[600])
    inner = (centre[0] - 20, centre[1] - 20, centre[0] + 20, centre[1] + 20)
    points = keypoints.decode(regressors, logits, inner)
    np.testing.assert_allclose(points, np.arange(12).reshape(6, 2) + keypoints.anchors[600])
    logits[600] = -1.0  # below MIN_SCORE: nothing
    assert keypoints.decode(regressors, logits, inner) is None


def test_crops_made_on_worker_threads_equal_one_by_one_in_order(keypoints, shared):
    rgb = read_image(shared("demo/friends/query/friends2.jpg"))
    squares = [Square(x, y, side) for x, y, side in
               ((100, 50, 500), (900, 300, 333), (-40, -40, 128), (1700, 900, 64), (1200, 0, 260))]
    together = keypoints.prepare(rgb, squares)
    alone = np.concatenate([keypoints.prepare(rgb, [sq]) for sq in squares])
    assert np.array_equal(together, alone) and len(set(map(bytes, together))) == len(squares)


class _CallLog:
    """A predictor proxy that notes which thread made each call and how many crops it held."""

    def __init__(self, inner, concurrent: bool) -> None:
        self.inner, self.concurrent_runs, self.calls = inner, concurrent, []
        self.input_names, self.fingerprint = inner.input_names, inner.fingerprint

    def run(self, feeds):
        batch = feeds[self.input_names[0]]
        self.calls.append((threading.current_thread() is threading.main_thread(), len(batch)))
        return self.inner.run(feeds)


@pytest.mark.parametrize("concurrent", [True, False])
def test_faces_split_among_worker_threads_get_the_keypoints_of_one_call(
        keypoints, detector, shared, monkeypatch, concurrent):
    """With a predictor that takes concurrent calls (ONNX Runtime, as in these tests) a photo's
    faces are shared among the worker threads, each running the model on its share; with one
    that does not (paddle.inference), all go in one call. The keypoints are the same."""
    assert keypoints.predictor.concurrent_runs  # the ONNX copy the converter writes
    rgb = read_image(shared("demo/friends/query/friends2.jpg"))
    boxes = detector.detect(rgb)
    one_by_one = [keypoints.locate(rgb, box[None])[0] for box in boxes]
    log = _CallLog(keypoints.predictor, concurrent)
    monkeypatch.setattr(keypoints, "predictor", log)
    monkeypatch.setattr(workers, "cpu_workers", lambda: 2)  # two shares on any machine
    together = keypoints.locate(rgb, boxes)
    if concurrent:
        assert len(log.calls) == 2 and not any(main for main, _ in log.calls)
        assert sorted(n for _, n in log.calls) == [3, 3]
    else:
        assert log.calls == [(True, 6)]
    assert len(together) == len(boxes) == 6
    for mine, alone in zip(together, one_by_one, strict=True):
        np.testing.assert_allclose(mine, alone, atol=1e-3)


@pytest.mark.slow
def test_keypoints_on_known_faces_match_their_landmarks(keypoints, detector, shared):
    root = shared("data/lfw_raw")
    landmarks = read_landmarks(root)
    names = sorted(landmarks)[::60][:20]
    errors = []
    for name in names:
        rgb = read_image(root / "images" / name)
        boxes = detector.detect(rgb)
        (points,) = keypoints.locate(rgb, boxes[:1])
        truth = landmarks[name]
        assert points is not None and points.shape == (6, 2)
        assert points[0, 0] < points[1, 0]  # the subject's right eye is on the image's left
        mouth = truth[3:5].mean(axis=0)
        true4 = np.stack([truth[0], truth[1], truth[2], mouth])
        errors.append(np.linalg.norm(points[:4] - true4, axis=1).mean() /
                      np.linalg.norm(truth[1] - truth[0]))
    assert np.median(errors) < 0.15, errors


def test_no_keypoints_falls_back_to_the_face_square(keypoints):
    blank = np.full((300, 300, 3), 128, np.uint8)
    box = np.array([[100, 100, 200, 200, 0.9]], np.float32)
    (crop,) = FaceCropper("keypoints", keypoints).crop(blank, box)
    assert crop.crop == FALLBACK and crop.landmarks is None
    np.testing.assert_array_equal(crop.image, crop_face(blank, box[0]))
    (square,) = FaceCropper("none").crop(blank, box)
    assert square.crop == FACE_SQUARE
    with pytest.raises(InsightFaceError, match="--align must be one of"):
        FaceCropper("affine")


@pytest.mark.slow
def test_faces_record_landmarks_and_fallbacks(app, shared, monkeypatch):
    assert app.cropper.align == "keypoints"  # the default where the model exists
    rgb = read_image(shared("demo/friends/query/friends2.jpg"))
    faces = app.predict_rgb(rgb)
    assert len(faces) == 6 and {f.crop for f in faces} == {ALIGNED}
    for face in faces:
        x1, y1, x2, y2 = face.box
        eyes = face.landmarks[:2]
        assert ((eyes[:, 0] > x1) & (eyes[:, 0] < x2) & (eyes[:, 1] > y1) & (
            eyes[:, 1] < y2)).all()
        assert face.to_dict()["landmarks"][0] == [round(float(v), 1) for v in face.landmarks[0]]
    # a box where the keypoint model sees no face: the face square, and the face says so
    monkeypatch.setattr(app.detector, "detect",
                        lambda image: np.array([[0, 900, 120, 1020, 0.9]], np.float32))
    (face,) = app.predict_rgb(np.full_like(rgb, 90))
    assert face.crop == FALLBACK and face.landmarks is None and face.embedding is not None
    assert face.to_dict()["crop"] == FALLBACK


@pytest.mark.slow
def test_index_refuses_to_mix_crop_policies(app, model_home, shared, tmp_path):
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()
    ross = [line for line in lines if line.split("\t")[1] == "Ross"][:5]
    (tmp_path / "ross.txt").write_text("\n".join(ross))
    aligned = app.build_index(gallery, tmp_path / "ross.txt", detect_faces=True, progress=False)
    assert aligned.info["align"] == "keypoints"
    squares = InsightFace(align="none")
    with pytest.raises(InsightFaceError, match="--align keypoints"):
        squares.set_index(aligned)
    with pytest.raises(InsightFaceError, match="align 'keypoints' embeddings; adding 'none'"):
        squares.build_index(gallery, tmp_path / "ross.txt", detect_faces=True, base=aligned,
                            progress=False)
    old = squares.build_index(gallery, tmp_path / "ross.txt", detect_faces=True,
                              progress=False)
    squares.set_index(old)
    del old.info["align"]  # an index from before alignment: face squares
    with pytest.raises(InsightFaceError, match="align 'none' embeddings; adding 'keypoints'"):
        app.build_index(gallery, tmp_path / "ross.txt", detect_faces=True, base=old,
                        progress=False)
    with pytest.raises(InsightFaceError, match="--align none"):
        app.set_index(old)
    with pytest.raises(InsightFaceError, match="--align keypoints needs a detection model"):
        InsightFace(det_model=None, align="keypoints")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_align_and_draw_landmarks(capsys, model_home, shared, tmp_path):
    photo = str(shared("demo/friends/query/Rachel.png"))
    code, out, _ = _run(capsys, "--det", "--input", photo, "--json")
    (face,) = json.loads(out)["results"][0]["faces"]
    assert code == 0 and face["crop"] == ALIGNED and len(face["landmarks"]) == 6
    code, out, _ = _run(capsys, "--det", "--input", photo, "--json", "--align", "none")
    (face,) = json.loads(out)["results"][0]["faces"]
    assert code == 0 and face["landmarks"] is None and face["crop"] is None
    drawings = {}
    for flag in ([], ["--draw_landmarks"]):
        folder = tmp_path / ("dots" if flag else "plain")
        assert _run(capsys, "--det", "--input", photo, "--output", str(folder), *flag)[0] == 0
        drawings[bool(flag)] = cv2.imread(str(folder / "Rachel.png")).astype(int)
    changed = np.abs(drawings[True] - drawings[False]).max(axis=2) > 0
    assert 50 < changed.sum() < 5000  # a few dots, nothing else
    code, _, err = _run(capsys, "--det", "--input", photo, "--align", "keypoints",
                        "--landmark_model", str(tmp_path / "nowhere"))
    assert code == 1 and err.count("\n") == 1 and "nowhere" in err
    with pytest.raises(SystemExit):
        main(["--det", "--input", photo, "--align", "affine"])


def test_default_policy_without_the_model_says_how_to_make_it(tmp_path, monkeypatch, caplog):
    from insightface_paddle import zoo
    from insightface_paddle.face_crops import make_cropper

    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))  # a cache without BlazeFaceKeypoints
    with caplog.at_level("WARNING"):
        assert make_cropper(None).align == "none"
    (record,) = caplog.records
    assert "--align none" in record.message and "convert_mediapipe_face.py" in record.message
    with pytest.raises(InsightFaceError, match="make it with"):
        make_cropper("keypoints")
