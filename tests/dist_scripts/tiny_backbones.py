"""Small backbones for tests, where the registered ones are too slow on two CPU cores.

`TinyFaceNet` has batch norm and learns the synthetic identities in a few dozen steps.
`PlainNet` has no batch norm, so several ranks and one process compute exactly the same
function (batch statistics would differ per rank); it is used by the equivalence checks.
`register()` adds both to the backbone registry so the trainer can build them by name.
"""

from __future__ import annotations

import paddle
from paddle import nn

from arcface_paddle.backbones import BACKBONES


class TinyFaceNet(nn.Layer):
    """images [B, 3, 112, 112] -> [B, embedding_size]: four stride-2 conv-BN-PReLU stages."""

    def __init__(self, embedding_size: int = 64) -> None:
        super().__init__()
        layers = []
        channels = 3
        for width in (16, 32, 48, 64):
            layers += [nn.Conv2D(channels, width, 3, stride=2, padding=1, bias_attr=False),
                       nn.BatchNorm2D(width), nn.PReLU(width)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(channels, embedding_size)
        self.bn = nn.BatchNorm1D(embedding_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.bn(self.fc(paddle.flatten(self.pool(self.features(x)), start_axis=1)))


class PlainNet(nn.Layer):
    """images [B, 3, H, W] -> [B, embedding_size] without batch statistics."""

    def __init__(self, embedding_size: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.act = nn.PReLU(8)
        self.pool = nn.AdaptiveAvgPool2D(4)
        self.fc = nn.Linear(8 * 4 * 4, embedding_size)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(paddle.flatten(self.pool(self.act(self.conv(x))), start_axis=1))


def register() -> None:
    BACKBONES.setdefault("TinyFaceNet", TinyFaceNet)
    BACKBONES.setdefault("PlainNet", PlainNet)
