"""CombinedMargin against an independent float64 numpy reference: values, gradients, to_static."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from arcface_paddle.errors import ArcFaceError
from arcface_paddle.heads.margin import (
    ArcFace,
    CombinedMargin,
    CosFace,
    SphereFace,
    margin_from_name,
)

PRESETS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4), "sphereface": (1.35, 0.0, 0.0)}
MARGINS = [*PRESETS.values(), (1.2, 0.3, 0.1)]
SCALE = 30.0


LINEAR_MARGINS = [m for m in MARGINS if m[0] == 1.0]  # the linear fallback needs m1 = 1
CASES = [*((m, "psi") for m in MARGINS), *((m, "linear") for m in LINEAR_MARGINS)]


def reference_target(cosine: float, m1: float, m2: float, m3: float,
                     fallback: str = "psi") -> float:
    """The documented target, written case by case: cos(t) up to pi; beyond, SphereFace's psi
    or insightface's linear rule cos(theta) - m2 * sin(m2) (from theta = pi - m2 on)."""
    theta = np.arccos(cosine)
    t = m1 * theta + m2
    assert t < 2 * np.pi, "the reference covers one fold past pi, enough for these margins"
    if fallback == "linear":
        body = np.cos(t) if theta < np.pi - m2 else cosine - m2 * np.sin(m2)
    else:
        body = np.cos(t) if t <= np.pi else -np.cos(t) - 2.0
    return body - m3


def reference_logits(cosine: np.ndarray, labels: np.ndarray, margin: tuple[float, float, float],
                     scale: float, fallback: str = "psi") -> np.ndarray:
    logits = np.array(cosine, dtype=np.float64)
    for row, column in enumerate(labels):
        if column >= 0:
            logits[row, column] = reference_target(cosine[row, column], *margin, fallback)
    return scale * logits


def sample_batch(rng: np.random.Generator, rows: int = 12, columns: int = 7):
    """Cosines over (-1, 1) plus positives near theta = 0 and theta = pi; some rows without one."""
    cosine = rng.uniform(-0.99, 0.99, size=(rows, columns))
    labels = rng.integers(0, columns, size=rows)
    labels[[1, 5, 9]] = -1
    cosine[0, labels[0]] = -0.9995  # theta within 0.032 of pi: the fallback for every margin
    cosine[2, labels[2]] = -0.97
    cosine[3, labels[3]] = 0.9995
    return cosine, labels


def run_margin(layer: CombinedMargin, cosine: np.ndarray, labels: np.ndarray,
               weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logits and d(sum(weights * logits))/d cosine."""
    x = paddle.to_tensor(cosine, stop_gradient=False)
    logits = layer(x, paddle.to_tensor(labels, dtype="int64"))
    (logits * paddle.to_tensor(weights)).sum().backward()
    return logits.numpy(), x.grad.numpy()


@pytest.mark.parametrize(("margin", "fallback"), CASES)
def test_values_and_gradients_match_float64_reference(margin, fallback):
    rng = np.random.default_rng(7)
    cosine, labels = sample_batch(rng)
    weights = rng.normal(size=cosine.shape)
    layer = CombinedMargin(*margin, scale=SCALE, fallback=fallback)
    logits, grad = run_margin(layer, cosine, labels, weights)

    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, reference_logits(cosine, labels, margin, SCALE, fallback),
                               rtol=1e-12, atol=1e-10)
    if fallback == "linear" and margin[1] > 0:
        # positives on both sides of the switch at theta = pi - m2, none close to the jump
        positives = cosine[labels >= 0, labels[labels >= 0]]
        switch = np.cos(np.pi - margin[1])
        assert np.any(positives < switch) and np.any(positives > switch)
        assert np.min(np.abs(positives - switch)) > 1e-3

    # central finite differences of the numpy reference, one cosine at a time
    step = 1e-6
    numeric = np.zeros_like(cosine)
    for index in np.ndindex(*cosine.shape):
        plus, minus = cosine.copy(), cosine.copy()
        plus[index] += step
        minus[index] -= step
        delta = (reference_logits(plus, labels, margin, SCALE, fallback)
                 - reference_logits(minus, labels, margin, SCALE, fallback))
        numeric[index] = np.sum(weights * delta) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("margin", MARGINS)
def test_rows_without_positive_and_other_columns_are_plain_scaled_cosine(margin):
    rng = np.random.default_rng(3)
    cosine, labels = sample_batch(rng)
    logits, _ = run_margin(CombinedMargin(*margin, scale=SCALE), cosine, labels,
                           np.ones_like(cosine))
    untouched = np.ones_like(cosine, dtype=bool)
    rows = np.flatnonzero(labels >= 0)
    untouched[rows, labels[rows]] = False
    np.testing.assert_array_equal(logits[untouched], SCALE * cosine[untouched])
    # margins only ever lower the positive logit
    assert np.all(logits[rows, labels[rows]] < SCALE * cosine[rows, labels[rows]])


@pytest.mark.parametrize("margin", MARGINS)
def test_straight_through_gradient_equals_no_margin_gradient(margin):
    rng = np.random.default_rng(11)
    cosine, labels = sample_batch(rng)
    weights = rng.normal(size=cosine.shape)
    plain_logits, plain_grad = run_margin(CombinedMargin(*margin, scale=SCALE), cosine, labels,
                                          weights)
    logits, grad = run_margin(CombinedMargin(*margin, scale=SCALE, straight_through=True),
                              cosine, labels, weights)
    np.testing.assert_allclose(logits, plain_logits, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(grad, SCALE * weights, rtol=1e-12)
    angular = margin[0] != 1.0 or margin[1] != 0.0  # CosFace's margin is a constant anyway
    assert np.allclose(plain_grad, SCALE * weights) != angular


@pytest.mark.parametrize("margin", MARGINS)
def test_target_is_continuous_and_decreasing_in_theta(margin):
    theta = np.linspace(1e-3, np.pi - 1e-3, 20001)
    layer = CombinedMargin(*margin, scale=1.0)
    target = layer.target_cosine(paddle.to_tensor(np.cos(theta))).numpy()
    steps = np.diff(target)
    assert np.all(steps < 0)
    assert np.max(-steps) < 1e-3  # no jump anywhere, including where m1*theta + m2 passes pi


@pytest.mark.parametrize("margin", [m for m in LINEAR_MARGINS if m[1] > 0])
def test_linear_fallback_decreases_with_one_documented_jump_at_pi_minus_m2(margin):
    m2 = margin[1]
    theta = np.linspace(1e-3, np.pi - 1e-3, 20001)
    layer = CombinedMargin(*margin, scale=1.0, fallback="linear")
    target = layer.target_cosine(paddle.to_tensor(np.cos(theta))).numpy()
    steps = np.diff(target)
    assert np.all(steps < 0)
    jumps = np.flatnonzero(-steps > 1e-3)
    assert len(jumps) == 1
    assert theta[jumps[0]] < np.pi - m2 <= theta[jumps[0] + 1]
    np.testing.assert_allclose(-steps[jumps[0]], np.cos(m2) + m2 * np.sin(m2) - 1.0, atol=1e-3)
    # the rules agree up to the switch; after it the linear rule lies below psi
    psi = CombinedMargin(*margin, scale=1.0).target_cosine(
        paddle.to_tensor(np.cos(theta))).numpy()
    before = theta < np.pi - m2 - 1e-6
    np.testing.assert_allclose(target[before], psi[before], rtol=1e-12, atol=1e-12)
    assert np.all(target[~before] < psi[~before])


def test_linear_fallback_needs_m1_of_one_and_fallbacks_are_named():
    with pytest.raises(ArcFaceError, match="m1 = 1"):
        CombinedMargin(1.35, 0.0, 0.0, fallback="linear")
    with pytest.raises(ArcFaceError, match="psi, linear"):
        CombinedMargin(fallback="easy")
    assert CombinedMargin().fallback == "psi"


def test_float32_matches_float64():
    rng = np.random.default_rng(5)
    cosine, labels = sample_batch(rng)
    layer = ArcFace(scale=SCALE)
    label_tensor = paddle.to_tensor(labels, dtype="int64")
    single = layer(paddle.to_tensor(cosine.astype(np.float32)), label_tensor)
    double = layer(paddle.to_tensor(cosine), label_tensor)
    assert single.dtype == paddle.float32
    np.testing.assert_allclose(single.numpy(), double.numpy(), atol=2e-3)


def test_to_static_matches_dynamic_values_and_gradients():
    rng = np.random.default_rng(13)
    cosine, labels = sample_batch(rng)
    cosine = cosine.astype(np.float32)
    weights = rng.normal(size=cosine.shape).astype(np.float32)
    for layer in (SphereFace(scale=SCALE), CombinedMargin(scale=SCALE, fallback="linear")):
        dynamic = run_margin(layer, cosine, labels, weights)
        static = run_margin(paddle.jit.to_static(layer, full_graph=True), cosine, labels,
                            weights)
        for a, b in zip(dynamic, static, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


def test_presets_and_names():
    for name, margin in PRESETS.items():
        layer = margin_from_name(name.upper(), scale=32.0)
        assert (layer.m1, layer.m2, layer.m3, layer.scale) == (*margin, 32.0)
    assert (CosFace().m3, ArcFace().m2) == (0.4, 0.5)
    with pytest.raises(ArcFaceError, match="arcface"):
        margin_from_name("softmax")
    with pytest.raises(ArcFaceError, match="m1"):
        CombinedMargin(m1=0.5)
    assert not CombinedMargin().parameters()
