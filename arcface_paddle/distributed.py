"""Ranks and collectives for class-parallel training, launched (gloo/NCCL) or as one process.

Every helper works un-launched: with one rank the collectives are the identity, so the callers
have one code path for W = 1 and W > 1. Collectives go through the functional ops
(`paddle._C_ops.all_gather` / `all_reduce`), which return new tensors and also trace under
`paddle.jit.to_static`; the in-place `paddle.distributed.all_reduce` does not trace correctly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer

from .errors import ArcFaceError

T = TypeVar("T")


class AgreedError(ArcFaceError):
    """An error every rank raises together (`first_failure` told them all): the trainer meets
    at a barrier after cleaning up, so each rank prints the line before any exits and the
    launcher, which stops the others when one ends, cuts no rank short."""

_RING_ID = 0  # the global communication group
_REDUCE_SUM = int(dist.ReduceOp.SUM)
_REDUCE_MAX = int(dist.ReduceOp.MAX)


def get_world_size() -> int:
    """Number of ranks: paddle.distributed's once initialised, before that the launcher's
    environment; 1 when the process was not started by `paddle.distributed.launch`."""
    if dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def get_rank() -> int:
    """This process's rank (as `get_world_size`); 0 when un-launched."""
    if dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed() -> tuple[int, int]:
    """Join the process group once when launched with several ranks -> (rank, world_size)."""
    world_size = get_world_size()
    if world_size > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return get_rank(), world_size


def all_reduce_sum(x: paddle.Tensor) -> paddle.Tensor:
    """Elementwise sum over ranks (new tensor, same shape; no gradient flows through it)."""
    if get_world_size() == 1:
        return x
    return paddle._C_ops.all_reduce(x, _RING_ID, _REDUCE_SUM)


def all_reduce_max(x: paddle.Tensor) -> paddle.Tensor:
    """Elementwise max over ranks (new tensor, same shape; no gradient flows through it)."""
    if get_world_size() == 1:
        return x
    return paddle._C_ops.all_reduce(x, _RING_ID, _REDUCE_MAX)


def all_gather_concat(x: paddle.Tensor) -> paddle.Tensor:
    """x [B, ...] on every rank (same B) -> [W * B, ...] in rank order, without gradient."""
    world_size = get_world_size()
    if world_size == 1:
        return x
    return paddle._C_ops.all_gather(x, _RING_ID, world_size)


class _AllGatherWithGrad(PyLayer):
    """Forward: concatenate every rank's rows. Backward: each rank holds the gradient of its own
    part of the loss w.r.t. ALL rows; summing over ranks gives the full gradient, of which this
    rank keeps the rows it contributed. Every rank has the same number of rows, so this
    rank's are its 1/W of the split; nothing is kept on `ctx`, which a program traced with a
    dynamic batch dimension could not hold."""

    @staticmethod
    def forward(ctx, x: paddle.Tensor) -> paddle.Tensor:
        return paddle._C_ops.all_gather(x, _RING_ID, get_world_size())

    @staticmethod
    def backward(ctx, grad: paddle.Tensor) -> paddle.Tensor:
        total = paddle._C_ops.all_reduce(grad, _RING_ID, _REDUCE_SUM)
        return paddle.split(total, get_world_size(), axis=0)[get_rank()]


def all_gather_with_grad(x: paddle.Tensor) -> paddle.Tensor:
    """x [B, D] per rank (same B everywhere) -> [W * B, D]; gradients return to their owners."""
    if get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


def broadcast_parameters(layer: paddle.nn.Layer, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every rank (identical start everywhere)."""
    if get_world_size() == 1:
        return
    with paddle.no_grad():
        for tensor in [*layer.parameters(), *layer.buffers()]:
            tensor.set_value(paddle._C_ops.broadcast(tensor, _RING_ID, src))


def all_reduce_gradients(parameters: Sequence[paddle.Tensor]) -> None:
    """Sum every parameter's gradient over ranks, in place, with one collective.

    The loss is the mean over the GLOBAL batch and each rank back-propagates only its own
    samples, so the true gradient is the sum of the ranks' gradients (not their mean).
    """
    if get_world_size() == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    with paddle.no_grad():
        by_dtype: dict[str, list[paddle.Tensor]] = {}
        for grad in grads:
            by_dtype.setdefault(str(grad.dtype), []).append(grad)
        for group in by_dtype.values():
            flat = paddle.concat([g.reshape([-1]) for g in group])
            flat = paddle._C_ops.all_reduce(flat, _RING_ID, _REDUCE_SUM)
            offset = 0
            for grad in group:
                size = int(grad.numel())
                grad.set_value(flat[offset:offset + size].reshape(grad.shape))
                offset += size


#: bytes of an error message passed between ranks (longer ones are cut)
MESSAGE_BYTES = 1000


def first_failure(message: str | None) -> str | None:
    """Collective: each rank passes its error message, or None when it is fine -> on every
    rank, the message of the lowest failing rank ("rank r: ..."), or None when none failed.

    One int32 all-reduce when all is well; the messages travel only when some rank failed.
    Un-launched it returns `message` itself."""
    world_size = get_world_size()
    if world_size == 1:
        return message
    flag = paddle.to_tensor([0 if message is None else 1], dtype="int32")
    if int(all_reduce_max(flag).item()) == 0:
        return None
    data = (message or "").encode("utf-8")[:MESSAGE_BYTES]
    row = np.zeros(MESSAGE_BYTES + 1, np.int32)
    row[0] = -1 if message is None else len(data)
    row[1:1 + len(data)] = np.frombuffer(data, np.uint8)
    rows = all_gather_concat(paddle.to_tensor(row[None])).numpy()
    rank = int(np.flatnonzero(rows[:, 0] >= 0)[0])
    text = rows[rank, 1:1 + rows[rank, 0]].astype(np.uint8).tobytes().decode("utf-8", "replace")
    return f"rank {rank}: {text}"


def on_every_rank(call: Callable[..., T], *args, **kwargs) -> T:
    """Collective: `call(*args, **kwargs)` on each rank; an `ArcFaceError` on any rank (a
    damaged file only it reads) is raised on every rank, naming the rank, so none goes on to
    wait for it in a later collective. The call itself must not use collectives."""
    try:
        result, error = call(*args, **kwargs), None
    except ArcFaceError as exc:
        result, error = None, str(exc)
    failure = first_failure(error)
    if failure is not None:
        raise AgreedError(failure)
    return result  # type: ignore[return-value]


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()
