"""Launched on 2 ranks by tests/test_static.py: a few static train steps of a no-BN backbone
with sampled Partial FC; rank r writes the op names of its program to OUT/ops_rank{r}.json.

    PYTHONPATH=.:tests python -m paddle.distributed.launch --nproc_per_node 2 \
        tests/dist_scripts/static_program_ranks.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import paddle

from arcface_paddle import distributed
from arcface_paddle.amp import DynamicLossScaler
from arcface_paddle.engine.static import build_static_step, program_ops
from arcface_paddle.heads.partial_fc import PartialFC, SampledMomentum
from dist_scripts.tiny_backbones import PlainNet


def main() -> None:
    out = Path(sys.argv[1])
    rank, _ = distributed.init_distributed()
    paddle.seed(0)
    backbone = PlainNet(16)
    distributed.broadcast_parameters(backbone)
    head = PartialFC(37, 16, 0.5, seed=3)
    optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=backbone.parameters())
    step = build_static_step(backbone, head, optimizer, SampledMomentum(),
                             DynamicLossScaler(True), image_shape=(3, 16, 16))
    losses = []
    for i in range(3):
        paddle.seed(100 + i)
        images = paddle.randn([4, 3, 16, 16])
        losses.append(step(images, paddle.randint(0, 37, [4])).loss)
    (out / f"ops_rank{rank}.json").write_text(json.dumps({
        "ops": program_ops(step), "traced": step.forward.get_traced_count(),
        "losses": losses}))
    distributed.barrier()


if __name__ == "__main__":
    main()
