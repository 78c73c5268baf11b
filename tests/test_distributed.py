"""Rank helpers un-launched: one rank, collectives are the identity (the multi-rank paths run
in tests/test_partial_fc_distributed.py and tests/test_train.py under paddle.distributed.launch).
"""

from __future__ import annotations

import numpy as np
import paddle

from arcface_paddle import distributed


def test_unlaunched_process_is_rank_zero_of_one(monkeypatch):
    monkeypatch.delenv("PADDLE_TRAINERS_NUM", raising=False)
    monkeypatch.delenv("PADDLE_TRAINER_ID", raising=False)
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    assert distributed.is_main_process()
    assert distributed.init_distributed() == (0, 1)
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "4")
    monkeypatch.setenv("PADDLE_TRAINER_ID", "2")
    assert (distributed.get_rank(), distributed.get_world_size()) == (2, 4)
    assert not distributed.is_main_process()


def test_one_rank_collectives_are_the_identity():
    x = paddle.to_tensor(np.arange(6, dtype=np.float32).reshape(3, 2), stop_gradient=False)
    for op in (distributed.all_reduce_sum, distributed.all_reduce_max,
               distributed.all_gather_concat):
        np.testing.assert_array_equal(op(x).numpy(), x.numpy())
    gathered = distributed.all_gather_with_grad(x)
    (gathered * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 2), 3.0))
    layer = paddle.nn.Linear(2, 2)
    before = layer.weight.numpy().copy()
    distributed.broadcast_parameters(layer)
    layer(x).sum().backward()
    grad = layer.weight.grad.numpy().copy()
    distributed.all_reduce_gradients(list(layer.parameters()))
    np.testing.assert_array_equal(layer.weight.numpy(), before)
    np.testing.assert_array_equal(layer.weight.grad.numpy(), grad)
    distributed.barrier()
