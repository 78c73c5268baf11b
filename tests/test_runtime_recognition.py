"""Face embedding: preprocessing, equality with a bare predictor, the old index reproduced."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from insightface_paddle.legacy import load_legacy_index
from insightface_paddle.media import read_image
from insightface_paddle.recognition import FaceEmbedder, crop_padded, face_square


class _Echo:
    """A stand-in recognition predictor: the embedding is the mean of each channel."""

    fingerprint = "f" * 64

    def __init__(self):
        self.input_names = ["x"]
        self.batches = []

    def run(self, feeds):
        self.batches.append(len(feeds["x"]))
        return [feeds["x"].mean(axis=(2, 3))]


def test_face_square_and_padded_crop():
    square = face_square(np.array([10, 20, 50, 120, 0.9]))  # 40 x 100 box
    np.testing.assert_allclose(square, [-20, 12.4, 80, 112.4], atol=1e-4)
    image = np.full((100, 80, 3), 7, np.uint8)
    crop = crop_padded(image, np.array([-10, -5, 30.2, 40.7]))
    assert crop.shape == (46, 41, 3)
    assert np.all(crop[5:, 10:] == 7) and np.all(crop[:5] == 0) and np.all(crop[:, :10] == 0)
    assert crop_padded(image, np.array([79.5, 99.5, 79.6, 99.6])).shape == (1, 1, 3)
    assert np.all(crop_padded(image, np.array([200, 200, 210, 220])) == 0)


def test_preprocess_normalises_rgb_and_batches():
    echo = _Echo()
    embedder = FaceEmbedder(echo, "echo", max_batch_size=2)
    assert embedder.signature.embedding_size == 3
    rgb = np.zeros((200, 220, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 127, 0
    boxes = np.array([[60, 60, 90, 110], [100, 100, 150, 130], [20, 20, 25, 25]])
    batch = embedder.preprocess(rgb, boxes)  # face squares, all inside the image
    assert batch.shape == (3, 3, 112, 112) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(batch[:, 1], (127 - 127.5) / 127.5, atol=1e-6)
    np.testing.assert_allclose(batch[:, 2], -1.0, atol=1e-6)
    echo.batches.clear()
    raw = embedder.run(batch)
    assert echo.batches == [2, 1] and raw.shape == (3, 3)
    unit = embedder.embed(rgb, boxes[:1])
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_embedding_equals_bare_paddle_inference(embedder, detector, shared):
    import paddle.inference as paddle_infer

    rgb = read_image(shared("demo/friends/query/friends2.jpg"))
    batch = embedder.preprocess(rgb, detector.detect(rgb))
    ours = embedder.run(batch)
    model = shared("models/mobileface_v1.0_infer")
    config = paddle_infer.Config(str(model / "inference.pdmodel"),
                                 str(model / "inference.pdiparams"))
    config.disable_glog_info()
    bare = paddle_infer.create_predictor(config)
    handle = bare.get_input_handle(bare.get_input_names()[0])
    handle.reshape(batch.shape)
    handle.copy_from_cpu(batch)
    bare.run()
    expected = bare.get_output_handle(bare.get_output_names()[0]).copy_to_cpu()
    assert ours.shape == expected.shape == (6, 128)
    assert np.abs(ours - expected).max() <= 1e-5


@pytest.mark.slow
def test_reproduces_the_old_index_from_bgr_whole_photos(embedder, shared):
    """The old tool embedded gallery photos whole and in BGR; fed the same way, every one of its
    245 features is reproduced."""
    labels, old = load_legacy_index(shared("demo/friends/index.bin"))
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgr = [cv2.imread(str(gallery / line.split("\t")[0])) for line in lines]
    # feeding BGR pixels where RGB is expected is what the old tool did
    ours = embedder.run(embedder.preprocess_images(bgr))
    cosine = np.sum(ours * old, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(old, axis=1)
    assert cosine.min() >= 0.9999, f"worst entry {int(cosine.argmin())}: {cosine.min():.6f}"
