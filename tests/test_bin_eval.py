"""bin_eval on hand-made verification sets whose embeddings are known in closed form."""

from __future__ import annotations

import cv2
import numpy as np
import paddle
import pytest

from arcface_paddle.data.verification_bin import VerificationSet
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.evaluation.bin_eval import (
    embed_images,
    evaluate_verification_set,
    paddle_layer_embed_fn,
)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    assert ok
    return data.tobytes()


def two_tone(left: tuple[int, int, int], right: tuple[int, int, int],
             size: tuple[int, int] = (112, 112)) -> np.ndarray:
    height, width = size
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2] = left
    rgb[:, width // 2:] = right
    return rgb


def normalized(color) -> np.ndarray:
    return (np.asarray(color, dtype=np.float32) - 127.5) / 127.5


def left_half_mean(batch: np.ndarray) -> np.ndarray:
    """[B, 3, 112, 112] -> per-channel mean of the left half [B, 3]: sees flips and order."""
    assert batch.dtype == np.float32 and batch.shape[1:] == (3, 112, 112)
    return batch[..., :56].mean(axis=(2, 3))


def test_flip_adds_the_mirrored_embedding_in_rgb_order():
    left, right = (200, 10, 90), (30, 160, 250)
    images = [encode_png(two_tone(left, right))]
    plain = embed_images(left_half_mean, images, flip=False)
    flipped = embed_images(left_half_mean, images, flip=True)
    np.testing.assert_allclose(plain[0], normalized(left), atol=1e-6)
    np.testing.assert_allclose(flipped[0], normalized(left) + normalized(right), atol=1e-6)


def test_other_sizes_are_resized_and_batches_keep_order():
    colors = [(i * 20, 255 - i * 20, (i * 37) % 256) for i in range(10)]
    images = [encode_png(two_tone(c, c, size=(100 + i, 90))) for i, c in enumerate(colors)]
    seen = []

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return left_half_mean(batch)

    embeddings = embed_images(recording, images, batch_size=4, flip=True)
    assert seen == [8, 8, 4]  # each batch with its mirror, in one call
    expected = np.stack([2 * normalized(c) for c in colors])
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)


def identity_set(rng: np.random.Generator, pairs: int = 40) -> VerificationSet:
    """Each identity is a 4x4 grid of random colours; its photos add a little pixel noise."""
    def photo(identity: np.ndarray) -> bytes:
        face = cv2.resize(identity, (112, 112), interpolation=cv2.INTER_NEAREST).astype(int)
        face += rng.integers(-6, 7, size=face.shape)
        return encode_png(np.clip(face, 0, 255).astype(np.uint8))

    images, issame = [], []
    for i in range(pairs):
        a = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        same = i % 2 == 0
        b = a if same else rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        images += [photo(a), photo(b)]
        issame.append(same)
    return VerificationSet(name="handmade", images=images, issame=np.array(issame))


def grid_means(batch: np.ndarray) -> np.ndarray:
    """[B, 3, 112, 112] -> mean colour of each 28x28 cell [B, 48]."""
    return batch.reshape(len(batch), 3, 4, 28, 4, 28).mean(axis=(3, 5)).reshape(len(batch), -1)


def test_a_discriminative_embedding_verifies_and_a_constant_one_is_chance():
    vset = identity_set(np.random.default_rng(0))
    good = evaluate_verification_set(grid_means, vset, batch_size=16, flip=False)
    assert good.accuracy == 1.0
    assert len(good.fold_accuracies) == 10
    constant = evaluate_verification_set(lambda b: np.ones((len(b), 8), np.float32), vset,
                                         batch_size=16)
    assert constant.accuracy == 0.5


def test_bad_sets_raise_errors_naming_set_and_image():
    vset = identity_set(np.random.default_rng(1), pairs=10)
    short = VerificationSet(name="short", images=vset.images[:-1], issame=vset.issame)
    with pytest.raises(ArcFaceError, match="short: 19 images for 10 pairs"):
        evaluate_verification_set(grid_means, short)
    broken = VerificationSet(name="broken", images=[*vset.images[:3], b"not an image",
                                                    *vset.images[4:]], issame=vset.issame)
    with pytest.raises(ArcFaceError, match="broken image 3"):
        evaluate_verification_set(grid_means, broken)


class TinyNet(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, stride=8)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.dropout = paddle.nn.Dropout(0.5)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.flatten(self.dropout(self.bn(self.conv(x))), start_axis=1)


def test_paddle_layer_embed_fn_runs_in_eval_mode_and_restores_training():
    paddle.seed(0)
    net = TinyNet()
    net.train()
    batch = np.random.default_rng(2).uniform(-1, 1, (3, 3, 112, 112)).astype(np.float32)
    running_mean = net.bn._mean.numpy().copy()

    embed = paddle_layer_embed_fn(net)
    first, second = embed(batch), embed(batch)

    assert net.training  # a trainer validating mid-run gets its train mode back
    np.testing.assert_array_equal(net.bn._mean.numpy(), running_mean)  # eval: stats frozen
    np.testing.assert_array_equal(first, second)  # eval: no dropout
    net.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(first, net(paddle.to_tensor(batch)).numpy(), rtol=1e-6)
    assert isinstance(first, np.ndarray) and first.shape == (3, 4 * 14 * 14)
