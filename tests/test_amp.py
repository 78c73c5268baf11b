"""Pure fp16 on CPU: the loss scaler's schedule and its fused overflow check, whole-step skipping
on injected inf/nan gradients (backbone AND Partial FC untouched) in both executors, and the
fp16-on-CPU fallback."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from arcface_paddle import amp
from arcface_paddle.amp import DynamicLossScaler, prepare_pure_fp16
from arcface_paddle.checkpoint import optimizer_arrays
from arcface_paddle.engine.dynamic import build_dynamic_step
from arcface_paddle.engine.static import build_static_step
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.heads.partial_fc import PartialFC, SampledMomentum
from dist_scripts.tiny_backbones import PlainNet


def test_scale_backs_off_grows_and_stays_in_bounds():
    scaler = DynamicLossScaler(True, init_scale=8.0, growth_factor=2.0, backoff_factor=0.5,
                               growth_interval=3, min_scale=2.0, max_scale=32.0)
    trace = []
    for found_inf in [True, True, True, False, False, False, False, False, False,
                      False, False, False, False, False, False, True]:
        scaler.update(found_inf)
        trace.append(scaler.scale)
    # back-off to the floor, then x2 every 3 clean steps up to the ceiling, then back off
    assert trace == [4.0, 2.0, 2.0, 2.0, 2.0, 4.0, 4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0, 16.0,
                     32.0, 16.0]
    assert scaler.state_dict() == {"scale": 16.0, "good_steps": 0}


def test_an_overflow_resets_the_growth_count():
    scaler = DynamicLossScaler(True, init_scale=4.0, growth_interval=2)
    for found_inf in [False, True, False]:
        scaler.update(found_inf)
    assert scaler.scale == 2.0 and scaler.good_steps == 1


def test_unscale_divides_and_detects_inf_and_nan():
    scaler = DynamicLossScaler(True, init_scale=4.0)
    grads = [paddle.to_tensor([4.0, 8.0]), paddle.to_tensor([[2.0]])]
    assert scaler.unscale_and_check(grads) is False
    np.testing.assert_array_equal(grads[0].numpy(), [1.0, 2.0])
    for bad in (np.inf, -np.inf, np.nan):
        assert scaler.unscale_and_check([paddle.to_tensor([1.0]), paddle.to_tensor([bad])])


def test_disabled_scaler_is_the_identity():
    scaler = DynamicLossScaler(False, init_scale=1024.0)
    loss = paddle.to_tensor(3.0)
    assert scaler.scale_loss(loss) is loss and scaler.scale == 1.0
    assert scaler.unscale_and_check([paddle.to_tensor([np.inf])]) is False
    scaler.update(True)
    assert scaler.scale == 1.0


@pytest.mark.parametrize("kwargs", [{"init_scale": 0.5, "min_scale": 1.0},
                                    {"init_scale": 4.0, "max_scale": 2.0},
                                    {"backoff_factor": 1.0}, {"growth_factor": 0.5},
                                    {"growth_interval": 0}])
def test_bad_scaler_settings_are_user_errors(kwargs):
    with pytest.raises(ArcFaceError, match="loss scale"):
        DynamicLossScaler(True, **kwargs)


def test_fused_check_gives_the_verdicts_of_a_per_tensor_check():
    """Paddle's fused check_finite_and_unscale_ against numpy, over dtypes and positions
    (float16 has the kernel on GPU only, where fp16 gradients exist)."""
    rng = np.random.default_rng(0)
    scaler = DynamicLossScaler(True, init_scale=1024.0)
    for trial in range(40):
        arrays = [rng.normal(size=rng.integers(1, 20)).astype(dtype) * 1024
                  for dtype in (np.float32, np.float64, np.float32)]
        if trial % 4:
            victim = arrays[trial % 3]
            victim.flat[trial % victim.size] = (np.inf, -np.inf, np.nan)[trial % 3]
        expected = not all(np.isfinite(a).all() for a in arrays)
        grads = [paddle.to_tensor(a) for a in arrays]
        assert scaler.unscale_and_check(grads) is expected
        if not expected:
            for grad, array in zip(grads, arrays, strict=True):
                np.testing.assert_array_equal(grad.numpy(), array / np.asarray(1024, array.dtype))


MODES = ["dynamic", "static"]


class Trainer:
    """A no-BN backbone + sampled Partial FC behind the real train step of either executor."""

    def __init__(self, mode: str = "dynamic", growth_interval: int = 1000,
                 scaled: bool = True) -> None:
        paddle.seed(0)
        self.backbone = PlainNet(8)
        self.head = PartialFC(40, 8, 0.25, seed=1)
        self.optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=self.backbone
                                                   .parameters(), weight_decay=5e-4)
        self.scaler = DynamicLossScaler(scaled, init_scale=2.0 ** 12,
                                        growth_interval=growth_interval)
        sparse = SampledMomentum(0.9, 5e-4)
        if mode == "static":
            self.step = build_static_step(self.backbone, self.head, self.optimizer, sparse,
                                          self.scaler, image_shape=(3, 16, 16))
        else:
            self.step = build_dynamic_step(self.backbone, self.head, self.optimizer, sparse,
                                           self.scaler)
        self.rng = np.random.default_rng(0)

    def batch(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        images = self.rng.normal(size=(6, 3, 16, 16)).astype(np.float32)
        return paddle.to_tensor(images), paddle.to_tensor(self.rng.integers(0, 40, 6))

    def snapshot(self) -> dict[str, np.ndarray]:
        state = {f"param/{name}": p.numpy().copy()
                 for name, p in self.backbone.named_parameters()}
        for key, value in optimizer_arrays(self.optimizer, self.backbone).items():
            state[f"opt/{key}"] = value.copy()
        state["pfc/weight"] = self.head.weight.numpy().copy()
        state["pfc/velocity"] = self.head.velocity.numpy().copy()
        return state


def assert_unchanged(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["backbone", "partial_fc"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_injected_overflow_skips_the_whole_step(where, bad, mode):
    trainer = Trainer(mode)
    for _ in range(2):  # non-zero momentum everywhere first
        assert not trainer.step(*trainer.batch()).skipped
    before = trainer.snapshot()
    assert any(k.startswith("opt/") and np.abs(v).max() > 0 for k, v in before.items())
    assert np.abs(before["pfc/velocity"]).max() > 0
    scale = trainer.scaler.scale

    pending = trainer.step.forward_backward(*trainer.batch())
    with paddle.no_grad():
        grad = (trainer.backbone.fc.weight.grad if where == "backbone"
                else pending.centres.grad)
        poisoned = grad.numpy()
        poisoned.flat[3] = bad
        grad.set_value(paddle.to_tensor(poisoned))
    skipped, used_scale = trainer.step.apply(pending)

    assert skipped and used_scale == scale
    assert_unchanged(before, trainer.snapshot())
    assert trainer.scaler.scale == scale / 2
    assert all(p.grad is None or not p.grad.numpy().any()
               for p in trainer.backbone.parameters())  # cleared for the next step
    # the next clean step trains both parts again
    assert not trainer.step(*trainer.batch()).skipped
    after = trainer.snapshot()
    assert not np.array_equal(after["pfc/weight"], before["pfc/weight"])
    assert not np.array_equal(after["param/fc.weight"], before["param/fc.weight"])


def test_scale_grows_after_clean_steps_in_training():
    trainer = Trainer(growth_interval=3)
    scales = [trainer.step(*trainer.batch()).loss_scale for _ in range(7)]
    assert scales == [4096.0] * 3 + [8192.0] * 3 + [16384.0]


@pytest.mark.parametrize("mode", MODES)
def test_scaled_training_equals_unscaled_training(mode):
    """Power-of-two scaling is exact in binary floating point: scaling changes nothing."""
    scaled, plain = Trainer(mode), Trainer(mode, scaled=False)
    for step in range(3):
        paddle.seed(step)  # the same negative centres sampled in both runs
        a = scaled.step(*scaled.batch())
        paddle.seed(step)
        b = plain.step(*plain.batch())
        assert a.loss == b.loss
    for key, value in scaled.snapshot().items():
        np.testing.assert_array_equal(value, plain.snapshot()[key], err_msg=key)


def test_fp16_on_cpu_says_so_once_and_trains_in_fp32(monkeypatch):
    monkeypatch.setattr(amp, "_said_fp16_on_cpu", False)
    said = []
    backbone = PlainNet(8)
    optimizer = paddle.optimizer.Momentum(0.1, parameters=backbone.parameters())
    for _ in range(2):
        got_backbone, got_optimizer, active = prepare_pure_fp16(backbone, optimizer, True,
                                                                said.append)
        assert (got_backbone, got_optimizer, active) == (backbone, optimizer, False)
    assert said == [amp.FP16_ON_CPU]
    assert all(p.dtype == paddle.float32 for p in backbone.parameters())
    assert prepare_pure_fp16(backbone, optimizer, False, said.append)[2] is False
    assert said == [amp.FP16_ON_CPU]


def test_master_weights_stay_fp32_under_o2_decoration():
    """What prepare_pure_fp16 asks of paddle on GPU: fp16 compute weights, fp32 masters held by
    the optimizer, norm layers kept fp32. The decoration itself runs on CPU too."""
    backbone = paddle.nn.Sequential(paddle.nn.Linear(4, 4), paddle.nn.BatchNorm1D(4))
    optimizer = paddle.optimizer.Momentum(0.1, parameters=backbone.parameters(),
                                          multi_precision=True)
    backbone, optimizer = paddle.amp.decorate(models=backbone, optimizers=optimizer,
                                              level="O2", master_weight=True, dtype="float16")
    assert backbone[1].weight.dtype == paddle.float32
    assert optimizer._multi_precision
