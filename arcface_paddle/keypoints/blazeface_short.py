"""MediaPipe's short-range BlazeFace face detector (about 100k parameters) in Paddle.

images [B, 3, 128, 128] (RGB, (v - 127.5) / 127.5) -> regressors [B, 896, 16], logits [B, 896].
A 5x5 stride-2 stem, 16 depthwise-separable residual blocks (the stride-2 ones max-pool their
shortcut; a block that widens pads its shortcut with zero channels) and two heads: 2 anchors per
cell on the 16x16 map after block 11, 6 per cell on the 8x8 map after block 16. Padding is
TensorFlow's "SAME" (asymmetric at stride 2), so the weights of the `.tflite` file give its
numbers. Per anchor the 16 regressors are the box (cx, cy, w, h) and six keypoints (x, y), in
input pixels relative to the anchor centre; see insightface_paddle/landmarks.py for decoding.
"""

from __future__ import annotations

import paddle
from paddle import nn

#: (input channels, output channels, stride) of the 16 blocks
BLOCKS: tuple[tuple[int, int, int], ...] = (
    (24, 24, 1), (24, 28, 1), (28, 32, 2), (32, 36, 1), (36, 42, 1), (42, 48, 2), (48, 56, 1),
    (56, 64, 1), (64, 72, 1), (72, 80, 1), (80, 88, 1), (88, 96, 2), (96, 96, 1), (96, 96, 1),
    (96, 96, 1), (96, 96, 1),
)
#: the blocks whose outputs feed a head, and that head's anchors per cell
HEADS: tuple[tuple[int, int], ...] = ((10, 2), (15, 6))
STEM_CHANNELS = 24
REGRESSORS = 16
INPUT_SIZE = 128


def same_padding(kernel: int, stride: int) -> list[int]:
    """TensorFlow's SAME padding for an even input: [top, bottom, left, right]."""
    total = max(kernel - stride, 0)
    before = total // 2
    return [before, total - before, before, total - before]


class SeparableResidual(nn.Layer):
    """x -> relu(pointwise(depthwise(x)) + shortcut(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2D(in_channels, in_channels, 3, stride,
                                   padding=same_padding(3, stride), groups=in_channels)
        self.pointwise = nn.Conv2D(in_channels, out_channels, 1)
        self.pool = nn.MaxPool2D(2, 2) if stride == 2 else None
        self.extra_channels = out_channels - in_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.pointwise(self.depthwise(x))
        shortcut = self.pool(x) if self.pool is not None else x
        if self.extra_channels:
            zeros = paddle.zeros_like(shortcut[:, :self.extra_channels])
            shortcut = paddle.concat([shortcut, zeros], axis=1)
        return nn.functional.relu(y + shortcut)


class BlazeFaceShortRange(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2D(3, STEM_CHANNELS, 5, 2, padding=same_padding(5, 2))
        self.blocks = nn.LayerList([SeparableResidual(*spec) for spec in BLOCKS])
        self.classifiers = nn.LayerList(
            [nn.Conv2D(BLOCKS[b][1], anchors, 1) for b, anchors in HEADS])
        self.regressors = nn.LayerList(
            [nn.Conv2D(BLOCKS[b][1], anchors * REGRESSORS, 1) for b, anchors in HEADS])

    def forward(self, images: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        x = nn.functional.relu(self.stem(images))
        taps = {}
        for number, block in enumerate(self.blocks):
            x = block(x)
            taps[number] = x
        logits, boxes = [], []
        # paddle.jit.to_static rewrites zip() and refuses its strict= argument
        heads = zip(HEADS, self.classifiers, self.regressors)  # noqa: B905
        for (tap, _), classify, regress in heads:
            feature = taps[tap]
            # NHWC order, as MediaPipe numbers its anchors: row, column, anchor
            logits.append(classify(feature).transpose([0, 2, 3, 1]).reshape([0, -1]))
            boxes.append(regress(feature).transpose([0, 2, 3, 1]).reshape([0, -1, REGRESSORS]))
        return paddle.concat(boxes, axis=1), paddle.concat(logits, axis=1)
