"""BlazeFace pre/post-processing and the real detector on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from friends_truth import FACE_POINTS, match_truth
from insightface_paddle.detection import (
    BLAZEFACE_NORMALIZATION,
    LARGEST_FACE,
    MAX_STEP,
    PAD_MULTIPLE,
    FaceDetector,
    box_iou,
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


def test_pyramid_never_enlarges_and_ends_where_every_face_fits():
    assert pyramid_sides(1080, 1920) == [640.0, LARGEST_FACE]
    assert pyramid_sides(250, 250) == [250.0, LARGEST_FACE]
    assert pyramid_sides(60, 40) == [60.0]  # small images: one pass at their own size
    assert pyramid_sides(150, 100) == [150.0]
    assert all(s <= 322 for s in pyramid_sides(322, 288))
    for shape, max_side in [((1080, 1920), 640), ((3000, 4000), 1280), ((3000, 4000), 4000)]:
        sides = pyramid_sides(*shape, max_side=max_side)
        assert sides[0] == max_side and sides[-1] == LARGEST_FACE
        steps = np.array(sides[:-1]) / np.array(sides[1:])
        assert np.all(steps <= MAX_STEP + 1e-9), sides  # no face range left between passes
        assert len(sides) == 1 + int(np.ceil(np.log(max_side / LARGEST_FACE) / np.log(MAX_STEP)))


def test_prepare_keeps_aspect_pads_and_reports_padded_shape():
    det = FaceDetector(_Recorder([]), threshold=0.5)
    rgb = np.full((1080, 1920, 3), 200, np.uint8)
    feeds = det.prepare(rgb, 636)
    image = feeds["image"]
    assert image.shape == (1, 3, 360, 640)  # 358 x 636 padded to a multiple of 8
    assert image.shape[2] % PAD_MULTIPLE == 0 and image.shape[3] % PAD_MULTIPLE == 0
    np.testing.assert_allclose(feeds["im_shape"], [[360, 640]])
    np.testing.assert_allclose(feeds["scale_factor"], [[358 / 1080, 636 / 1920]], rtol=1e-6)
    mean, std = np.array(BLAZEFACE_NORMALIZATION.mean), np.array(BLAZEFACE_NORMALIZATION.std)
    np.testing.assert_allclose(image[0, :, 100, 100], (200 - mean) / std, rtol=1e-5)
    assert np.all(image[0, :, 358:, :] == 0) and np.all(image[0, :, :, 636:] == 0)  # mean colour


def test_pass_buffers_are_reused_and_keep_their_padding():
    det = FaceDetector(_Recorder([]), threshold=0.5)
    bright = np.full((1080, 1900, 3), 255, np.uint8)
    first = [f["image"] for f in det.pass_feeds(bright)]
    again = [f["image"].copy() for f in det.pass_feeds(np.zeros_like(bright))]
    assert first[0] is next(det.pass_feeds(bright))["image"]  # the same buffer, refilled
    for image in again:  # the second image's values, padding still the mean colour
        assert image.shape[2] % PAD_MULTIPLE == 0 and image.shape[3] % PAD_MULTIPLE == 0
        np.testing.assert_allclose(image[0, :, 0, 0], -np.array(BLAZEFACE_NORMALIZATION.mean)
                                   / np.array(BLAZEFACE_NORMALIZATION.std), rtol=1e-6)
    assert again[0].shape == (1, 3, 368, 640)  # 1080 x 1900 -> 364 x 640, padded
    assert np.all(again[0][0, :, 364:, :] == 0) and np.all(first[0][0, :, 364:, :] == 0)
    fresh = det.prepare(bright, 640)["image"]  # prepare hands out its own arrays
    assert fresh is not first[0]
    np.testing.assert_array_equal(fresh, first[0])


def test_detect_filters_clips_and_merges_passes():
    rows = [[0, 0.9, -5, 10, 50, 60],      # kept, clipped at the left edge
            [0, 0.3, 100, 100, 150, 150],  # below threshold
            [-1, 0.99, 0, 0, 10, 10],      # padding row (class -1)
            [0, 0.8, -3, 12, 49, 61]]      # the same face again: suppressed
    det = FaceDetector(_Recorder(rows), threshold=0.5)
    boxes = det.detect(np.zeros((250, 250, 3), np.uint8))
    np.testing.assert_allclose(boxes, [[0, 10, 50, 60, 0.9]])
    assert len(det.predictor.feeds) == 2  # 250 and 128 px passes


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.5], [1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.7]])
    assert nms(boxes).tolist() == [1, 2]
    np.testing.assert_allclose(box_iou(boxes[0], boxes), [1.0, 81 / 119, 0.0])


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
@pytest.mark.parametrize("name", ["friends1.jpg", "friends2.jpg", "Rachel.png"])
def test_the_short_pyramid_loses_no_face_of_a_dense_one(detector, shared, name):
    """Passes are skipped where no face can be missed: every face that passes at every
    sqrt(2) step (down to a long side of 64) find is still found, and each friend once."""
    rgb = read_image(shared(f"demo/friends/query/{name}"))
    boxes = detector.detect(rgb)
    dense = []
    side = float(min(max(rgb.shape[:2]), detector.max_side))
    while side >= 64:
        rows = detector.predictor.run(detector.prepare(rgb, side))[0]
        dense.append(rows[(rows[:, 0] > -1) & (rows[:, 1] >= 0.8)][:, [2, 3, 4, 5, 1]])
        side /= 2**0.5
    dense = np.concatenate(dense)
    dense = dense[nms(dense)]
    assert len(dense) == len(boxes) == (1 if name == "Rachel.png" else 6)
    for face in dense:
        assert box_iou(face, boxes).max() >= 0.5, f"{name}: lost {face}"
    if name in FACE_POINTS:
        match_truth(name, boxes)


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
