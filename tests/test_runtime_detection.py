"""BlazeFace pre/post-processing and the real detector on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from friends_truth import FACE_POINTS, match_truth
from insightface_paddle.detection import (
    BLAZEFACE_NORMALIZATION,
    PAD_MULTIPLE,
    FaceDetector,
    nms,
    normalization_from_infer_cfg,
    pyramid_sides,
)
from insightface_paddle.media import read_image


class _Recorder:
    """A stand-in predictor that records its feeds and returns fixed rows."""

    fingerprint = "0" * 64

    def __init__(self, rows):
        self.input_names = ["image", "im_shape", "scale_factor"]
        self.rows = np.asarray(rows, np.float32).reshape(-1, 6)
        self.feeds = []

    def run(self, feeds):
        self.feeds.append(feeds)
        return [self.rows, np.array([len(self.rows)], np.int32)]


def test_pyramid_never_enlarges_and_reaches_small_sides():
    assert pyramid_sides(1080, 1920) == [640.0, 320.0, 160.0, 80.0]
    assert pyramid_sides(250, 250) == [250.0, 125.0, 80.0]
    assert pyramid_sides(60, 40) == [60.0]  # small images: one pass at their own size
    assert all(s <= 322 for s in pyramid_sides(322, 288))


def test_prepare_keeps_aspect_pads_and_reports_padded_shape():
    det = FaceDetector(_Recorder([]), threshold=0.5)
    rgb = np.full((1080, 1920, 3), 200, np.uint8)
    feeds = det.prepare(rgb, 640)
    image = feeds["image"]
    assert image.shape == (1, 3, 384, 640)  # 360 rows padded to a multiple of 32
    assert image.shape[2] % PAD_MULTIPLE == 0 and image.shape[3] % PAD_MULTIPLE == 0
    np.testing.assert_allclose(feeds["im_shape"], [[384, 640]])
    np.testing.assert_allclose(feeds["scale_factor"], [[1 / 3, 1 / 3]], rtol=1e-6)
    mean, std = np.array(BLAZEFACE_NORMALIZATION.mean), np.array(BLAZEFACE_NORMALIZATION.std)
    np.testing.assert_allclose(image[0, :, 100, 100], (200 - mean) / std, rtol=1e-5)
    assert np.all(image[0, :, 360:, :] == 0)  # padding is the mean colour


def test_detect_filters_clips_and_merges_passes():
    rows = [[0, 0.9, -5, 10, 50, 60],      # kept, clipped at the left edge
            [0, 0.3, 100, 100, 150, 150],  # below threshold
            [-1, 0.99, 0, 0, 10, 10],      # padding row (class -1)
            [0, 0.8, -3, 12, 49, 61]]      # the same face again: suppressed
    det = FaceDetector(_Recorder(rows), threshold=0.5)
    boxes = det.detect(np.zeros((250, 250, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[0, 10, 50, 60, 0.9]])
    assert len(det.predictor.feeds) == 3  # 250, 125 and 80 px passes


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.7]])
    assert nms(boxes).tolist() == [1, 2]


def test_infer_cfg_normalization_is_read(shared):
    norm = normalization_from_infer_cfg(shared("models/blazeface_fpn_ssh_1000e_v1.0_infer"))
    assert norm == BLAZEFACE_NORMALIZATION


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FACE_POINTS))
def test_finds_every_friend_and_nothing_else(detector, shared, name):
    rgb = read_image(shared(f"demo/friends/query/{name}"))
    boxes = detector.detect(rgb)
    assert len(boxes) == 6
    match_truth(name, boxes)
    assert np.all(boxes[:, 4] >= 0.9)
    assert np.all((boxes[:, 0] >= 0) & (boxes[:, 2] <= rgb.shape[1]))
    assert np.all((boxes[:, 1] >= 0) & (boxes[:, 3] <= rgb.shape[0]))


@pytest.mark.slow
def test_close_up_and_empty_images(detector, shared):
    rachel = read_image(shared("demo/friends/query/Rachel.png"))  # the face fills the photo
    boxes = detector.detect(rachel)
    assert len(boxes) == 1
    x1, _, x2, _, _ = boxes[0]
    assert (x2 - x1) > 0.6 * rachel.shape[1]
    background = read_image(shared("demo/friends/query/friends2.jpg"))[700:1080, 1500:1920]
    assert len(detector.detect(background)) == 0
    assert len(detector.detect(np.full((300, 400, 3), 127, np.uint8))) == 0


@pytest.mark.slow
def test_every_raw_lfw_photo_has_a_face_at_its_landmarks(detector, shared):
    root = shared("data/lfw_raw")
    lines = (root / "landmarks.txt").read_text().splitlines()
    for line in lines[::8]:  # the benchmark covers all 1162 photos
        name, *coords = line.split()
        centre = np.asarray(coords, float).reshape(5, 2).mean(axis=0)
        boxes = detector.detect(read_image(root / "images" / name))
        hits = [b for b in boxes
                if b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3]]
        assert hits, f"{name}: no face found at the landmarks ({len(boxes)} boxes elsewhere)"
        assert max(b[4] for b in hits) >= 0.9, f"{name}: weak detection"
