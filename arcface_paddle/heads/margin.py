"""The combined angular margin: target logit `s * (cos(m1 * theta + m2) - m3)`, `s * cos` elsewhere.

ArcFace is (1, 0.5, 0), CosFace (1, 0, 0.35..0.4), SphereFace m1 > 1; any mix is allowed.

Past pi: with `t = m1 * theta + m2`, `cos(t)` turns back up once `t > pi`, which would reward
pushing a sample *away* from its class. Two continuations, both equal to `cos(t) - m3` wherever
`t <= pi` (where training samples sit):
- `fallback="psi"` (default): SphereFace's `psi(t) = (-1)^k cos(t) - 2k`, `k = floor(t / pi)`:
  continuous and strictly decreasing in theta for every (m1, m2).
- `fallback="linear"`: insightface / arcface_torch's rule, `cos(theta) - m2 * sin(m2)` once
  `theta >= pi - m2`. Only defined for m1 = 1, and it jumps down by
  `cos(m2) + m2 * sin(m2) - 1` (0.117 for ArcFace) at the switch; offered to reproduce their runs.
Both use tensor ops only (no branching on values), so they trace under `paddle.jit.to_static`.
"""

from __future__ import annotations

import math

import paddle
from paddle import nn

from ..errors import ArcFaceError

#: continuations of the target past t = pi (module docstring)
FALLBACKS = ("psi", "linear")


class CombinedMargin(nn.Layer):
    """cosine [B, C], labels [B] int64 -> scaled logits [B, C].

    `labels[i]` is the column of sample i's class among these C columns, or -1 when it is not
    among them (a Partial FC shard holds most classes elsewhere); such rows get no margin.
    With `straight_through=True` the margin is added as a constant: the gradient w.r.t. cosine
    is that of plain `s * cosine`. `fallback` ("psi" or "linear") continues the target past
    `m1 * theta + m2 = pi` (module docstring).
    """

    def __init__(self, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, scale: float = 64.0,
                 straight_through: bool = False, fallback: str = "psi") -> None:
        super().__init__()
        if m1 < 1.0 or m2 < 0.0 or m3 < 0.0 or scale <= 0.0:
            raise ArcFaceError(f"margin (m1={m1}, m2={m2}, m3={m3}, scale={scale}): need "
                               "m1 >= 1, m2 >= 0, m3 >= 0 and scale > 0")
        if fallback not in FALLBACKS:
            raise ArcFaceError(f"margin_fallback {fallback!r}: expected one of "
                               f"{', '.join(FALLBACKS)}")
        if fallback == "linear" and m1 != 1.0:
            raise ArcFaceError(f"margin_fallback 'linear' is only defined for m1 = 1 (got "
                               f"m1={m1}); use 'psi'")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)
        self.scale = float(scale)
        self.straight_through = bool(straight_through)
        self.fallback = fallback

    def extra_repr(self) -> str:
        return (f"m1={self.m1}, m2={self.m2}, m3={self.m3}, scale={self.scale}, "
                f"straight_through={self.straight_through}, fallback={self.fallback!r}")

    def target_cosine(self, cosine: paddle.Tensor) -> paddle.Tensor:
        """cos of the positive class -> `cos(m1 * theta + m2) - m3` continued past pi by the
        fallback, elementwise, same shape."""
        if self.m1 == 1.0 and self.m2 == 0.0:  # additive cosine margin: no angle needed
            return cosine - self.m3
        # acos has an infinite slope at +-1: stay one ulp inside
        bound = 1.0 - paddle.finfo(cosine.dtype).eps
        theta = paddle.acos(paddle.clip(cosine, -bound, bound))
        t = self.m1 * theta + self.m2
        if self.fallback == "linear":  # m1 = 1: t < pi exactly where cos > cos(pi - m2)
            linear = cosine - self.m2 * math.sin(self.m2)
            return paddle.where(cosine > math.cos(math.pi - self.m2), paddle.cos(t),
                                linear) - self.m3
        k = paddle.floor(t / math.pi).detach()
        sign = 1.0 - 2.0 * (k - 2.0 * paddle.floor(k / 2.0))  # (-1)^k
        return sign * paddle.cos(t) - 2.0 * k - self.m3

    def forward(self, cosine: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        labels = labels.reshape([-1, 1])
        has_positive = labels >= 0
        column = paddle.clip(labels, min=0)
        positive = paddle.take_along_axis(cosine, column, axis=1)  # [B, 1]
        target = self.target_cosine(positive)
        if self.straight_through:
            target = positive + (target - positive).detach()
        target = paddle.where(has_positive, target, positive)
        logits = paddle.put_along_axis(cosine, column, target, axis=1, reduce="assign")
        return logits * self.scale


def ArcFace(scale: float = 64.0, straight_through: bool = False) -> CombinedMargin:
    return CombinedMargin(1.0, 0.5, 0.0, scale, straight_through)


def CosFace(scale: float = 64.0, straight_through: bool = False) -> CombinedMargin:
    return CombinedMargin(1.0, 0.0, 0.4, scale, straight_through)


def SphereFace(scale: float = 64.0, straight_through: bool = False) -> CombinedMargin:
    return CombinedMargin(1.35, 0.0, 0.0, scale, straight_through)


MARGINS = {"arcface": ArcFace, "cosface": CosFace, "sphereface": SphereFace}


def margin_from_name(name: str, scale: float = 64.0, straight_through: bool = False
                     ) -> CombinedMargin:
    """"arcface" / "cosface" / "sphereface" (any case) -> the preset margin."""
    preset = MARGINS.get(name.lower())
    if preset is None:
        raise ArcFaceError(f"unknown margin {name!r}; valid names: {', '.join(MARGINS)}")
    return preset(scale, straight_through)
