"""The static-graph executor: the train step's forward Layer converted by
`paddle.jit.to_static(full_graph=True)`, so its forward and backward run as one PIR program.

Why `to_static` and not a `program_guard` program: it converts the very Layer the dynamic
executor runs (no second definition of anything), keeps the parameters shared with the eager
optimizer, backbone optimizer and sparse centre update (the update half is the same Python in
both modes) and gives the same numbers. The batch dimension and the number of sampled centres
are dynamic in the `InputSpec`, so one program serves every step whatever the sampling keeps.

On several ranks the program holds the collectives (all_gather, all_reduce) of the Partial FC
loss and its backward; `FLAGS_new_executor_sequential_run` makes every rank run the ops in
program order, so their collectives meet in the same order.

On CPU the executor runs every op in the calling thread (`FLAGS_new_executor_serial_run`): its
default host thread pool runs independent ops side by side, and on a machine with few cores
those threads fight the kernels for them. Measured on 2 cores, MobileFaceNet at batch 32: the
converted forward took 2.3 s with the pool against 1.8 s eagerly, and 1.75 s serial
(`benchmarks/bench_static_vs_dynamic.py` compares whole steps).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import paddle
from paddle.static import InputSpec

from .. import distributed
from ..amp import DynamicLossScaler
from ..heads.partial_fc import PartialFC, SampledMomentum
from .step import TrainForward, TrainStep

IMAGE_SHAPE = (3, 112, 112)


def input_spec(embedding_size: int, image_shape: Sequence[int] = IMAGE_SHAPE
               ) -> list[InputSpec]:
    """images [B, C, H, W], centres [K, D], columns [N]: B, K and N dynamic."""
    return [InputSpec([None, *image_shape], "float32", "images"),
            InputSpec([None, embedding_size], "float32", "centres"),
            InputSpec([None], "int64", "columns")]


def convert_forward(forward: TrainForward, embedding_size: int,
                    image_shape: Sequence[int] = IMAGE_SHAPE):
    """The forward Layer's `forward` as a static function (the Layer itself is left as is:
    its backbone still runs eagerly where validation or export call it)."""
    # Paddle's own tracing (zeros_like, the backward it appends) asks graph values for their
    # `place` and warns each time; nothing of ours does, and nothing is wrong
    warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface",
                            category=UserWarning)
    if distributed.get_world_size() > 1:
        paddle.set_flags({"FLAGS_new_executor_sequential_run": True})
    if paddle.device.get_device().startswith("cpu"):
        paddle.set_flags({"FLAGS_new_executor_serial_run": True})
    return paddle.jit.to_static(forward.forward, input_spec=input_spec(
        embedding_size, image_shape), full_graph=True)


def build_static_step(backbone: paddle.nn.Layer, head: PartialFC,
                      optimizer: paddle.optimizer.Optimizer, centre_optimizer: SampledMomentum,
                      scaler: DynamicLossScaler, fp16: bool = False,
                      image_shape: Sequence[int] = IMAGE_SHAPE) -> TrainStep:
    module = TrainForward(backbone, head.loss, fp16)
    return TrainStep(module, head, optimizer, centre_optimizer, scaler,
                     forward=convert_forward(module, head.embedding_size, image_shape))


def program_ops(step: TrainStep) -> list[str]:
    """Names of every op of the step's last traced forward + backward program, nested blocks
    (the collectives of a PyLayer live in one) included: what tests inspect."""
    _, (_, partial) = step.forward.program_cache.last()
    names: list[str] = []
    blocks = [partial.train_program.program.global_block()]
    while blocks:
        for op in blocks.pop().ops:
            names.append(op.name())
            blocks += op.blocks()
    return names
