"""Partial FC on one process: sharding formula, sampling, loss and gradients against float64
references, the sampled-row momentum update, fp32 plumbing for fp16 features."""

from __future__ import annotations

import itertools
import math

import numpy as np
import paddle
import pytest

from arcface_paddle.errors import ArcFaceError
from arcface_paddle.heads.margin import CombinedMargin
from arcface_paddle.heads.partial_fc import (
    INIT_BLOCK,
    PartialFC,
    SampledMomentum,
    init_centres,
    sampled_rows,
    shard_range,
)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7, 8])
@pytest.mark.parametrize("num_classes", [1, 2, 5, 8, 37, 100, 93431])
def test_shards_tile_the_classes(num_classes, world_size):
    ranges = [shard_range(num_classes, world_size, r) for r in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == num_classes
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        assert stop == start  # contiguous, no gap, no overlap
    sizes = [stop - start for start, stop in ranges]
    assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1
    assert sum(sizes) == num_classes
    if num_classes < world_size:
        assert sizes.count(0) == world_size - num_classes


def test_bad_shard_arguments_are_user_errors():
    for args in [(0, 2, 0), (10, 0, 0), (10, 2, 2), (10, 2, -1)]:
        with pytest.raises(ArcFaceError):
            shard_range(*args)


def test_sampled_rows_formula():
    assert sampled_rows(1.0, 50, 3) == 50
    assert sampled_rows(0.1, 50, 0) == 5
    assert sampled_rows(0.1, 51, 0) == 6  # ceil
    assert sampled_rows(0.1, 50, 9) == 9  # never fewer than the positives
    assert sampled_rows(0.1, 50, 80) == 50  # never more than the shard
    assert sampled_rows(0.01, 3, 0) == 1


def test_initial_centres_do_not_depend_on_the_number_of_ranks():
    num_classes, dim = INIT_BLOCK * 2 + 17, 4  # shards straddle the init blocks
    whole = init_centres(0, num_classes, dim, seed=11)
    assert whole.shape == (num_classes, dim) and whole.dtype == np.float32
    assert abs(float(whole.std()) - 0.01) < 5e-4
    for world_size in (2, 3, 5):
        parts = [init_centres(*shard_range(num_classes, world_size, r), dim, seed=11)
                 for r in range(world_size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(init_centres(0, 8, dim, seed=12), whole[:8])


def reference_loss(features, centres, labels, margin):
    """float64 autograd reference: full softmax over all centres (paddle.logsumexp path)."""
    cosine = paddle.matmul(paddle.nn.functional.normalize(features, axis=1),
                           paddle.nn.functional.normalize(centres, axis=1), transpose_y=True)
    logits = margin(paddle.clip(cosine, -1.0, 1.0), labels)
    positive = paddle.take_along_axis(logits, labels.reshape([-1, 1]), axis=1).reshape([-1])
    return (paddle.logsumexp(logits, axis=1) - positive).mean()


def numpy_loss(features, centres, labels, m2=0.5, scale=64.0):
    """float64 ArcFace softmax loss, written out (samples stay below the pi fallback)."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    c = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    cosine = np.clip(f @ c.T, -1.0, 1.0)
    rows = np.arange(len(labels))
    theta = np.arccos(cosine[rows, labels])
    assert np.all(theta + m2 < np.pi)
    logits = scale * cosine
    logits[rows, labels] = scale * np.cos(theta + m2)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - logits[rows, labels]))


@pytest.mark.parametrize("margin", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4), (1.35, 0.0, 0.0)])
def test_full_shard_loss_and_gradients_match_a_float64_reference(margin):
    num_classes, dim, batch = 29, 12, 10
    rng = np.random.default_rng(0)
    features = rng.normal(size=(batch, dim))
    labels = rng.integers(0, num_classes, batch)
    head = PartialFC(num_classes, dim, 1.0, margin=margin, scale=64.0, seed=4)
    x = paddle.to_tensor(features.astype(np.float32), stop_gradient=False)
    loss, centres, _ = head(x, paddle.to_tensor(labels))
    loss.backward()

    x64 = paddle.to_tensor(features, stop_gradient=False)
    centres64 = paddle.to_tensor(init_centres(0, num_classes, dim, 4).astype(np.float64),
                                 stop_gradient=False)
    expected = reference_loss(x64, centres64, paddle.to_tensor(labels),
                              CombinedMargin(*margin, scale=64.0))
    expected.backward()
    assert loss.dtype == paddle.float32
    assert abs(loss.item() - expected.item()) <= 1e-5 * abs(expected.item())
    if margin == (1.0, 0.5, 0.0):
        assert abs(expected.item() - numpy_loss(features, centres64.numpy(), labels)) < 1e-9
    scale = np.abs(x64.grad.numpy()).max()
    np.testing.assert_allclose(x.grad.numpy(), x64.grad.numpy(), atol=2e-5 * scale)
    centre_grad = centres.grad
    np.testing.assert_allclose(centre_grad.numpy(), centres64.grad.numpy(),
                               atol=2e-5 * np.abs(centres64.grad.numpy()).max())


def test_margin_fallback_reaches_the_margin_of_the_head():
    """Samples pointing away from their centre (theta > pi - m2) see the chosen fallback."""
    num_classes, dim = 9, 6
    rng = np.random.default_rng(5)
    centres = init_centres(0, num_classes, dim, 2).astype(np.float64)
    labels = rng.integers(0, num_classes, 5)
    features = -centres[labels] + 0.001 * rng.normal(size=(5, dim))
    losses = {}
    for fallback in ("psi", "linear"):
        head = PartialFC(num_classes, dim, 1.0, scale=64.0, margin_fallback=fallback, seed=2)
        assert head.margin.fallback == fallback
        losses[fallback] = head(paddle.to_tensor(features.astype(np.float32)),
                                paddle.to_tensor(labels))[0].item()
        expected = reference_loss(paddle.to_tensor(features), paddle.to_tensor(centres),
                                  paddle.to_tensor(labels),
                                  CombinedMargin(scale=64.0, fallback=fallback)).item()
        assert abs(losses[fallback] - expected) <= 1e-5 * expected
    # the linear rule lies below psi past the switch: a lower target logit, a larger loss
    assert losses["linear"] > losses["psi"] + 1.0
    with pytest.raises(ArcFaceError, match="margin_fallback"):
        PartialFC(num_classes, dim, margin=(1.35, 0.0, 0.0), margin_fallback="linear")


def test_loss_is_exact_where_paddle_cross_entropy_clips():
    """Paddle's CPU softmax clips log-probabilities at -64; the sharded loss must not."""
    num_classes, dim = 9, 6
    rng = np.random.default_rng(3)
    features = rng.normal(size=(4, dim))
    head = PartialFC(num_classes, dim, 1.0, scale=64.0, seed=1)
    centres = init_centres(0, num_classes, dim, 1).astype(np.float64)
    # aim every sample away from its class: large losses
    labels = np.argmin(features @ centres.T, axis=1)
    loss, _, _ = head(paddle.to_tensor(features.astype(np.float32)), paddle.to_tensor(labels))
    expected = numpy_loss(features, centres, labels)
    assert expected > 64.0
    assert abs(loss.item() - expected) <= 1e-5 * expected


def test_sampling_keeps_every_positive_and_remaps_labels():
    num_classes, dim = 200, 8
    for ratio, label_pool in [(0.1, 200), (0.05, 30), (0.5, 200)]:
        head = PartialFC(num_classes, dim, ratio, seed=2)
        paddle.seed(5)
        labels = np.random.default_rng(int(ratio * 100)).integers(0, label_pool, 24)
        local = paddle.to_tensor(labels - head.class_start)
        rows, columns = head.sample(local)
        rows, columns = rows.numpy(), columns.numpy()
        positives = set(labels.tolist())
        assert positives <= set(rows.tolist())
        assert len(rows) == sampled_rows(ratio, num_classes, len(positives))
        assert len(rows) == max(math.ceil(ratio * num_classes), len(positives))
        assert np.all(np.diff(rows) > 0)  # ascending, no duplicates
        np.testing.assert_array_equal(rows[columns], labels)


def test_sampling_marks_labels_of_other_shards_absent():
    head = PartialFC(100, 4, 0.2, seed=0, rank=1, world_size=2)  # classes [50, 100)
    labels = np.array([3, 49, 50, 77, 99, 10])
    rows, columns = head.sample(paddle.to_tensor(labels - head.class_start))
    rows, columns = rows.numpy(), columns.numpy()
    np.testing.assert_array_equal(columns[[0, 1, 5]], [-1, -1, -1])
    np.testing.assert_array_equal(rows[columns[2:5]] + head.class_start, [50, 77, 99])


def test_sampled_update_touches_only_sampled_rows():
    num_classes, dim, lr, momentum, decay = 300, 8, 0.2, 0.9, 5e-4
    head = PartialFC(num_classes, dim, 0.05, seed=9)
    state_names = {k for k in vars(head) if not k.startswith("_")}
    optimizer = SampledMomentum(momentum, decay)
    rng = np.random.default_rng(1)
    for step in range(3):
        weight, velocity = head.weight.numpy().copy(), head.velocity.numpy().copy()
        labels = rng.integers(0, num_classes, 16)
        x = paddle.to_tensor(rng.normal(size=(16, dim)).astype(np.float32), stop_gradient=False)
        paddle.seed(step)
        loss, centres, selection = head(x, paddle.to_tensor(labels))
        loss.backward()
        rows = selection.index.numpy()
        grad = centres.grad.numpy()
        optimizer.step(head, selection, centres, centres.grad, lr)
        others = np.setdiff1d(np.arange(num_classes), rows)
        np.testing.assert_array_equal(head.weight.numpy()[others], weight[others])
        np.testing.assert_array_equal(head.velocity.numpy()[others], velocity[others])
        expected_v = momentum * velocity[rows] + grad + decay * weight[rows]
        # float32 arithmetic in the same order as paddle.optimizer.Momentum: bit for bit
        np.testing.assert_array_equal(head.velocity.numpy()[rows], expected_v)
        np.testing.assert_array_equal(head.weight.numpy()[rows], weight[rows] - lr * expected_v)
        # nothing of the step stays on the module
        assert {k for k in vars(head) if not k.startswith("_")} == state_names


def test_sampled_update_writes_rows_in_place_without_copying_the_shard():
    """The step must cost O(sampled rows): no [C_local, D] temporary for centres or momentum.
    Paddle's host allocator counts every CPU allocation, so a full copy shows in its peak."""
    num_classes, dim = 100_000, 16
    shard_bytes = num_classes * dim * 4
    head = PartialFC(num_classes, dim, 0.001, seed=3)
    rng = np.random.default_rng(4)
    features = paddle.to_tensor(rng.normal(size=(8, dim)).astype(np.float32))
    loss, centres, selection = head(features, paddle.to_tensor(rng.integers(0, num_classes, 8)))
    loss.backward()
    weight_ptr, velocity_ptr = head.weight.data_ptr(), head.velocity.data_ptr()
    core = paddle.base.core
    core.host_memory_stat_reset_peak_value("Allocated", 0)
    before = core.host_memory_stat_current_value("Allocated", 0)
    SampledMomentum().step(head, selection, centres, centres.grad, 0.1)
    extra = core.host_memory_stat_peak_value("Allocated", 0) - before
    assert extra < shard_bytes // 10, f"update allocated {extra} bytes; the shard is {shard_bytes}"
    assert (head.weight.data_ptr(), head.velocity.data_ptr()) == (weight_ptr, velocity_ptr)


def test_full_shard_update_equals_paddle_momentum():
    num_classes, dim, lr = 23, 6, 0.3
    head = PartialFC(num_classes, dim, 1.0, seed=6)
    sparse = SampledMomentum(0.9, 5e-4)
    dense = paddle.create_parameter([num_classes, dim], "float32",
                                    default_initializer=paddle.nn.initializer.Assign(
                                        init_centres(0, num_classes, dim, 6)))
    optimizer = paddle.optimizer.Momentum(lr, 0.9, parameters=[dense], weight_decay=5e-4)
    margin = CombinedMargin(1.0, 0.5, 0.0, 64.0)
    rng = np.random.default_rng(2)
    for _ in range(4):
        features = rng.normal(size=(8, dim)).astype(np.float32)
        labels = rng.integers(0, num_classes, 8)
        loss, centres, selection = head(paddle.to_tensor(features), paddle.to_tensor(labels))
        loss.backward()
        sparse.step(head, selection, centres, centres.grad, lr)
        reference_loss(paddle.to_tensor(features), dense, paddle.to_tensor(labels),
                       margin).backward()
        optimizer.step()
        optimizer.clear_grad()
    np.testing.assert_allclose(head.weight.numpy(), dense.numpy(), rtol=1e-5,
                               atol=1e-5 * np.abs(dense.numpy()).max())


def test_fp16_features_are_computed_in_fp32():
    head = PartialFC(10, 8, 0.5, seed=0)
    features = paddle.to_tensor(np.random.default_rng(0).normal(size=(4, 8)).astype(np.float16),
                                stop_gradient=False)
    loss, centres, _ = head(features, paddle.to_tensor(np.array([1, 2, 3, 4])))
    assert loss.dtype == paddle.float32
    assert head.weight.dtype == paddle.float32 and centres.dtype == paddle.float32
    loss.backward()
    assert features.grad.dtype == paddle.float16  # the gradient returns in the backbone's dtype
    assert centres.grad.dtype == paddle.float32
    assert np.isfinite(features.grad.numpy()).all()


def test_bad_sample_ratio_is_a_user_error():
    for ratio in (0.0, -0.1, 1.5):
        with pytest.raises(ArcFaceError, match="sample_ratio"):
            PartialFC(10, 4, ratio)
