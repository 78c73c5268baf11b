"""Checkpoints: atomic, pickle-free, resumable exactly and on a different number of ranks.

    <output>/checkpoints/step_00012000/
      meta.json              format, format_version, step, world size, global batch, class
                             ranges of the Partial FC shard files, loss scaler, config
      backbone.npz           the backbone as an `arcface_paddle.weights` file (fp32 master
                             values where pure fp16 keeps them): usable alone by export/eval
      optimizer.npz          backbone optimizer state by structured parameter name
      partial_fc_00000.npz   one per saving rank: weight [C_r, D], velocity [C_r, D], class_range

Every rank writes into `.step_XXXXXXXX.tmp/`; rank 0 writes `meta.json` last and renames the
folder, so a checkpoint either exists whole or not at all. Only the newest N are kept. Nothing
random is stored: the trainer derives every seed from (seed, step, rank) and the data order from
(seed, epoch). Partial FC shards carry their global class ranges and are re-split on load for
whatever number of ranks resumes. Layout documented in docs/training.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from insightface_paddle.fileio import atomic_open

from . import distributed
from .amp import DynamicLossScaler
from .errors import ArcFaceError
from .formats import read_format_meta
from .heads.partial_fc import PartialFC, shard_range
from .weights import (
    NPZ_ERRORS,
    assign_weights,
    check_float_arrays,
    read_weights,
    save_weights,
)

FORMAT_NAME = "arcface_paddle.checkpoint"
FORMAT_VERSION = 1
META_FILE, BACKBONE_FILE, OPTIMIZER_FILE = "meta.json", "backbone.npz", "optimizer.npz"
SHARD_FILE = "partial_fc_{:05d}.npz"
STEP_DIR = "step_{:08d}"
MASTER_PREFIX = "master_weights/"
DEFAULT_MASTER_SUFFIX = "_fp32_master_0"


def checkpoint_root(output: str | os.PathLike[str]) -> Path:
    return Path(output) / "checkpoints"


def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (unfinished `.tmp` folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / META_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def _to_numpy(value: paddle.Tensor) -> np.ndarray:
    return np.ascontiguousarray(value.numpy())


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: missing from the checkpoint") from None
    except NPZ_ERRORS as exc:
        raise ArcFaceError(f"{path}: unreadable, truncated or not an .npz file ({exc})") from None


def _param_names(layer: paddle.nn.Layer) -> dict[str, str]:
    """Paddle's unique tensor name -> structured name ("blocks.0.conv.weight")."""
    return {param.name: name for name, param in layer.named_parameters()}


def _match_param(key: str, names: dict[str, str]) -> tuple[str, str] | None:
    """Optimizer key "<tensor name><suffix>" -> (structured name, suffix), longest name first."""
    best = None
    for tensor_name, structured in names.items():
        if key.startswith(tensor_name) and key[len(tensor_name):].startswith("_") and (
                best is None or len(tensor_name) > len(best[0])):
            best = (tensor_name, structured)
    return None if best is None else (best[1], key[len(best[0]):])


def _master_suffix(tensor_name: str, master: paddle.Tensor) -> str:
    """The part of a master weight's name after its parameter's ("_fp32_master_0"): Paddle
    names the master's accumulators "<master name>_velocity_0", so a restored master must
    carry the same suffix on the new parameter's name."""
    if master.name.startswith(tensor_name + "_"):
        return master.name[len(tensor_name):]
    return DEFAULT_MASTER_SUFFIX


def optimizer_arrays(optimizer: paddle.optimizer.Optimizer, backbone: paddle.nn.Layer
                     ) -> dict[str, np.ndarray]:
    """Optimizer state keyed by structured parameter names (Paddle's tensor names differ from
    one process to the next): "<name>|<suffix>" and "master_weights/<name>|<suffix>"."""
    names = _param_names(backbone)
    arrays = {}
    for key, value in optimizer.state_dict().items():
        if key == "master_weights":
            for tensor_name, master in value.items():
                arrays[MASTER_PREFIX + names[tensor_name] + "|" +
                       _master_suffix(tensor_name, master)] = _to_numpy(master)
        elif isinstance(value, paddle.Tensor):
            match = _match_param(key, names)
            if match is not None:
                arrays[match[0] + "|" + match[1]] = _to_numpy(value)
    return arrays


def _split_master_key(key: str) -> tuple[str, str]:
    """"master_weights/<name>|<suffix>" -> (name, suffix); files written before the suffix was
    stored hold "master_weights/<name>", which Paddle always named with the default suffix."""
    structured, _, suffix = key[len(MASTER_PREFIX):].partition("|")
    return structured, suffix or DEFAULT_MASTER_SUFFIX


def _keeps_master(optimizer: paddle.optimizer.Optimizer, param: paddle.Tensor) -> bool:
    """Whether the optimizer holds an fp32 master copy of `param` (pure fp16 on a GPU)."""
    return bool(getattr(optimizer, "_multi_precision", False)) and param.dtype in (
        paddle.float16, paddle.bfloat16)


def _check_same_precision(optimizer: paddle.optimizer.Optimizer, backbone: paddle.nn.Layer,
                          arrays: dict[str, np.ndarray], source: Path) -> None:
    """Paddle names a parameter's momentum after its master weight when it keeps one, so the
    state of a pure-fp16 run only loads into a pure-fp16 run (and fp32 into fp32)."""
    saved = {_split_master_key(key)[0] for key in arrays if key.startswith(MASTER_PREFIX)}
    stated = {key.split("|", 1)[0] for key in arrays if not key.startswith(MASTER_PREFIX)}
    for name, param in backbone.named_parameters():
        if name in stated and (name in saved) != _keeps_master(optimizer, param):
            written, now = ("with", "without") if name in saved else ("without", "with")
            raise ArcFaceError(f"{source}: written {written} fp32 master weights (pure fp16 on a "
                               f"GPU), this run is {now} (parameter {name!r}); resume with the "
                               "--fp16 setting and device of the run that saved it")


def restore_optimizer(optimizer: paddle.optimizer.Optimizer, backbone: paddle.nn.Layer,
                      arrays: dict[str, np.ndarray], source: Path) -> None:
    check_float_arrays(arrays, source)
    shapes = {name: list(param.shape) for name, param in backbone.named_parameters()}
    for key, value in arrays.items():
        structured = (_split_master_key(key)[0] if key.startswith(MASTER_PREFIX)
                      else key.split("|", 1)[0])
        if "|" not in key and not key.startswith(MASTER_PREFIX):
            raise ArcFaceError(f"{source}: entry {key!r} is not '<parameter>|<state>'")
        if structured in shapes and list(value.shape) != shapes[structured]:
            raise ArcFaceError(f"{source}: {key} has shape {list(value.shape)}, parameter "
                               f"{structured} has {shapes[structured]}")
    _check_same_precision(optimizer, backbone, arrays, source)
    by_structured = {name: param.name for name, param in backbone.named_parameters()}
    state: dict[str, Any] = {}
    masters = {}
    for key, value in arrays.items():
        if key.startswith(MASTER_PREFIX):
            structured, suffix = _split_master_key(key)
            if structured not in by_structured:
                raise ArcFaceError(f"{source}: master weight of unknown parameter {structured!r}")
            master = paddle.to_tensor(value)
            master.name = by_structured[structured] + suffix
            masters[by_structured[structured]] = master
            continue
        structured, suffix = key.split("|", 1)
        if structured not in by_structured:
            raise ArcFaceError(f"{source}: state of unknown parameter {structured!r}; was the "
                               "checkpoint written for another backbone?")
        state[by_structured[structured] + suffix] = paddle.to_tensor(value)
    if masters:
        state["master_weights"] = masters
    scheduler = optimizer._learning_rate
    if isinstance(scheduler, paddle.optimizer.lr.LRScheduler):
        # the schedule is a function of the step, not saved: keep the one the run built
        state["LR_Scheduler"] = scheduler.state_dict()
    optimizer.set_state_dict(state)


def backbone_arrays(backbone: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer
                    ) -> dict[str, np.ndarray]:
    """Backbone state by structured name, fp32 master values where the optimizer keeps them."""
    masters = {_split_master_key(key)[0]: value
               for key, value in optimizer_arrays(optimizer, backbone).items()
               if key.startswith(MASTER_PREFIX)}
    arrays = {}
    for name, value in backbone.state_dict().items():
        master = masters.get(name)
        arrays[name] = master if master is not None else _to_numpy(value)
    return arrays


def save_checkpoint(root: str | os.PathLike[str], step: int, backbone: paddle.nn.Layer,
                    optimizer: paddle.optimizer.Optimizer, head: PartialFC,
                    scaler: DynamicLossScaler, global_batch: int, backbone_name: str,
                    extra: dict[str, Any] | None = None, keep_last: int = 3) -> Path:
    """Collective: every rank calls it after the same step -> the checkpoint folder."""
    root = Path(root)
    rank, world_size = head.rank, head.world_size
    final = root / STEP_DIR.format(step)
    tmp = root / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    _savez(tmp / SHARD_FILE.format(rank), {
        "weight": _to_numpy(head.weight), "velocity": _to_numpy(head.velocity),
        "class_range": np.asarray([head.class_start, head.class_stop], np.int64)})
    if rank == 0:
        save_weights(tmp / BACKBONE_FILE, backbone_arrays(backbone, optimizer), backbone_name,
                     head.embedding_size)
        _savez(tmp / OPTIMIZER_FILE, optimizer_arrays(optimizer, backbone))
    distributed.barrier()
    if rank == 0:
        shards = []
        for r in range(world_size):
            start, stop = shard_range(head.num_classes, world_size, r)
            shards.append({"file": SHARD_FILE.format(r), "class_start": start,
                           "class_stop": stop})
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "step": step,
                "world_size": world_size, "global_batch": global_batch,
                "num_classes": head.num_classes, "embedding_size": head.embedding_size,
                "loss_scaler": scaler.state_dict(), "partial_fc": shards, **(extra or {})}
        with atomic_open(tmp / META_FILE, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's meta.json, refused with one line unless every key a resume reads is
    there with a sensible value (a tampered `"step": -100` once hung the trainer)."""
    path = Path(path)
    meta = read_format_meta(path / META_FILE, FORMAT_NAME, FORMAT_VERSION,
                            "not a (complete) checkpoint")
    check_meta(meta, path / META_FILE)
    return meta


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def check_meta(meta: dict[str, Any], source: Path) -> None:
    """Types and ranges of the keys `load_checkpoint` and the trainer read from meta.json."""
    def bad(key: str, what: str) -> ArcFaceError:
        return ArcFaceError(f"{source}: {key} must be {what}, got {meta.get(key)!r}")

    for key, low in (("step", 0), ("world_size", 1), ("global_batch", 1), ("num_classes", 1),
                     ("embedding_size", 1)):
        if not _is_int(meta.get(key), low):
            raise bad(key, f"an integer >= {low}")
    if meta["global_batch"] % meta["world_size"]:
        raise bad("global_batch", f"a multiple of world_size {meta['world_size']}")
    scaler = meta.get("loss_scaler")
    if not (isinstance(scaler, dict) and isinstance(scaler.get("scale"), (int, float))
            and not isinstance(scaler.get("scale"), bool) and math.isfinite(scaler["scale"])
            and scaler["scale"] > 0 and _is_int(scaler.get("good_steps"), 0)):
        raise bad("loss_scaler", '{"scale": a finite number > 0, "good_steps": an integer >= 0}')
    shards = meta.get("partial_fc")
    if not isinstance(shards, list) or not shards:
        raise bad("partial_fc", "a list of shard records")
    expected_start = 0
    for number, shard in enumerate(shards):
        if not (isinstance(shard, dict) and isinstance(shard.get("file"), str)
                and shard["file"] == Path(shard["file"]).name and shard["file"].endswith(".npz")
                and _is_int(shard.get("class_start"), 0)
                and _is_int(shard.get("class_stop"), shard.get("class_start", 0) + 1)):
            raise ArcFaceError(f"{source}: partial_fc[{number}] must be {{'file': a .npz name "
                               "in the checkpoint folder, 'class_start', 'class_stop': integers, "
                               f"start < stop}}, got {shard!r}")
        if shard["class_start"] != expected_start:
            raise ArcFaceError(f"{source}: partial_fc[{number}] starts at class "
                               f"{shard['class_start']}, expected {expected_start}")
        expected_start = shard["class_stop"]
    if expected_start != meta["num_classes"]:
        raise ArcFaceError(f"{source}: partial_fc shards end at class {expected_start}, but "
                           f"num_classes is {meta['num_classes']}")


def load_partial_fc_rows(path: str | os.PathLike[str], meta: dict[str, Any], class_start: int,
                         class_stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and momentum of classes [start, stop) gathered from whichever saved shards hold
    them -> (weight [stop - start, D], velocity [stop - start, D])."""
    path = Path(path)
    dim = int(meta["embedding_size"])
    weight = np.zeros((class_stop - class_start, dim), np.float32)
    velocity = np.zeros_like(weight)
    covered = np.zeros(class_stop - class_start, bool)
    for shard in meta["partial_fc"]:
        lo, hi = max(class_start, shard["class_start"]), min(class_stop, shard["class_stop"])
        if lo >= hi:
            continue
        source = path / shard["file"]
        arrays = _load_npz(source)
        check_shard_arrays(arrays, (shard["class_stop"] - shard["class_start"], dim), source)
        saved_range = [int(v) for v in arrays["class_range"]]
        if saved_range != [shard["class_start"], shard["class_stop"]]:
            raise ArcFaceError(f"{source}: holds classes {saved_range}; {META_FILE} says "
                               f"[{shard['class_start']}, {shard['class_stop']}]")
        rows = slice(lo - shard["class_start"], hi - shard["class_start"])
        weight[lo - class_start:hi - class_start] = arrays["weight"][rows]
        velocity[lo - class_start:hi - class_start] = arrays["velocity"][rows]
        covered[lo - class_start:hi - class_start] = True
    if not covered.all():
        first = class_start + int(np.argmin(covered))
        raise ArcFaceError(f"{path}: no saved shard holds class {first}")
    return weight, velocity


def check_shard_arrays(arrays: dict[str, np.ndarray], shape: tuple[int, int],
                       source: Path) -> None:
    """A Partial FC shard file: finite float `weight` and `velocity` of `shape` [C_r, D] and an
    integer `class_range` [2]."""
    missing = sorted({"weight", "velocity", "class_range"} - set(arrays))
    if missing:
        raise ArcFaceError(f"{source}: lacks {', '.join(missing)}")
    check_float_arrays({k: arrays[k] for k in ("weight", "velocity")}, source)
    for key in ("weight", "velocity"):
        if arrays[key].shape != shape:
            raise ArcFaceError(f"{source}: {key} has shape {list(arrays[key].shape)}; "
                               f"{META_FILE} implies {list(shape)}")
    class_range = arrays["class_range"]
    if class_range.dtype.kind not in "iu" or class_range.shape != (2,):
        raise ArcFaceError(f"{source}: class_range must be 2 integers, got {class_range.dtype} "
                           f"{list(class_range.shape)}")


def load_checkpoint(path: str | os.PathLike[str], backbone: paddle.nn.Layer,
                    optimizer: paddle.optimizer.Optimizer, head: PartialFC,
                    scaler: DynamicLossScaler) -> dict[str, Any]:
    """Restore everything in place (this rank's Partial FC rows re-split from the saved
    shards) -> the checkpoint's meta (its "step" is the number of completed steps)."""
    path = Path(path)
    meta = read_meta(path)
    if (meta["num_classes"], meta["embedding_size"]) != (head.num_classes, head.embedding_size):
        raise ArcFaceError(f"{path}: written for {meta['num_classes']} classes x "
                           f"{meta['embedding_size']}-D; this run has {head.num_classes} x "
                           f"{head.embedding_size}-D (--num_classes, --embedding_size)")
    arrays, _ = read_weights(path / BACKBONE_FILE)
    assign_weights(backbone, arrays, path / BACKBONE_FILE)
    restore_optimizer(optimizer, backbone, _load_npz(path / OPTIMIZER_FILE),
                      path / OPTIMIZER_FILE)
    weight, velocity = load_partial_fc_rows(path, meta, head.class_start, head.class_stop)
    head.weight.set_value(paddle.to_tensor(weight))
    head.velocity.set_value(paddle.to_tensor(velocity))
    scaler.load_state_dict(meta["loss_scaler"])
    return meta


def weights_file(checkpoint: str | os.PathLike[str]) -> Path:
    """A checkpoint folder (either graph mode), a training output folder (its newest
    checkpoint) or a weights `.npz` -> the backbone weights file."""
    path = Path(checkpoint)
    if path.is_file():
        return path
    if (path / BACKBONE_FILE).is_file():
        return path / BACKBONE_FILE
    newest = latest_checkpoint(checkpoint_root(path)) if path.is_dir() else None
    if newest is not None:
        return newest / BACKBONE_FILE
    raise ArcFaceError(f"--checkpoint_dir {path}: no checkpoint there (expected a folder with "
                       f"{BACKBONE_FILE}, a training output folder or a weights .npz)")


def load_backbone_weights(checkpoint: str | os.PathLike[str], backbone: str | None = None,
                          embedding_size: int | None = None
                          ) -> tuple[dict[str, np.ndarray], str, int, Path]:
    """-> (arrays, backbone name, embedding size, weights file); `backbone` and
    `embedding_size`, when given, must be what the checkpoint was written for."""
    path = weights_file(checkpoint)
    arrays, meta = read_weights(path)
    saved_backbone, saved_size = str(meta.get("backbone")), int(meta.get("embedding_size", 0))
    if backbone is not None and backbone != saved_backbone:
        raise ArcFaceError(f"{path}: written for backbone {saved_backbone}, not --backbone "
                           f"{backbone}")
    if embedding_size is not None and int(embedding_size) != saved_size:
        raise ArcFaceError(f"{path}: written for embedding size {saved_size}, not "
                           f"--embedding_size {embedding_size}")
    return arrays, saved_backbone, saved_size, path
