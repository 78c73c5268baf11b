"""iResNet (insightface's improved ResNet for 112x112 faces) with the "E" output block.

Residual unit: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (carries the stride) -> BN, added to the
identity or to a 1x1-conv + BN projection when the shape changes. Output block "E": BN ->
dropout -> flatten -> FC -> BN, the last BN without a learnable scale (as insightface fixes it
at 1), so the embedding's scale is set by the statistics alone.
"""

from __future__ import annotations

import paddle
from paddle import nn

#: residual units per stage; every stage halves the resolution: 112 -> 56 -> 28 -> 14 -> 7
STAGE_UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
STAGE_CHANNELS = (64, 128, 256, 512)
BN_EPSILON = 1e-5
#: spatial size of the last feature map for a 112x112 input
FINAL_MAP_SIZE = 7


def _bn(channels: int) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(channels, epsilon=BN_EPSILON)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(in_channels, out_channels, 3, stride=stride, padding=1, bias_attr=False)


class IBasicBlock(nn.Layer):
    """x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = _bn(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn2 = _bn(out_channels)
        self.prelu = nn.PReLU(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels, stride)
        self.bn3 = _bn(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=False),
                _bn(out_channels),
            )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Layer):
    """images [B, 3, 112, 112] -> embeddings [B, embedding_size] (not normalised)."""

    def __init__(self, depth: int, embedding_size: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_size = embedding_size
        self.conv1 = _conv3x3(3, STAGE_CHANNELS[0])
        self.bn1 = _bn(STAGE_CHANNELS[0])
        self.prelu = nn.PReLU(STAGE_CHANNELS[0])
        stages = []
        in_channels = STAGE_CHANNELS[0]
        for units, channels in zip(STAGE_UNITS[depth], STAGE_CHANNELS, strict=True):
            blocks = [IBasicBlock(in_channels, channels, stride=2)]
            blocks += [IBasicBlock(channels, channels, stride=1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = channels
        self.stages = nn.LayerList(stages)
        # output block "E"
        self.bn2 = _bn(in_channels)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(in_channels * FINAL_MAP_SIZE * FINAL_MAP_SIZE, embedding_size)
        self.features = nn.BatchNorm1D(embedding_size, epsilon=BN_EPSILON, weight_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for stage in self.stages:
            x = stage(x)
        x = self.dropout(self.bn2(x))
        return self.features(self.fc(paddle.flatten(x, start_axis=1)))


def FresResNet18(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet(18, embedding_size, dropout)


def FresResNet34(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet(34, embedding_size, dropout)


def FresResNet50(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet(50, embedding_size, dropout)


def FresResNet100(embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet(100, embedding_size, dropout)
