"""Launched on W ranks by tests/test_partial_fc_distributed.py; writes what the test checks.

    PYTHONPATH=.:tests python -m paddle.distributed.launch --nproc_per_node 3 \
        tests/dist_scripts/partial_fc_ranks.py OUT_DIR

1. Equivalence runs: a no-BN backbone + Partial FC (sample_ratio 1.0) trained for STEPS steps on
   fixed global batches, each rank feeding its slice, through the real train step (loss scaler
   on) of each executor (MODES). Saves per-step losses, the backbone and this rank's centres
   and momentum.
2. Sampling run (sample_ratio < 1): per step, the rows each shard sampled, the positives of the
   global batch in its range, and its centres and momentum before and after the update.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import paddle

from arcface_paddle import distributed
from arcface_paddle.amp import DynamicLossScaler
from arcface_paddle.engine.dynamic import build_dynamic_step
from arcface_paddle.engine.static import build_static_step
from arcface_paddle.heads.partial_fc import PartialFC, SampledMomentum
from dist_scripts.tiny_backbones import PlainNet

STEPS = 10
GLOBAL_BATCH = 12
EMBEDDING = 16
LR = 0.1
#: equivalence runs: C % W != 0 (37 on 3 ranks) and C < W (2 classes on 3 ranks)
EQUIVALENCE_CLASSES = (37, 2)
SAMPLING_CLASSES, SAMPLE_RATIO, SAMPLING_STEPS = 101, 0.2, 3
MODES = ("dynamic", "static")


def global_batch(step: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The same images [G, 3, 16, 16] and labels [G] on every rank (and in the reference)."""
    rng = np.random.default_rng([1234, step, num_classes])
    images = rng.normal(size=(GLOBAL_BATCH, 3, 16, 16)).astype(np.float32)
    return images, rng.integers(0, num_classes, GLOBAL_BATCH)


def equivalence_run(num_classes: int, rank: int, world_size: int, out: Path, mode: str
                    ) -> None:
    paddle.seed(0)
    backbone = PlainNet(EMBEDDING)
    distributed.broadcast_parameters(backbone)
    head = PartialFC(num_classes, EMBEDDING, 1.0, margin=(1.0, 0.5, 0.0), scale=64.0, seed=3)
    optimizer = paddle.optimizer.Momentum(LR, 0.9, parameters=backbone.parameters(),
                                          weight_decay=5e-4)
    scaler = DynamicLossScaler(True, init_scale=1024.0, growth_interval=4)
    sparse = SampledMomentum(0.9, 5e-4)
    if mode == "static":
        step_fn = build_static_step(backbone, head, optimizer, sparse, scaler,
                                    image_shape=(3, 16, 16))
    else:
        step_fn = build_dynamic_step(backbone, head, optimizer, sparse, scaler)
    local = GLOBAL_BATCH // world_size
    losses, scales = [], []
    for step in range(STEPS):
        images, labels = global_batch(step, num_classes)
        rows = slice(rank * local, (rank + 1) * local)
        result = step_fn(paddle.to_tensor(images[rows]), paddle.to_tensor(labels[rows]))
        losses.append(result.loss)
        scales.append(result.loss_scale)
    arrays = {f"backbone/{k}": v.numpy() for k, v in backbone.state_dict().items()}
    np.savez(out / f"equivalence_{mode}_c{num_classes}_rank{rank}.npz", weight=head.weight.numpy(),
             velocity=head.velocity.numpy(),
             class_range=np.asarray([head.class_start, head.class_stop]),
             losses=np.asarray(losses), scales=np.asarray(scales), **arrays)


def sampling_run(rank: int, world_size: int, out: Path) -> None:
    paddle.seed(100 + rank)
    head = PartialFC(SAMPLING_CLASSES, EMBEDDING, SAMPLE_RATIO, seed=5)
    local = GLOBAL_BATCH // world_size
    records = []
    for step in range(SAMPLING_STEPS):
        _, labels = global_batch(step, SAMPLING_CLASSES)
        if step == 1:  # every label in the last shard: more positives than the quota there
            labels = np.arange(SAMPLING_CLASSES - GLOBAL_BATCH, SAMPLING_CLASSES)
        features = paddle.to_tensor(np.random.default_rng([7, step, rank]).normal(
            size=(local, EMBEDDING)).astype(np.float32), stop_gradient=False)
        before = (head.weight.numpy().copy(), head.velocity.numpy().copy())
        loss, centres, selection = head(features, paddle.to_tensor(
            labels[rank * local:(rank + 1) * local]))
        loss.backward()
        sampled = selection.index.numpy() + head.class_start
        SampledMomentum(0.9, 5e-4).step(head, selection, centres, centres.grad, LR)
        after = (head.weight.numpy(), head.velocity.numpy())
        changed = np.flatnonzero(np.any(before[0] != after[0], axis=1)
                                 | np.any(before[1] != after[1], axis=1)) + head.class_start
        records.append({"step": step, "labels": labels.tolist(), "sampled": sampled.tolist(),
                        "changed": changed.tolist(), "class_start": head.class_start,
                        "class_stop": head.class_stop, "loss": float(loss.item()),
                        "features_grad_finite": bool(np.isfinite(features.grad.numpy()).all())})
    (out / f"sampling_rank{rank}.json").write_text(json.dumps(records))


def main() -> None:
    out = Path(sys.argv[1])
    rank, world_size = distributed.init_distributed()
    for mode in MODES:
        for num_classes in EQUIVALENCE_CLASSES:
            equivalence_run(num_classes, rank, world_size, out, mode)
    sampling_run(rank, world_size, out)
    distributed.barrier()


if __name__ == "__main__":
    main()
