"""The dynamic-graph executor: the train step's forward Layer runs eagerly, op by op."""

from __future__ import annotations

import paddle

from ..amp import DynamicLossScaler
from ..heads.partial_fc import PartialFC, SampledMomentum
from .step import TrainForward, TrainStep


def build_dynamic_step(backbone: paddle.nn.Layer, head: PartialFC,
                       optimizer: paddle.optimizer.Optimizer, centre_optimizer: SampledMomentum,
                       scaler: DynamicLossScaler, fp16: bool = False) -> TrainStep:
    return TrainStep(TrainForward(backbone, head.loss, fp16), head, optimizer, centre_optimizer,
                     scaler)
