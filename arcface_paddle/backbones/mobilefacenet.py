"""MobileFaceNet: inverted-residual bottlenecks and a global depthwise ("GDC") output.

The layer order and shapes are those of the published PaddlePaddle MobileFace model
(`mobileface_v1.0_infer`), so `MobileFaceNet_128` holds its weights one to one
(`arcface_paddle.published_mobileface` maps them). The embedding is a 1x1 conv + BN over the
1x1 map left by the 7x7 depthwise conv: the same function as insightface's flatten -> FC (no
bias) -> BN1d, stored in the published layout.
"""

from __future__ import annotations

import paddle
from paddle import nn

from ..errors import ArcFaceError

BN_EPSILON = 1e-5
#: (expansion, out_channels, repeats, first stride) of each bottleneck stage
BOTTLENECK_STAGES = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
STEM_CHANNELS = 64
SEPARABLE_CHANNELS = 512
#: spatial size of the last feature map for a 112x112 input
FINAL_MAP_SIZE = 7


class ConvBN(nn.Layer):
    """Conv (no bias) -> BN, followed by a per-channel PReLU unless `linear`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, epsilon=BN_EPSILON)
        self.prelu = None if linear else nn.PReLU(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Layer):
    """Expand (1x1) -> depthwise 3x3 (stride) -> linear project (1x1), residual when shapes allow.

    x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride].
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBN(in_channels, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, 3, stride=stride, padding=1, groups=hidden)
        self.project = ConvBN(hidden, out_channels, 1, linear=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileFaceNet(nn.Layer):
    """images [B, 3, 112, 112] -> embeddings [B, embedding_size] (not normalised)."""

    def __init__(self, embedding_size: int = 512) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        self.conv1 = ConvBN(3, STEM_CHANNELS, 3, stride=2, padding=1)
        self.dw_conv1 = ConvBN(STEM_CHANNELS, STEM_CHANNELS, 3, padding=1, groups=STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for expansion, out_channels, repeats, stride in BOTTLENECK_STAGES:
            for i in range(repeats):
                blocks.append(Bottleneck(channels, out_channels, stride if i == 0 else 1,
                                         expansion))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.conv_sep = ConvBN(channels, SEPARABLE_CHANNELS, 1)
        self.gdc = ConvBN(SEPARABLE_CHANNELS, SEPARABLE_CHANNELS, FINAL_MAP_SIZE,
                          groups=SEPARABLE_CHANNELS, linear=True)
        self.embedding = ConvBN(SEPARABLE_CHANNELS, embedding_size, 1, linear=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.blocks(self.dw_conv1(self.conv1(x)))
        x = self.embedding(self.gdc(self.conv_sep(x)))
        return paddle.flatten(x, start_axis=1)


def MobileFaceNet_128(embedding_size: int = 128) -> MobileFaceNet:
    """The published MobileFace layout: MobileFaceNet with a fixed 128-D embedding."""
    if embedding_size != 128:
        raise ArcFaceError(f"MobileFaceNet_128 has a 128-D embedding, not {embedding_size}; "
                           "use MobileFaceNet for other sizes")
    return MobileFaceNet(128)
