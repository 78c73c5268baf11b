"""Pure FP16 training: O2 casting with fp32 master weights, and one dynamic loss scaler for the
backbone AND Partial FC.

Paddle's own GradScaler watches one optimizer; Partial FC's centres have their own sparse
optimizer (`heads.partial_fc.SampledMomentum`), so a step must be judged on both sets of
gradients at once: if any gradient on any rank holds inf or nan,
neither the backbone optimizer nor Partial FC steps and the scale shrinks.

CPU builds have no fp16 kernels (conv, matmul); with `fp16` requested there the run says so once
and trains in fp32, but the loss scaler still runs, so its logic is exercised on CPU too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import paddle

from . import distributed
from .errors import ArcFaceError

FP16_ON_CPU = "fp16 requested but CPU has no fp16 kernels; training in fp32"
_said_fp16_on_cpu = False


def fp16_available() -> bool:
    """True on a CUDA device with fp16 kernels."""
    return paddle.is_compiled_with_cuda() and paddle.get_device().startswith("gpu")


def prepare_pure_fp16(backbone: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer,
                      requested: bool, say: Callable[[str], None] = print
                      ) -> tuple[paddle.nn.Layer, paddle.optimizer.Optimizer, bool]:
    """Cast the backbone to fp16 (O2; norm layers stay fp32) with fp32 master weights kept by
    the optimizer -> (backbone, optimizer, fp16 active). Without fp16 kernels: unchanged."""
    global _said_fp16_on_cpu
    if not requested:
        return backbone, optimizer, False
    if not fp16_available():
        if not _said_fp16_on_cpu:
            say(FP16_ON_CPU)
            _said_fp16_on_cpu = True
        return backbone, optimizer, False
    backbone, optimizer = paddle.amp.decorate(models=backbone, optimizers=optimizer, level="O2",
                                              master_weight=True, dtype="float16")
    return backbone, optimizer, True


def autocast(enabled: bool) -> contextlib.AbstractContextManager:
    """The backbone's forward region: O2 fp16 when enabled, plain fp32 otherwise. A plain
    function returning a context (not a generator), so it converts under to_static."""
    if not enabled:
        return contextlib.nullcontext()
    return paddle.amp.auto_cast(enable=True, level="O2", dtype="float16")


class DynamicLossScaler:
    """Multiplies the loss by `scale` before backward and divides the gradients by it after.

    A step whose gradients hold inf/nan anywhere (any tensor, any rank) is reported so the
    caller skips it; the scale then shrinks by `backoff_factor`. After `growth_interval`
    clean steps in a row it grows by `growth_factor`. It stays within [min_scale, max_scale].
    Disabled, it is the identity and never reports overflow.
    """

    def __init__(self, enabled: bool = True, init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, min_scale: float = 1.0,
                 max_scale: float = 2.0 ** 24) -> None:
        if not 0.0 < min_scale <= init_scale <= max_scale:
            raise ArcFaceError(f"loss scale: need 0 < min ({min_scale}) <= init ({init_scale}) "
                               f"<= max ({max_scale})")
        if growth_factor < 1.0 or not 0.0 < backoff_factor < 1.0 or growth_interval < 1:
            raise ArcFaceError("loss scale: need growth_factor >= 1, 0 < backoff_factor < 1 and "
                               "growth_interval >= 1")
        self.enabled = enabled
        self.scale = float(init_scale) if enabled else 1.0
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        #: clean steps since the scale last changed
        self.good_steps = 0

    def scale_loss(self, loss: paddle.Tensor) -> paddle.Tensor:
        return loss * self.scale if self.enabled else loss

    def unscale_and_check(self, grads: Sequence[paddle.Tensor]) -> bool:
        """Divide the gradients by the scale in place -> True if any rank saw inf/nan.

        Paddle's fused `check_finite_and_unscale_`, one call per dtype; on overflow it leaves
        the offending tensor as garbage, which does not matter: the step is skipped."""
        if not self.enabled:
            return False
        by_dtype: dict[str, list[paddle.Tensor]] = {}
        for grad in grads:
            by_dtype.setdefault(str(grad.dtype), []).append(grad)
        scale = paddle.to_tensor([self.scale], "float32")
        bad = paddle.zeros([1], "float32")
        with paddle.no_grad():
            for group in by_dtype.values():
                # fp32 scale for fp16/bf16/fp32 (as paddle's GradScaler), fp64 for fp64
                group_scale = scale.astype(group[0].dtype) if group[0].dtype == paddle.float64 \
                    else scale
                _, found_inf = paddle._C_ops.check_finite_and_unscale_(group, group_scale)
                bad = paddle.maximum(bad, found_inf.astype("float32"))
        return bool(distributed.all_reduce_max(bad).item() > 0)

    def update(self, found_inf: bool) -> None:
        """After a step: back off on overflow, grow after `growth_interval` clean steps."""
        if not self.enabled:
            return
        if found_inf:
            self.scale = max(self.min_scale, self.scale * self.backoff_factor)
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale = min(self.max_scale, self.scale * self.growth_factor)
            self.good_steps = 0

    def state_dict(self) -> dict[str, float | int]:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
