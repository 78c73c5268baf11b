"""Training run: config -> data -> backbone + Partial FC -> train steps with logging, validation
on `.bin` sets every N steps, and checkpoints. `--is_static True` runs each step's forward and
backward as one static program (engine/static.py), `False` eagerly (engine/dynamic.py); the
step, its update and the checkpoints are the same in both, so either resumes the other.

Launched with `python -m paddle.distributed.launch ... tools/train.py` each process trains one
rank; run directly it trains alone. Resuming reads the newest checkpoint (or `--checkpoint_dir`)
and continues at its step with the same global batch, learning rate and data order, on any
number of ranks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle

from insightface_paddle.fileio import atomic_open

from . import distributed
from .amp import DynamicLossScaler, prepare_pure_fp16
from .backbones import build_backbone
from .checkpoint import (
    backbone_arrays,
    checkpoint_root,
    latest_checkpoint,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from .config import Config, check_paths, config_from_argv, config_table, help_table
from .data.datasets import FaceDataset, GlobalBatchSampler, build_loader, open_reader
from .engine.dynamic import build_dynamic_step
from .engine.static import build_static_step
from .engine.step import TrainStep
from .errors import ArcFaceError
from .heads.partial_fc import PartialFC, SampledMomentum
from .logging import TrainLogger
from .lr import LRSchedule, ScheduledLR, build_schedule


@dataclass
class TrainSummary:
    #: completed steps when the run stopped
    step: int
    start_step: int
    last_loss: float
    #: verification accuracy of the last validation, by target
    validation: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of paddle's generator for one step on one rank (dropout, negative sampling)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def resume_path(config: Config) -> Path | None:
    if config.checkpoint_dir:
        return Path(config.checkpoint_dir)
    if config.resume:
        return latest_checkpoint(checkpoint_root(config.output))
    return None


def load_validation_sets(config: Config) -> list:
    """Every rank loads the sets (each embeds a share of them) and refuses, before the first
    step, any set the protocol cannot score."""
    from .data.verification_bin import check_usable_verification_set, load_verification_bin

    if config.validation_interval_step <= 0 or not config.val_targets:
        return []
    folder = Path(config.val_dir or config.data_dir)
    sets = []
    for target in config.val_targets:
        path = folder / f"{target}.bin"
        if not path.is_file():
            raise ArcFaceError(f"--val_targets {target}: {path} not found (set --val_dir, or "
                               "--validation_interval_step 0 to skip validation)")
        vset = load_verification_bin(path)
        check_usable_verification_set(vset)
        sets.append(vset)
    return sets


def validate(backbone: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer, sets: list,
             config: Config, step: int, logger: TrainLogger) -> dict[str, float]:
    """Collective: every rank embeds its share of each set through paddle.inference (a fresh
    copy of the current weights, fp32 masters under pure fp16); rank 0 logs."""
    from .evaluation.bin_eval import evaluate_sets
    from .evaluation.engines import weights_embedder

    embedder = weights_embedder(backbone_arrays(backbone, optimizer), config.backbone,
                                config.embedding_size)
    results = {}
    for report in evaluate_sets(embedder, sets, config.val_batch_size,
                                progress=distributed.is_main_process()):
        results[report.name] = report.accuracy
        logger.info(f"step {step}  {report.name}: accuracy {report.accuracy:.5f} "
                    f"+- {report.accuracy_std:.5f}")
        logger.scalar(f"val/{report.name}", report.accuracy, step)
    logger.record(step=step, validation=results)
    return results


def build_run_schedule(config: Config, global_batch: int, steps_per_epoch: int) -> LRSchedule:
    return build_schedule(config.lr, global_batch, steps_per_epoch, config.train_unit,
                          config.train_num, config.warmup_num, config.lr_decay_type,
                          config.decay_boundaries, config.lr_decay, config.poly_power)


def build_train_step(config: Config, schedule: LRSchedule, start_step: int = 0,
                     say: Callable[[str], None] = print) -> TrainStep:
    """The backbone (same initial weights on every rank), this rank's Partial FC shard, both
    optimizers and the loss scaler, wired into the train step of the configured graph mode
    (`--is_static`); the learning rate follows `schedule` from `start_step`."""
    paddle.seed(config.seed)
    options = {"dropout": config.dropout} if config.dropout else {}
    backbone = build_backbone(config.backbone, config.embedding_size, **options)
    distributed.broadcast_parameters(backbone)
    head = PartialFC(config.num_classes, config.embedding_size, config.sample_ratio,
                     tuple(config.margin), config.scale, config.straight_through,
                     margin_fallback=config.margin_fallback, seed=config.seed)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=ScheduledLR(schedule, start_step), momentum=config.momentum,
        parameters=backbone.parameters(), weight_decay=config.weight_decay,
        multi_precision=config.fp16)
    backbone, optimizer, fp16 = prepare_pure_fp16(backbone, optimizer, config.fp16, say)
    scaler = DynamicLossScaler(config.fp16, config.init_loss_scaling, config.incr_ratio,
                               config.decr_ratio, config.incr_every_n_steps,
                               config.min_loss_scaling, config.max_loss_scaling)
    build_step = build_static_step if config.is_static else build_dynamic_step
    return build_step(backbone, head, optimizer,
                      SampledMomentum(config.momentum, config.weight_decay), scaler, fp16)


def train(config: Config) -> TrainSummary:
    """Run (or resume) training as this process's rank; returns what happened."""
    # the output folder is made by the logger once everything before the first step has
    # passed: a bad path, checkpoint or validation set leaves no empty folder behind
    check_paths(config)
    rank, world_size = distributed.init_distributed()
    is_main = rank == 0
    say = print if is_main else (lambda message: None)

    checkpoint = resume_path(config)
    if config.resume and checkpoint is None:
        say(f"--resume: no checkpoint in {checkpoint_root(config.output)} yet; starting at step 0")
    meta = read_meta(checkpoint) if checkpoint is not None else None
    global_batch = int(meta["global_batch"]) if meta else config.batch_size * world_size
    if global_batch % world_size:
        raise ArcFaceError(f"{checkpoint}: its global batch {global_batch} does not split over "
                           f"{world_size} ranks")
    if global_batch // world_size != config.batch_size:
        say(f"resuming a global batch of {global_batch} on {world_size} ranks: "
            f"{global_batch // world_size} images per rank (--batch_size {config.batch_size} "
            "ignored)")

    reader = open_reader(config.data_dir, config.data_format, config.label_file,
                         config.num_classes, config.synthetic_images_per_class, config.seed)
    if reader.num_classes != config.num_classes:
        raise ArcFaceError(f"--num_classes {config.num_classes}, but the data in "
                           f"{config.data_dir} has {reader.num_classes} classes")
    dataset = FaceDataset(reader, config.random_flip, config.seed)
    sampler = GlobalBatchSampler(len(dataset), global_batch, rank, world_size, config.seed)
    loader = build_loader(dataset, sampler, config.num_workers)
    schedule = build_run_schedule(config, global_batch, len(sampler))
    stop_at = schedule.total_steps if config.max_steps is None else min(
        schedule.total_steps, config.max_steps)
    val_sets = load_validation_sets(config)

    start_step = int(meta["step"]) if meta else 0
    train_step = build_train_step(config, schedule, start_step, say)
    backbone, head, optimizer, scaler = (train_step.backbone, train_step.head,
                                         train_step.optimizer, train_step.scaler)
    if checkpoint is not None:
        meta = distributed.on_every_rank(load_checkpoint, checkpoint, backbone, optimizer, head,
                                         scaler)
        say(f"resumed from {checkpoint} (saved by {meta['world_size']} ranks) at step "
            f"{start_step} on {world_size} ranks; lr {schedule(start_step):.8g}")

    logger = TrainLogger(config.output, stop_at, global_batch, config.log_interval_step,
                         config.visualdl, enabled=is_main, start_step=start_step)
    if is_main:
        with atomic_open(Path(config.output) / "config.json", "w", encoding="utf-8") as handle:
            json.dump(config.as_dict(), handle, indent=2)
    logger.info(f"{world_size} rank(s), global batch {global_batch}, {len(sampler)} steps per "
                f"epoch, steps {start_step}..{stop_at} of {schedule.total_steps}; Partial FC "
                f"classes [{head.class_start}, {head.class_stop}) on rank 0")
    logger.info(f"{'static' if config.is_static else 'dynamic'}-graph train step")
    backbone.train()
    head.train()
    summary = TrainSummary(step=start_step, start_step=start_step, last_loss=float("nan"))
    step = start_step
    try:
        while step < stop_at:
            epoch, first_batch = divmod(step, len(sampler))
            sampler.set_epoch(epoch, first_batch)
            for images, labels in loader:
                paddle.seed(step_seed(config.seed, step, rank))
                lr = optimizer.get_lr()
                started = time.perf_counter()
                result = train_step(images, labels)  # its loss is read back: it has finished
                step_time = time.perf_counter() - started
                step += 1
                summary.step, summary.last_loss = step, result.loss
                logger.step(step, result.loss, lr, result.loss_scale, result.skipped, step_time)
                if val_sets and (step % config.validation_interval_step == 0
                                 or step == stop_at):
                    summary.validation = validate(backbone, optimizer, val_sets, config,
                                                  step, logger)
                if step == stop_at or (config.checkpoint_interval_step > 0
                                        and step % config.checkpoint_interval_step == 0):
                    summary.checkpoint = save_checkpoint(
                        checkpoint_root(config.output), step, backbone, optimizer, head, scaler,
                        global_batch, config.backbone, {"epoch": epoch, "next_lr": schedule(step),
                                       "config": config.as_dict()},
                        config.max_num_last_checkpoint)
                    logger.info(f"checkpoint {summary.checkpoint}")
                if step >= stop_at:
                    break
    finally:
        logger.close()
    return summary


def help_text(argv: Sequence[str]) -> str:
    """`tools/train.py --help [--config_file F ...]`: usage and every flag with its meaning."""
    source = "configs/base.py" + (" and the flags given" if argv else "")
    return (f"{__doc__.strip()}\n\nusage: tools/train.py [--config_file FILE] [--key value ...]"
            f"\n\nflags as --key TYPE = VALUE (from {source}) and their meaning:\n"
            f"{help_table(config_from_argv(argv))}")


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv):
        print(help_text([a for a in argv if a not in ("-h", "--help")]))
        return 0
    config = config_from_argv(argv)
    if distributed.is_main_process():
        print(config_table(config), flush=True)
    try:
        train(config)
    except distributed.AgreedError:
        # every rank has cleaned up: all print the line now, and the launcher's SIGTERM (sent
        # when the first rank exits) ends a rank still tearing down quietly instead of
        # appending Paddle's crash report after it
        distributed.barrier()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise
    return 0
