"""Learning-rate schedule as a pure function of the step, so a resumed run needs only the step.

lr = config lr x global batch / 512 (the insightface convention: `lr` is quoted for a global
batch of 512), linear warmup, then piecewise-constant decay at the boundaries or polynomial decay
to zero. Warmup, boundaries and the run length are counted in `train_unit`s: epochs or steps.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from paddle.optimizer.lr import LRScheduler

from .errors import ArcFaceError

REFERENCE_BATCH = 512
TRAIN_UNITS = ("epoch", "step")
DECAYS = ("piecewise", "poly")


@dataclass(frozen=True)
class LRSchedule:
    """`schedule(step)` -> the learning rate of the update that follows `step` completed steps."""

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    decay: str = "piecewise"
    boundaries: tuple[int, ...] = ()
    decay_factor: float = 0.1
    power: float = 2.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        if self.decay == "piecewise":
            return self.peak_lr * self.decay_factor ** bisect.bisect_right(self.boundaries, step)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.peak_lr * (1.0 - progress) ** self.power


def scaled_lr(lr: float, global_batch: int) -> float:
    """The config's lr is for a global batch of 512; scale it linearly to this run's batch."""
    return lr * global_batch / REFERENCE_BATCH


def build_schedule(lr: float, global_batch: int, steps_per_epoch: int, train_unit: str,
                   train_num: int, warmup_num: float = 0, decay: str = "piecewise",
                   decay_boundaries: tuple[float, ...] = (), lr_decay: float = 0.1,
                   poly_power: float = 2.0) -> LRSchedule:
    """Schedule from config values (counts in `train_unit`s); errors name the flag."""
    if train_unit not in TRAIN_UNITS:
        raise ArcFaceError(f"--train_unit must be one of {', '.join(TRAIN_UNITS)}, "
                           f"got {train_unit!r}")
    if decay not in DECAYS:
        raise ArcFaceError(f"--lr_decay_type must be one of {', '.join(DECAYS)}, got {decay!r}")
    if steps_per_epoch < 1:
        raise ArcFaceError("the dataset holds less than one global batch: lower --batch_size")
    if train_num <= 0:
        raise ArcFaceError(f"--train_num must be positive, got {train_num}")
    if warmup_num < 0:
        raise ArcFaceError(f"--warmup_num must be >= 0, got {warmup_num}")
    unit = steps_per_epoch if train_unit == "epoch" else 1
    boundaries = tuple(math.ceil(b * unit) for b in decay_boundaries)
    if list(boundaries) != sorted(boundaries):
        raise ArcFaceError(f"--decay_boundaries must be increasing, got {decay_boundaries}")
    return LRSchedule(peak_lr=scaled_lr(lr, global_batch), total_steps=int(train_num * unit),
                      warmup_steps=math.ceil(warmup_num * unit), decay=decay,
                      boundaries=boundaries, decay_factor=lr_decay, power=poly_power)


class ScheduledLR(LRScheduler):
    """`schedule` as a Paddle learning-rate scheduler: the optimizer reads `schedule(step)`
    itself and `step()` advances by one update, so nothing sets the learning rate per step
    (a static program would gain an op each time). `start_step`: completed steps so far."""

    def __init__(self, schedule: LRSchedule, start_step: int = 0) -> None:
        self.schedule = schedule
        super().__init__(learning_rate=schedule(start_step), last_epoch=start_step - 1)

    def get_lr(self) -> float:
        return self.schedule(self.last_epoch)
