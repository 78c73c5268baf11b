"""`tools/train.py` on hostile input: a missing, empty or wrong data folder, files that are not
images, truncated or corrupt shards, damaged checkpoints, an unusable `--output`, bad values.
Each ends with exactly one `error: ...` line on stderr naming the flag, file or record, a
non-zero exit and no traceback, with 0 and with 2 DataLoader workers, and (issue 10, item 1) a
data error on one rank of a launched run ends every rank with that line instead of a hang.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from arcface_paddle.checkpoint import FORMAT_NAME, FORMAT_VERSION
from arcface_paddle.config import config_from_argv
from arcface_paddle.data.datasets import GlobalBatchSampler, SyntheticFaces
from arcface_paddle.data.label_file import write_label_file
from arcface_paddle.data.packed import PackedWriter
from arcface_paddle.data.recordio import write_rec_dataset
from arcface_paddle.train import train
from dist_scripts import tiny_backbones
from dist_scripts.launching import clean_env, launch_command, worker_logs
from refusals import run_in_session

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "tools" / "train.py"
TINY = REPO / "configs" / "tiny_cpu.py"
#: tools/train.py with the test backbones registered (TinyFaceNet)
RUN_TRAIN = REPO / "tests" / "dist_scripts" / "run_train.py"
JUNK = b"\xff\xd8\xffjunk"  # starts like a JPEG, decodes as nothing
#: a fast tiny run: every case fails before (or at) the first batch
FAST = ["--config_file", str(TINY), "--embedding_size", "16", "--batch_size", "4",
        "--max_steps", "3", "--checkpoint_interval_step", "0"]


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def faces(count: int = 16, classes: int = 4) -> list[tuple[bytes, int]]:
    synthetic = SyntheticFaces(classes, count // classes, seed=3)
    return [(png(image), label) for image, label in (synthetic[i] for i in range(count))]


def image_folder(root: Path, items: list[tuple[bytes, int]], suffix: str = ".png") -> Path:
    (root / "images").mkdir(parents=True)
    entries = []
    for i, (data, label) in enumerate(items):
        (root / "images" / f"{i}{suffix}").write_bytes(data)
        entries.append((f"images/{i}{suffix}", label))
    write_label_file(root / "label.txt", entries)
    return root


def packed_folder(root: Path, items: list[tuple[bytes, int]]) -> Path:
    with PackedWriter(root) as writer:
        for i, (data, label) in enumerate(items):
            writer.add(data, label, f"images/{i}.png")
    return root


def checkpoint_folder(root: Path, **meta) -> Path:
    root.mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "step": 3, "world_size": 1,
        "global_batch": 4, "num_classes": 4, "embedding_size": 16,
        "loss_scaler": {"scale": 1.0, "good_steps": 0},
        "partial_fc": [{"file": "partial_fc_00000.npz", "class_start": 0, "class_stop": 4}],
        **meta}))
    return root


def unwritable(tmp: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits)."""
    if os.geteuid() == 0:
        return Path("/sys/arcface_paddle_test_output")
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "run"


def run_group(command: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run `command` from the checkout in a session of its own (nothing may outlive it)."""
    return run_in_session(command, timeout, what, env=clean_env())


def run_train(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_group([sys.executable, str(TRAIN), *args], timeout, "tools/train.py")


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> str:
    shown = f"stdout:\n{result.stdout[-1500:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert re.search(pattern, lines[0]), shown
    return lines[0]


# -- cases: (name, build(tmp) -> extra flags, expected pattern of the error line) ------------------
def _data(build, *flags: str):
    return lambda tmp: ["--data_dir", str(build(tmp)), *flags]


def _truncated_shard(tmp: Path) -> Path:
    root = packed_folder(tmp / "packed", faces())
    shard = root / "data_00000.bin"
    shard.write_bytes(shard.read_bytes()[:1000])
    return root


def _corrupt_shard(tmp: Path) -> Path:
    root = packed_folder(tmp / "packed", faces())
    shard = root / "data_00000.bin"
    data = bytearray(shard.read_bytes())
    data[100:200] = bytes(100)  # same size, wrong bytes: fails its checksum when read
    shard.write_bytes(bytes(data))
    return root


def _truncated_rec(tmp: Path) -> Path:
    items = faces()
    root = tmp / "rec"
    write_rec_dataset(root, [label for _, label in sorted(items, key=lambda x: x[1])],
                      [data for data, _ in sorted(items, key=lambda x: x[1])])
    rec = root / "train.rec"
    rec.write_bytes(rec.read_bytes()[:len(rec.read_bytes()) // 2])
    return root


def _a_file(tmp: Path) -> Path:
    path = tmp / "data.txt"
    path.write_text("not a folder\n")
    return path


def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _missing_image(tmp: Path) -> Path:
    root = image_folder(tmp / "faces", faces())
    for i in range(16):
        (root / "images" / f"{i}.png").unlink()
    return root


def _small_images(tmp: Path) -> Path:
    return image_folder(tmp / "faces", [(png(np.zeros((64, 64, 3), np.uint8)), i % 4)
                                        for i in range(16)])


def _junk_jpgs(tmp: Path) -> Path:
    return image_folder(tmp / "junk", [(JUNK, i % 4) for i in range(16)], suffix=".jpg")


def _bad_config(tmp: Path) -> list[str]:
    path = tmp / "job.py"
    path.write_bytes(b"\x00\xff garbage =")
    return ["--config_file", str(path)]


def _junk_bin(tmp: Path) -> Path:
    (tmp / "lfw.bin").write_bytes(bytes(range(256)) * 4)
    return tmp


def _output_is_a_file(tmp: Path) -> list[str]:
    path = tmp / "output"
    path.write_text("x")
    return ["--output", str(path)]


CASES = [
    ("missing data dir", _data(lambda tmp: tmp / "nowhere"), r"--data_dir .*nowhere: no such"),
    ("empty data dir", _data(_empty), r"--data_dir .*empty: found no train\.rec"),
    ("data dir is a file", _data(_a_file), r"--data_dir .*data\.txt: is not a folder"),
    ("not-an-image files", _data(_junk_jpgs, "--num_classes", "4"),
     r"junk/images/\d+\.jpg \(image \d+ of .*label\.txt\): not an image"),
    ("missing images", _data(_missing_image, "--num_classes", "4"),
     r"faces/images/\d+\.png \(image \d+ of .*label\.txt\): No such file"),
    ("wrong image size", _data(_small_images, "--num_classes", "4"), r"64x64 pixels; training"),
    ("truncated shard", _data(_truncated_shard, "--num_classes", "4"),
     r"data_00000\.bin: \d+ bytes but the index needs \d+; the shard is truncated"),
    ("corrupt shard", _data(_corrupt_shard, "--num_classes", "4"),
     r"data_00000\.bin: image \d+ \(bytes \d+\.\.\d+\) fails its checksum"),
    ("truncated rec", _data(_truncated_rec, "--num_classes", "4"), r"train\.rec"),
    ("class count mismatch", _data(lambda tmp: image_folder(tmp / "f", faces())),
     r"--num_classes 64, but the data in .* has 4 classes"),
    ("label file is a folder", lambda tmp: ["--data_dir", str(tmp), "--label_file", str(tmp)],
     r"cannot read \(Is a directory\)"),
    ("output is a file", _output_is_a_file, r"--output .*output: is a file, expected a folder"),
    ("unwritable output", lambda tmp: ["--output", str(unwritable(tmp))],
     r"--output .*: cannot write there"),
    ("config file is junk", _bad_config, r"job\.py: cannot load config"),
    ("config file is a folder", lambda tmp: ["--config_file", str(tmp)], r"no such config file"),
    ("checkpoint step -100", lambda tmp: ["--checkpoint_dir", str(checkpoint_folder(
        tmp / "ckpt", step=-100))], r"meta\.json: step must be an integer >= 0, got -100"),
    ("checkpoint missing", lambda tmp: ["--checkpoint_dir", str(tmp / "nowhere")],
     r"meta\.json: missing; not a \(complete\) checkpoint"),
    ("validation set missing", lambda tmp: ["--val_targets", "lfw", "--val_dir", str(tmp),
                                            "--validation_interval_step", "2"],
     r"--val_targets lfw: .*lfw\.bin not found"),
    ("batch size 0", lambda tmp: ["--batch_size", "0"], r"--batch_size must be an integer >= 1"),
    ("embedding size 0", lambda tmp: ["--embedding_size", "0"], r"--embedding_size must be"),
    ("negative workers", lambda tmp: ["--num_workers", "-1"], r"--num_workers must be an int"),
    ("margin of one value", lambda tmp: ["--margin", "1"], r"--margin must be three finite"),
    ("margin of four values", lambda tmp: ["--margin", "1,0.5,0,0"], r"--margin must be three"),
    ("lr nan", lambda tmp: ["--lr", "nan"], r"--lr must be a finite number > 0, got nan"),
    ("embedding too large for memory", lambda tmp: ["--embedding_size", "1000000000"],
     r"out of memory \(.*\); lower the sizes"),
    ("corrupt validation set", lambda tmp: ["--val_dir", str(_junk_bin(tmp)), "--val_targets",
                                            "lfw", "--validation_interval_step", "2"],
     r"lfw\.bin: not a readable pickle"),
    ("unknown flag", lambda tmp: ["--batchsize", "4"], r"unknown flag --batchsize"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, build, pattern", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_gives_one_line_and_a_non_zero_exit(tmp_path, name, build, pattern):
    extra = build(tmp_path)
    output = [] if "--output" in extra else ["--output", str(tmp_path / "run")]
    assert_one_line_error(run_train(*FAST, *output, *extra), pattern)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.parametrize("build, data_format, pattern", [
    (_junk_jpgs, "folder",
     r"junk/images/\d+\.jpg \(image \d+ of .*label\.txt\): not an image"),
    (_corrupt_shard, "packed",
     r"data_00000\.bin: image \d+ \(bytes \d+\.\.\d+\) fails its checksum"),
], ids=["junk jpgs", "corrupt shard"])
def test_a_data_error_ends_the_run_with_any_number_of_workers(tmp_path, build, data_format,
                                                              pattern, workers):
    """Issue 10, item 1: with 0 workers this hung for good after a thread traceback; with 2
    it printed a 41-line traceback. The format is named, not left to the config (the tiny
    config's synthetic data once silently won over --data_dir, item 3), so the run meets the
    bad data whatever the config says."""
    started = time.monotonic()
    result = run_train(*FAST, "--output", str(tmp_path / "run"), "--data_format", data_format,
                       "--data_dir", str(build(tmp_path)), "--num_classes", "4",
                       "--num_workers", workers, timeout=90)
    assert_one_line_error(result, pattern)
    assert time.monotonic() - started < 90


def one_bad_image_on_rank_1(root: Path, batch: int, seed: int) -> int:
    """64 good faces in a folder but one undecodable image, in rank 1's first batch of 2 ranks
    -> that image's index. Rank 0 loads its batch fine and would wait for rank 1."""
    items = faces(64, 8)
    bad = next(iter(GlobalBatchSampler(len(items), 2 * batch, 1, 2, seed)))[0][0]
    items[bad] = (JUNK, items[bad][1])
    image_folder(root, items)
    return bad


def run_launched(args: list[str], log_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """Two launched ranks of tests/dist_scripts/run_train.py."""
    script = REPO / "tests" / "dist_scripts" / "run_train.py"
    try:
        return run_group(launch_command(2, log_dir, script, *args), timeout, "the launched run")
    except pytest.fail.Exception:
        print(worker_logs(log_dir))
        raise


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_data_error_on_one_rank_ends_every_rank_with_its_line(tmp_path, workers):
    """Issue 10, item 1: the rank that failed died and the other waited in a collective until
    gloo's timeout aborted it. Now both stop at once with the same one line."""
    data = tmp_path / "faces"
    bad = one_bad_image_on_rank_1(data, batch=4, seed=7)
    log_dir = tmp_path / "launch_log"
    args = [*FAST, "--backbone", "TinyFaceNet", "--data_format", "folder", "--data_dir",
            str(data), "--num_classes", "8", "--num_workers", workers, "--output",
            str(tmp_path / "run"), "--seed", "7"]
    started = time.monotonic()
    result = run_launched(args, log_dir, timeout=150)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    expected = (f"error: rank 1: {data}/images/{bad}.png (image {bad} of {data}/label.txt): "
                "not an image (cannot decode)")
    for rank in (0, 1):
        log = (log_dir / f"workerlog.{rank}").read_text()
        assert log.rstrip().splitlines()[-1] == expected, worker_logs(log_dir)
        assert "Traceback" not in log and "TIMEOUT" not in log, worker_logs(log_dir)
    assert elapsed < 120, f"took {elapsed:.0f} s"  # not gloo's timeout, not a hang


def split_checkpoint_for_two_ranks(path: Path, num_classes: int) -> None:
    """Rewrite a one-rank checkpoint as if two ranks had saved it (one Partial FC shard each)."""
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "partial_fc_00000.npz") as data:
        weight, velocity = data["weight"], data["velocity"]
    half = num_classes // 2
    shards = []
    for rank, (start, stop) in enumerate([(0, half), (half, num_classes)]):
        name = f"partial_fc_{rank:05d}.npz"
        np.savez(path / name, weight=weight[start:stop], velocity=velocity[start:stop],
                 class_range=np.asarray([start, stop], np.int64))
        shards.append({"file": name, "class_start": start, "class_stop": stop})
    meta.update(world_size=2, partial_fc=shards)
    (path / "meta.json").write_text(json.dumps(meta))


@pytest.mark.slow
def test_a_damaged_file_only_one_rank_reads_ends_every_rank_with_its_line(tmp_path):
    """Beside issue 10, item 1: resuming on two ranks, rank 1 alone reads Partial FC shard 1;
    truncated, it failed alone and rank 0 waited for it in the next collective."""
    tiny_backbones.register()
    flags = [*FAST, "--backbone", "TinyFaceNet", "--num_classes", "8",
             "--synthetic_images_per_class", "4", "--max_steps", "1", "--visualdl", "false"]
    config = config_from_argv([*flags, "--output", str(tmp_path / "run")])
    checkpoint = train(config).checkpoint
    split_checkpoint_for_two_ranks(checkpoint, 8)
    shard = checkpoint / "partial_fc_00001.npz"
    shard.write_bytes(shard.read_bytes()[:200])
    log_dir = tmp_path / "launch_log"
    result = run_launched([*flags, "--max_steps", "2", "--checkpoint_dir", str(checkpoint),
                           "--output", str(tmp_path / "resumed")], log_dir, timeout=150)
    assert result.returncode != 0
    for rank in (0, 1):
        last = (log_dir / f"workerlog.{rank}").read_text().rstrip().splitlines()[-1]
        assert re.fullmatch(r"error: rank 1: .*partial_fc_00001\.npz: unreadable, truncated .*",
                            last), worker_logs(log_dir)


@pytest.mark.slow
def test_a_real_checkpoint_whose_step_is_negative_ends_the_run_with_its_line(tmp_path):
    """Issue 10, item 1: resuming from a checkpoint whose meta.json says "step": -100 hung
    after a thread traceback. The checkpoint is a real one-step run's, and an untouched copy
    resumes to step 2 with the same flags, so the step is the only thing wrong with it."""
    tiny_backbones.register()
    flags = [*FAST, "--backbone", "TinyFaceNet", "--num_classes", "8",
             "--synthetic_images_per_class", "4", "--max_steps", "1", "--visualdl", "false"]
    checkpoint = train(config_from_argv([*flags, "--output", str(tmp_path / "run")])).checkpoint
    untouched = tmp_path / "untouched"
    shutil.copytree(checkpoint, untouched)

    def resume(source: Path, output: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(RUN_TRAIN), *flags, "--max_steps", "2",
                   "--checkpoint_dir", str(source), "--output", str(tmp_path / output)]
        return run_group(command, 120, f"resuming from {source.name}")

    control = resume(untouched, "control")
    assert control.returncode == 0, control.stderr[-3000:]
    (resumed,) = (tmp_path / "control").rglob("meta.json")
    assert json.loads(resumed.read_text())["step"] == 2  # it went on from step 1

    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["step"] == 1
    (checkpoint / "meta.json").write_text(json.dumps({**meta, "step": -100}))
    result = resume(checkpoint, "resumed")  # a hang fails after 120 s, killing the group
    assert_one_line_error(result, re.escape(f"{checkpoint / 'meta.json'}: step must be an "
                                            "integer >= 0, got -100"))
    assert not (tmp_path / "resumed").exists() or not list((tmp_path / "resumed").rglob(
        "meta.json"))  # no checkpoint written from it
