"""Learning-rate schedule: lr x global batch / 512, warmup, piecewise and polynomial decay,
epoch or step units, errors naming the flag."""

from __future__ import annotations

import itertools

import pytest

from arcface_paddle.errors import ArcFaceError
from arcface_paddle.lr import build_schedule, scaled_lr


def test_lr_scales_with_the_global_batch():
    assert scaled_lr(0.1, 512) == pytest.approx(0.1)
    assert scaled_lr(0.1, 1024) == pytest.approx(0.2)  # 8 GPUs x 128
    assert scaled_lr(1.6, 32) == pytest.approx(0.1)


def test_piecewise_decay_in_epochs_with_warmup():
    schedule = build_schedule(0.1, 1024, steps_per_epoch=100, train_unit="epoch", train_num=25,
                              warmup_num=1, decay="piecewise", decay_boundaries=(10, 16, 22),
                              lr_decay=0.1)
    peak = 0.2
    assert schedule.total_steps == 2500 and schedule.warmup_steps == 100
    assert schedule(0) == pytest.approx(peak / 100)  # linear warmup, first step non-zero
    assert schedule(49) == pytest.approx(peak / 2)
    assert schedule(99) == pytest.approx(peak)
    assert schedule(999) == pytest.approx(peak)
    assert schedule(1000) == pytest.approx(peak * 0.1)
    assert schedule(1599) == pytest.approx(peak * 0.1)
    assert schedule(1600) == pytest.approx(peak * 0.01)
    assert schedule(2200) == pytest.approx(peak * 0.001)


def test_polynomial_decay_in_steps():
    schedule = build_schedule(0.1, 512, steps_per_epoch=7, train_unit="step", train_num=1000,
                              warmup_num=100, decay="poly", poly_power=2.0)
    assert schedule.total_steps == 1000 and schedule.warmup_steps == 100
    assert schedule(100) == pytest.approx(0.1)
    assert schedule(550) == pytest.approx(0.1 * 0.25)  # half way: (1 - 1/2)^2
    assert schedule(1000) == 0.0
    values = [schedule(s) for s in range(100, 1000)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("kwargs, flag", [
    ({"train_unit": "iteration"}, "--train_unit"),
    ({"decay": "cosine"}, "--lr_decay_type"),
    ({"decay_boundaries": (16, 10)}, "--decay_boundaries"),
    ({"steps_per_epoch": 0}, "--batch_size"),
    ({"train_num": 0}, "--train_num"),
    ({"warmup_num": -1}, "--warmup_num"),
])
def test_bad_schedules_name_the_flag(kwargs, flag):
    arguments = {"lr": 0.1, "global_batch": 512, "steps_per_epoch": 10, "train_unit": "epoch",
                 "train_num": 5, **kwargs}
    with pytest.raises(ArcFaceError, match=flag):
        build_schedule(**arguments)
