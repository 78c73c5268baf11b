"""Checkpoints: exact round trip, Partial FC re-split for another world size, atomicity and
pruning, clear errors, and a resumed run that ends bit-for-bit where an uninterrupted one does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import paddle
import pytest

from arcface_paddle.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_partial_fc_rows,
    optimizer_arrays,
    read_meta,
    restore_optimizer,
    save_checkpoint,
)
from arcface_paddle.config import load_config
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.heads.partial_fc import PartialFC, shard_range
from arcface_paddle.train import train
from arcface_paddle.weights import read_weights, save_weights
from dist_scripts import tiny_backbones
from test_amp import Trainer

REPO = Path(__file__).resolve().parents[1]


def trained(steps: int, mode: str = "dynamic") -> Trainer:
    trainer = Trainer(mode, growth_interval=2)
    for step in range(steps):
        paddle.seed(step)
        trainer.step(*trainer.batch())
    return trainer


def save(trainer: Trainer, root: Path, step: int, keep_last: int = 3) -> Path:
    return save_checkpoint(root, step, trainer.backbone, trainer.optimizer, trainer.head,
                           trainer.scaler, global_batch=6, backbone_name="PlainNet",
                           keep_last=keep_last)


@pytest.mark.parametrize(("saved_by", "loaded_by"), [
    ("dynamic", "dynamic"), ("static", "dynamic"), ("dynamic", "static")])
def test_round_trip_restores_everything_and_the_next_step(tmp_path, saved_by, loaded_by):
    """One format for both executors: what one saves, the other resumes, bit for bit."""
    original = trained(3, saved_by)
    path = save(original, tmp_path, 3)
    meta = read_meta(path)
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == FORMAT_VERSION
    assert meta["step"] == 3 and meta["world_size"] == 1
    assert meta["partial_fc"] == [{"file": "partial_fc_00000.npz", "class_start": 0,
                                   "class_stop": 40}]

    restored = Trainer(loaded_by, growth_interval=2)  # fresh layers: other tensor names
    assert restored.backbone.fc.weight.name != original.backbone.fc.weight.name
    load_checkpoint(path, restored.backbone, restored.optimizer, restored.head,
                    restored.scaler)
    before = original.snapshot()
    after = restored.snapshot()
    assert before.keys() == after.keys()
    assert any(key.startswith("opt/") for key in before)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert restored.scaler.state_dict() == original.scaler.state_dict()

    # the same next step: momentum and loss scale really came back
    restored.rng = original.rng
    images, labels = original.batch()
    paddle.seed(99)
    a = original.step(images, labels)
    paddle.seed(99)
    b = restored.step(images, labels)
    assert (a.loss, a.loss_scale) == (b.loss, b.loss_scale)
    for key, value in original.snapshot().items():
        np.testing.assert_array_equal(restored.snapshot()[key], value, err_msg=key)


def fp16_layer_and_optimizer() -> tuple[paddle.nn.Linear, paddle.optimizer.Momentum]:
    """What O2 decoration leaves on a GPU: fp16 parameters, an optimizer keeping fp32 masters.
    (decorate casts nothing on CPU, so the cast is done by hand.)"""
    layer = paddle.nn.Linear(3, 2)
    layer.to(dtype="float16")
    optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=layer.parameters(),
                                          multi_precision=True, weight_decay=5e-4)
    return layer, optimizer


def create_accumulators(layer: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer) -> None:
    """What the first optimizer.step() does before its (GPU-only fp16) kernel runs."""
    block = paddle.static.default_main_program().global_block()
    optimizer._create_accumulators(block, layer.parameters())


def test_fp16_master_weights_restore_under_the_names_the_optimizer_looks_up():
    saved_layer, saved_optimizer = fp16_layer_and_optimizer()
    create_accumulators(saved_layer, saved_optimizer)
    arrays = optimizer_arrays(saved_optimizer, saved_layer)
    assert {key for key in arrays if key.startswith("master_weights/")} == {
        "master_weights/weight|_fp32_master_0", "master_weights/bias|_fp32_master_0"}
    rng = np.random.default_rng(0)  # values a fresh optimizer could not make up by itself
    arrays = {key: rng.normal(size=value.shape).astype(np.float32)
              for key, value in arrays.items()}

    layer, optimizer = fp16_layer_and_optimizer()  # new process: other tensor names
    assert layer.weight.name != saved_layer.weight.name
    restore_optimizer(optimizer, layer, arrays, Path("optimizer.npz"))
    create_accumulators(layer, optimizer)  # raised "generated_tensor_N_velocity_0 should in..."
    restored = optimizer_arrays(optimizer, layer)
    assert restored.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
        assert restored[key].dtype == np.float32

    # checkpoints written before the suffix was stored name masters "master_weights/<name>"
    legacy = {key.split("|")[0] if key.startswith("master_weights/") else key: value
              for key, value in arrays.items()}
    layer, optimizer = fp16_layer_and_optimizer()
    restore_optimizer(optimizer, layer, legacy, Path("optimizer.npz"))
    create_accumulators(layer, optimizer)
    np.testing.assert_array_equal(optimizer_arrays(optimizer, layer)["weight|_fp32_master_0"
                                                                     "_velocity_0"],
                                  arrays["weight|_fp32_master_0_velocity_0"])


def test_optimizer_state_loads_only_into_the_same_precision():
    """Momentum is named after the master weight when there is one: fp16 state cannot feed an
    fp32 run or the reverse; that is a user error naming the flag, not Paddle's assertion."""
    fp16_layer, fp16_optimizer = fp16_layer_and_optimizer()
    create_accumulators(fp16_layer, fp16_optimizer)
    fp32_layer = paddle.nn.Linear(3, 2)  # what --fp16 True trains on a CPU: fp32, no masters
    fp32_optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=fp32_layer.parameters(),
                                               multi_precision=True)
    create_accumulators(fp32_layer, fp32_optimizer)
    cases = [(optimizer_arrays(fp16_optimizer, fp16_layer), fp32_layer, fp32_optimizer, "with"),
             (optimizer_arrays(fp32_optimizer, fp32_layer), *fp16_layer_and_optimizer(),
              "without")]
    for arrays, layer, optimizer, written in cases:
        with pytest.raises(ArcFaceError, match=rf"optimizer\.npz: written {written} fp32 "
                                               r"master weights.*--fp16"):
            restore_optimizer(optimizer, layer, arrays, Path("optimizer.npz"))


def write_sharded(path: Path, num_classes: int, dim: int, world_size: int
                  ) -> tuple[dict, np.ndarray, np.ndarray]:
    """A checkpoint's Partial FC part as `world_size` ranks write it (documented layout)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(num_classes, dim)).astype(np.float32)
    velocity = rng.normal(size=(num_classes, dim)).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    shards = []
    for rank in range(world_size):
        start, stop = shard_range(num_classes, world_size, rank)
        name = f"partial_fc_{rank:05d}.npz"
        np.savez(path / name, weight=weight[start:stop], velocity=velocity[start:stop],
                 class_range=np.asarray([start, stop]))
        shards.append({"file": name, "class_start": start, "class_stop": stop})
    meta = {"embedding_size": dim, "partial_fc": shards}
    return meta, weight, velocity


@pytest.mark.parametrize("saved_ranks", [1, 3, 4])
@pytest.mark.parametrize("loading_ranks", [1, 2, 3, 5, 12])
def test_partial_fc_is_re_split_for_any_world_size(tmp_path, saved_ranks, loading_ranks):
    num_classes, dim = 10, 3
    meta, weight, velocity = write_sharded(tmp_path, num_classes, dim, saved_ranks)
    parts = [load_partial_fc_rows(tmp_path, meta, *shard_range(num_classes, loading_ranks, r))
             for r in range(loading_ranks)]
    np.testing.assert_array_equal(np.concatenate([w for w, _ in parts]), weight)
    np.testing.assert_array_equal(np.concatenate([v for _, v in parts]), velocity)


def test_missing_or_inconsistent_shards_are_named(tmp_path):
    meta, _, _ = write_sharded(tmp_path, 10, 3, 2)
    gap = {**meta, "partial_fc": meta["partial_fc"][:1]}
    with pytest.raises(ArcFaceError, match="no saved shard holds class 5"):
        load_partial_fc_rows(tmp_path, gap, 0, 10)
    shifted = {**meta, "partial_fc": [dict(meta["partial_fc"][0], class_stop=4),
                                      meta["partial_fc"][1]]}
    with pytest.raises(ArcFaceError, match=r"partial_fc_00000\.npz"):
        load_partial_fc_rows(tmp_path, shifted, 0, 10)
    (tmp_path / "partial_fc_00001.npz").unlink()
    with pytest.raises(ArcFaceError, match=r"partial_fc_00001\.npz: missing"):
        load_partial_fc_rows(tmp_path, meta, 0, 10)


def test_keeps_the_last_n_and_ignores_unfinished_folders(tmp_path):
    trainer = trained(1)
    for step in (2, 4, 6, 8):
        save(trainer, tmp_path, step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000006", "step_00000008"]
    # a crash mid-save leaves a temporary folder (or one without meta.json): never picked
    (tmp_path / ".step_00000010.tmp").mkdir()
    (tmp_path / "step_00000012").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_00000008"
    assert not list(tmp_path.glob(".*.tmp/*"))  # nothing half-written remained from saving
    save(trainer, tmp_path, 8, keep_last=2)  # saving the same step again replaces it
    assert latest_checkpoint(tmp_path).name == "step_00000008"


def test_bad_checkpoints_are_user_errors(tmp_path):
    trainer = trained(1)
    path = save(trainer, tmp_path, 1)
    meta = json.loads((path / META_FILE).read_text())
    with pytest.raises(ArcFaceError, match="missing"):
        read_meta(tmp_path / "nowhere")
    (path / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArcFaceError, match="format_version 99"):
        read_meta(path)
    (path / META_FILE).write_text("{not json")
    with pytest.raises(ArcFaceError, match="unreadable"):
        read_meta(path)
    (path / META_FILE).write_text(json.dumps(meta))
    other = Trainer()
    other.head = PartialFC(41, 8, 0.25)
    with pytest.raises(ArcFaceError, match="--num_classes"):
        load_checkpoint(path, other.backbone, other.optimizer, other.head, other.scaler)
    wrong_backbone = tiny_backbones.PlainNet(4)
    with pytest.raises(ArcFaceError, match="backbone"):
        load_checkpoint(path, wrong_backbone, trainer.optimizer, trainer.head, trainer.scaler)


def tiny_config(output: Path, **overrides: str):
    pairs = [("backbone", "TinyFaceNet"), ("output", str(output)), ("train_num", "8"),
             ("checkpoint_interval_step", "4"), ("sample_ratio", "0.5"),
             ("synthetic_images_per_class", "4"), ("log_interval_step", "4"),
             ("dropout", "0"), *overrides.items()]
    return load_config(REPO / "configs" / "tiny_cpu.py", pairs)


@pytest.mark.slow
@pytest.mark.parametrize(("first_static", "then_static"), [
    ("false", "false"), ("true", "true"), ("true", "false")])
def test_resumed_run_ends_exactly_where_an_uninterrupted_run_does(tmp_path, first_static,
                                                                  then_static):
    """In either executor, and a static run resumed in dynamic mode."""
    tiny_backbones.register()
    straight = train(tiny_config(tmp_path / "straight", is_static=first_static))
    assert straight.step == 8
    first = train(tiny_config(tmp_path / "resumed", max_steps="4", is_static=first_static))
    assert first.step == 4
    # as if the run had crashed after logging steps 5 and 6 (and half of 7) past its checkpoint
    with (tmp_path / "resumed" / "train_log.jsonl").open("a") as log:
        for step in (5, 6):
            log.write(json.dumps({"step": step, "loss": 9.0, "lr": 0.0}) + "\n")
        log.write('{"step": 7, "lo')
    second = train(tiny_config(tmp_path / "resumed", resume="true", is_static=then_static))
    assert (second.start_step, second.step) == (4, 8)
    a, b = straight.checkpoint, second.checkpoint
    assert a.name == b.name == "step_00000008"
    for name in ("backbone.npz", "optimizer.npz", "partial_fc_00000.npz"):
        with np.load(a / name) as x, np.load(b / name) as y:
            assert x.files == y.files
            for key in x.files:
                np.testing.assert_array_equal(y[key], x[key], err_msg=f"{name}:{key}")
    logs = [[json.loads(line) for line in (tmp_path / run / "train_log.jsonl").open()]
            for run in ("straight", "resumed")]
    assert [r["step"] for r in logs[1]] == list(range(1, 9))
    for x, y in zip(logs[0], logs[1], strict=True):
        assert (x["step"], x["lr"], x["loss"]) == (y["step"], y["lr"], y["loss"])


def _edit_meta(**changes):
    def edit(path: Path) -> None:
        meta = json.loads((path / META_FILE).read_text())
        for key, value in changes.items():
            if value is None:
                meta.pop(key)
            else:
                meta[key] = value
        (path / META_FILE).write_text(json.dumps(meta))
    return edit


def _edit_npz(name: str, change):
    def edit(path: Path) -> None:
        with np.load(path / name) as data:
            arrays = {key: data[key] for key in data.files}
        change(arrays)
        with open(path / name, "wb") as handle:
            np.savez(handle, **arrays)
    return edit


def _truncate(name: str):
    def edit(path: Path) -> None:
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[:len(data) // 2])
    return edit


def _first_float(arrays: dict) -> str:
    return next(k for k, v in arrays.items() if v.dtype.kind == "f")


def _poison(arrays: dict) -> None:
    arrays[_first_float(arrays)].flat[0] = np.nan


def _to_int(arrays: dict) -> None:
    key = _first_float(arrays)
    arrays[key] = arrays[key].astype(np.int32)


def _widen(arrays: dict) -> None:
    key = _first_float(arrays)
    arrays[key] = np.zeros((*arrays[key].shape, 2), arrays[key].dtype)


@pytest.mark.parametrize("tamper, message", [
    (_edit_meta(step=-100), r"meta\.json: step must be an integer >= 0, got -100"),
    (_edit_meta(step="3"), r"step must be an integer >= 0, got '3'"),
    (_edit_meta(world_size=None), r"world_size must be an integer >= 1, got None"),
    (_edit_meta(world_size=2, global_batch=7), r"global_batch must be a multiple of world_size"),
    (_edit_meta(embedding_size=True), r"embedding_size must be an integer >= 1, got True"),
    (_edit_meta(loss_scaler={"scale": "big"}), r"loss_scaler must be"),
    (_edit_meta(loss_scaler=None), r"loss_scaler must be"),
    (_edit_meta(partial_fc="all"), r"partial_fc must be a list"),
    (_edit_meta(partial_fc=[{"file": "../x.npz", "class_start": 0, "class_stop": 40}]),
     r"partial_fc\[0\] must be"),
    (_edit_meta(partial_fc=[{"file": "partial_fc_00000.npz", "class_start": 0,
                             "class_stop": 30}]), r"shards end at class 30"),
    (_truncate("backbone.npz"), r"backbone\.npz: not a weights file, or truncated"),
    (_truncate("optimizer.npz"), r"optimizer\.npz: unreadable, truncated"),
    (_truncate("partial_fc_00000.npz"), r"partial_fc_00000\.npz: unreadable, truncated"),
    (_edit_npz("optimizer.npz", _poison), r"optimizer\.npz: .* holds NaN or infinite values"),
    (_edit_npz("optimizer.npz", _to_int), r"optimizer\.npz: .* holds int32, expected floating"),
    (_edit_npz("optimizer.npz", _widen), r"optimizer\.npz: .* has shape .*, parameter"),
    (_edit_npz("optimizer.npz", lambda a: a.update(junk=np.zeros(2, np.float32))),
     r"entry 'junk' is not"),
    (_edit_npz("partial_fc_00000.npz", _poison), r"partial_fc_00000\.npz: weight holds NaN"),
    (_edit_npz("partial_fc_00000.npz", lambda a: a.update(velocity=a["velocity"][:3])),
     r"velocity has shape \[3, 8\]; meta\.json implies \[40, 8\]"),
    (_edit_npz("partial_fc_00000.npz", lambda a: a.pop("class_range")), r"lacks class_range"),
    (_edit_npz("partial_fc_00000.npz", lambda a: a.update(weight=a["weight"].astype(np.int64))),
     r"weight holds int64, expected floating point"),
])
def test_tampered_checkpoints_are_refused_with_one_line(tmp_path, tamper, message):
    """Issue 10, item 2: each of these gave a traceback, hung the trainer (step -100) or
    would have trained on NaN."""
    path = save(trained(1), tmp_path, 1)
    tamper(path)
    fresh = Trainer()
    with pytest.raises(ArcFaceError, match=message) as caught:
        load_checkpoint(path, fresh.backbone, fresh.optimizer, fresh.head, fresh.scaler)
    assert "\n" not in str(caught.value)


def test_nan_backbone_weights_are_refused(tmp_path):
    path = save(trained(1), tmp_path, 1)
    arrays, meta = read_weights(path / "backbone.npz")
    arrays[_first_float(arrays)].flat[0] = np.inf
    save_weights(path / "backbone.npz", arrays, meta["backbone"], meta["embedding_size"])
    fresh = Trainer()
    with pytest.raises(ArcFaceError, match=r"backbone\.npz: .* holds NaN or infinite values"):
        load_checkpoint(path, fresh.backbone, fresh.optimizer, fresh.head, fresh.scaler)
