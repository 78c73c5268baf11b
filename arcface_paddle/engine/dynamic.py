"""The dynamic-graph train step: backbone -> fp32 Partial FC loss -> scaled backward ->
gradient sum over ranks -> one overflow verdict -> both optimizers step, or neither does."""

from __future__ import annotations

from dataclasses import dataclass

import paddle

from .. import distributed
from ..amp import DynamicLossScaler, autocast
from ..heads.partial_fc import PartialFC


@dataclass(frozen=True)
class StepResult:
    loss: float
    #: True when inf/nan gradients made the step a no-op
    skipped: bool
    #: the loss scale this step was computed with
    loss_scale: float


class DynamicTrainStep:
    """Owns nothing but the order of operations; `__call__` is one full step.

    `forward_backward` and `apply` are the two halves, public so tests can look at (or
    tamper with) the gradients in between.
    """

    def __init__(self, backbone: paddle.nn.Layer, head: PartialFC,
                 optimizer: paddle.optimizer.Optimizer, scaler: DynamicLossScaler,
                 fp16: bool = False) -> None:
        self.backbone = backbone
        self.head = head
        self.optimizer = optimizer
        self.scaler = scaler
        self.fp16 = fp16

    def trainable_parameters(self) -> list[paddle.Tensor]:
        return [p for p in self.backbone.parameters() if not p.stop_gradient]

    def forward_backward(self, images: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
        """images [B, 3, H, W], labels [B] -> loss [] (global-batch mean); gradients are left in
        the backbone parameters (summed over ranks) and in the head, still scaled."""
        with autocast(self.fp16):
            features = self.backbone(images)  # [B, D], fp16 under O2
        loss = self.head(features, labels)  # fp32
        self.scaler.scale_loss(loss).backward()
        distributed.all_reduce_gradients(self.trainable_parameters())
        return loss

    def apply(self, lr: float) -> tuple[bool, float]:
        """Unscale, judge overflow across ranks, step both optimizers or none
        -> (skipped, loss scale used)."""
        scale = self.scaler.scale
        grads = [p.grad for p in self.trainable_parameters() if p.grad is not None]
        found_inf = self.scaler.unscale_and_check(grads + self.head.gradients())
        if found_inf:
            self.head.clear_gradients()
        else:
            self.optimizer.set_lr(lr)
            self.optimizer.step()
            self.head.apply_update(lr)
        self.optimizer.clear_grad()
        self.scaler.update(found_inf)
        return found_inf, scale

    def __call__(self, images: paddle.Tensor, labels: paddle.Tensor, lr: float) -> StepResult:
        loss = self.forward_backward(images, labels)
        skipped, scale = self.apply(lr)
        return StepResult(loss=float(loss.item()), skipped=skipped, loss_scale=scale)
