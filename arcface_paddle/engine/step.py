"""One train step in two halves, the same in both executors.

Forward half, `TrainForward` (a Layer, so `paddle.jit.to_static` can convert it):
`images [B, 3, H, W], centres [K, D], columns [W * B] -> loss []`, the backbone under autocast
then the Partial FC loss. Sampling happens before it (`PartialFC.select`, eager) and the
sampled centres go in as a tensor that collects their gradient: no module keeps anything of a
step. `engine/dynamic.py` runs the Layer eagerly, `engine/static.py` as one PIR program.

Update half, `TrainStep.apply`: unscale and judge the gradients of backbone AND centres (one
overflow verdict over all ranks), then the backbone optimizer steps and `SampledMomentum`
updates the sampled centres, or neither does. The backbone gradients are summed over ranks
first (the loss is a global-batch mean and each rank back-propagates its own samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import paddle

from .. import distributed
from ..amp import DynamicLossScaler, autocast
from ..heads.partial_fc import PartialFC, PartialFCLoss, SampledMomentum, Selection

#: images, centres, columns -> loss: a TrainForward, eager or converted
ForwardFn = Callable[[paddle.Tensor, paddle.Tensor, paddle.Tensor], paddle.Tensor]


class TrainForward(paddle.nn.Layer):
    """images [B, 3, H, W] fp32, centres [K, D] fp32, columns [W * B] int64 -> loss [] fp32.
    Under pure fp16 the backbone computes in fp16 (O2); the loss is always fp32."""

    def __init__(self, backbone: paddle.nn.Layer, loss: PartialFCLoss, fp16: bool = False
                 ) -> None:
        super().__init__()
        self.backbone = backbone
        self.loss = loss
        self.fp16 = fp16

    def forward(self, images: paddle.Tensor, centres: paddle.Tensor, columns: paddle.Tensor
                ) -> paddle.Tensor:
        with autocast(self.fp16):
            features = self.backbone(images)  # [B, D]
        return self.loss(features, centres, columns)


@dataclass(frozen=True)
class StepResult:
    loss: float
    #: True when inf/nan gradients made the step a no-op
    skipped: bool
    #: the loss scale this step was computed with
    loss_scale: float


@dataclass(frozen=True)
class Pending:
    """What the forward half hands the update half: the loss and this step's centres."""

    loss: paddle.Tensor
    selection: Selection
    #: the sampled centres [K, D] the step computed with; `.grad` holds their (scaled) gradient
    centres: paddle.Tensor


class TrainStep:
    """`__call__(images, labels)` is one full step; `forward_backward` and `apply` are its two
    halves, public so tests can look at (or tamper with) the gradients in between. The
    learning rate comes from the optimizer's scheduler (`lr.ScheduledLR`), advanced here."""

    def __init__(self, module: TrainForward, head: PartialFC,
                 optimizer: paddle.optimizer.Optimizer, centre_optimizer: SampledMomentum,
                 scaler: DynamicLossScaler, forward: ForwardFn | None = None) -> None:
        #: the forward Layer; `forward` is how it runs (itself, or its converted program)
        self.module = module
        self.forward = module if forward is None else forward
        self.backbone = module.backbone
        self.head = head
        self.optimizer = optimizer
        self.centre_optimizer = centre_optimizer
        self.scaler = scaler

    def trainable_parameters(self) -> list[paddle.Tensor]:
        return [p for p in self.backbone.parameters() if not p.stop_gradient]

    def forward_backward(self, images: paddle.Tensor, labels: paddle.Tensor) -> Pending:
        """images [B, 3, H, W], labels [B] -> the pending step; gradients are left in the
        backbone parameters (summed over ranks) and the centres, still scaled."""
        selection = self.head.select(distributed.all_gather_concat(
            labels.reshape([-1]).astype("int64")))
        centres = selection.centres(self.head)
        loss = self.forward(images, centres, selection.columns)
        self.scaler.scale_loss(loss).backward()
        distributed.all_reduce_gradients(self.trainable_parameters())
        return Pending(loss, selection, centres)

    def apply(self, pending: Pending) -> tuple[bool, float]:
        """Unscale, judge overflow across ranks, step both optimizers or none
        -> (skipped, loss scale used)."""
        scale = self.scaler.scale
        grads = [p.grad for p in self.trainable_parameters() if p.grad is not None]
        centre_grad = pending.centres.grad
        checked = grads + ([centre_grad] if centre_grad is not None else [])
        found_inf = self.scaler.unscale_and_check(checked)
        if not found_inf:
            self.optimizer.step()
            if centre_grad is not None and self.head.num_local > 0:
                self.centre_optimizer.step(self.head, pending.selection, pending.centres,
                                           centre_grad, self.optimizer.get_lr())
        self.optimizer.clear_grad()
        self.scaler.update(found_inf)
        scheduler = self.optimizer._learning_rate
        if isinstance(scheduler, paddle.optimizer.lr.LRScheduler):
            scheduler.step()
        return found_inf, scale

    def __call__(self, images: paddle.Tensor, labels: paddle.Tensor) -> StepResult:
        pending = self.forward_backward(images, labels)
        skipped, scale = self.apply(pending)
        return StepResult(loss=pending.loss.item(), skipped=skipped, loss_scale=scale)
