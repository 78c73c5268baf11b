"""Every entry point on hostile paths (issue 10): each tool in tools/, the `insightfacepaddle`
CLI (as `python -m` and as the console script setup.py declares) and the shell scripts.

Each argument naming a file or folder gets the bad inputs that apply to it: missing, an empty
file, a file that is not an image or not the format, a truncated one, a folder where a file is
expected, a file where a folder is expected, and an output nothing can be written to (a path
under a regular file; under /sys as root, where permission bits stop nothing, or in a folder
without write permission otherwise). Each must end with exit status 1 (non-zero for a shell
script), exactly one line on stderr, `error: ...` naming the path or flag, no traceback, nothing
written at the output path, and no model run or long work before it: where the work takes long
(validation, the import of the published weights) the valid inputs beside a bad output are the
real ones (the published MobileFace, all of LFW), so a check made after it would take minutes.

The tools' whole matrix runs in this process through `run_main`, as their `__main__` does (no
interpreter and Paddle start per case); a case of each tool also runs as a real process, where
import-time warnings, native libraries' lines on stderr and the exit status show, as do the CLI
and the shell scripts.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from arcface_paddle.command import run_main
from refusals import assert_refused, run_in_session

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
#: a refusal must come before any work: the work behind these cases takes minutes
QUICK_S = 60
MOBILEFACE = "{s}/models/mobileface_v1.0_infer"
TFLITE = "{s}/models/mediapipe_face_0.10.14/face_detection_short_range.tflite"
LFW = "{s}/data/lfw.bin"
#: the tools' modules import paddle inside the tests, where pytest resets warning filters
pytestmark = pytest.mark.filterwarnings("ignore:No ccache found:UserWarning")


# -- the hostile files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def places(tmp_path_factory, shared) -> dict[str, str]:
    """Placeholders of the case tables: {t} the bad (and a few good) inputs, {s} the shared
    data, {u} a folder nothing can be written in, {r} the repository."""
    from arcface_paddle.backbones import build_backbone
    from arcface_paddle.data.convert_packed import images_to_packed
    from arcface_paddle.data.convert_verification import verification_bin_to_folder
    from arcface_paddle.data.label_file import write_label_file
    from arcface_paddle.data.recordio import write_rec_dataset
    from arcface_paddle.data.verification_bin import save_verification_bin
    from arcface_paddle.weights import layer_arrays, save_weights

    t = tmp_path_factory.mktemp("hostile_entry_points")
    rng = np.random.default_rng(7)

    def face(kind: str = ".jpg") -> bytes:
        return cv2.imencode(kind, rng.integers(0, 256, (112, 112, 3), np.uint8))[1].tobytes()

    def cut(source: Path, target: Path) -> None:
        data = source.read_bytes()
        target.write_bytes(data[:len(data) // 2])

    (t / "plain_file").write_text("a file, not a folder\n")
    (t / "empty").write_bytes(b"")
    (t / "text").write_text("this is not what the flag expects\n")
    for name in ("empty_dir", "folder.bin", "folder.txt", "folder.npz", "folder.tflite"):
        (t / name).mkdir()
    (t / "face.png").write_bytes(face(".png"))
    cut(t / "face.png", t / "truncated.png")
    save_verification_bin(t / "small.bin", [face() for _ in range(40)],
                           [n < 10 for n in range(20)])
    cut(t / "small.bin", t / "truncated.bin")
    save_weights(t / "weights.npz", layer_arrays(build_backbone("MobileFaceNet_128", 128)),
                 "MobileFaceNet_128", 128)
    cut(t / "weights.npz", t / "truncated.npz")
    cut(Path(TFLITE.format(s=shared("models").parent)), t / "truncated.tflite")

    images = [face() for _ in range(8)]
    labels = [n // 4 for n in range(8)]
    (t / "faces" / "images").mkdir(parents=True)
    for n, data in enumerate(images):
        (t / "faces" / "images" / f"{n}.jpg").write_bytes(data)
    write_label_file(t / "faces" / "label.txt",
                     [(f"images/{n}.jpg", label) for n, label in enumerate(labels)])
    for name, text in (("empty_labels", ""), ("junk_labels", "images/0.jpg and no label\n")):
        (t / name).mkdir()
        (t / name / "label.txt").write_text(text)
    images_to_packed(t / "faces", t / "packed", progress=False)
    shutil.copytree(t / "packed", t / "truncated_packed")
    shard = next((t / "truncated_packed").glob("data_*.bin"))
    cut(shard, shard)
    write_rec_dataset(t / "rec", labels, images)
    shutil.copytree(t / "rec", t / "truncated_rec")
    cut(t / "truncated_rec" / "train.rec", t / "truncated_rec" / "train.rec")
    verification_bin_to_folder(t / "small.bin", t / "pairs", progress=False)
    (t / "empty_pairs").mkdir()
    (t / "empty_pairs" / "pairs.txt").write_bytes(b"")
    (t / "junk_model").mkdir()  # a model folder's file names around bytes of no model
    (t / "junk_model" / "inference.pdmodel").write_text("not a program")
    (t / "junk_model" / "inference.pdiparams").write_text("not weights")
    (t / "foreign").mkdir()
    (t / "foreign" / "keep.txt").write_text("a user's own file")

    if os.geteuid() == 0:
        unwritable = Path("/sys")  # root writes through permission bits, not into sysfs
    else:
        unwritable = t / "locked"
        unwritable.mkdir()
        unwritable.chmod(0o500)
    yield {"t": str(t), "s": str(shared("models").parent), "u": str(unwritable),
           "r": str(REPO)}
    if unwritable.parent == t:
        unwritable.chmod(0o700)  # let pytest remove it


def fill(template: str, places: Mapping[str, str], out: Path) -> str:
    return template.format(**places, o=out)


def snapshot(path: Path) -> object:
    """What is at `path`: None, a file's bytes, or a folder's files and their bytes."""
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None)
                      for p in path.rglob("*"))
    return None


def run_process(command: Sequence[str], env: Mapping[str, str] | None = None,
                cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`command` must refuse within QUICK_S, before any long work, and leave nothing running."""
    return run_in_session(command, QUICK_S, f"{command} (the refusal did not come first)", cwd,
                          {**os.environ, **(env or {})})


# -- the tools' cases -------------------------------------------------------------------------
def with_changes(defaults: Mapping[str, str], **changes: str | None) -> dict[str, str]:
    """The defaults with some flags changed; None drops one."""
    merged = {**defaults, **changes}
    return {key: value for key, value in merged.items() if value is not None}


@dataclass(frozen=True)
class Tool:
    script: str
    defaults: dict[str, str]
    #: the flags naming what the tool writes, given its flags
    outputs: Callable[[Mapping[str, str]], tuple[str, ...]]


TOOL = {
    "train": Tool("train.py", {"config_file": "{r}/configs/tiny_cpu.py", "output": "{o}/run",
                               "max_steps": "1"}, lambda f: ("output",)),
    "validation": Tool("validation.py", {"model_dir": MOBILEFACE,
                                         "val_targets": "{t}/small.bin",
                                         "json": "{o}/scores.json", "plot": "{o}/roc"},
                       lambda f: ("json", "plot")),
    "export": Tool("export.py", {"checkpoint_dir": "{t}/weights.npz", "backbone":
                                 "MobileFaceNet_128", "embedding_size": "128",
                                 "check_data": "{t}/small.bin", "output_dir": "{o}/exported"},
                   lambda f: ("output_dir",)),
    "inference": Tool("inference.py", {"model_dir": MOBILEFACE, "image_path": "{t}/face.png",
                                       "output": "{o}/embedded"}, lambda f: ("output",)),
    "convert_image_bin": Tool(
        "convert_image_bin.py", {"mode": "image2bin", "image_path": "{t}/faces",
                                 "bin_path": "{o}/packed"},
        lambda f: ("bin_path",) if f["mode"] == "image2bin" else ("image_path",)),
    "convert_verification_bin": Tool(
        "convert_verification_bin.py", {"mode": "bin2image", "bin_path": "{t}/small.bin",
                                        "image_path": "{o}/pairs"},
        lambda f: ("image_path",) if f["mode"] == "bin2image" else ("bin_path",)),
    "mx_recordio_2_images": Tool("mx_recordio_2_images.py", {"root_dir": "{t}/rec",
                                                             "output_dir": "{o}/images"},
                                 lambda f: ("output_dir",)),
    "import_published_mobileface": Tool(
        "import_published_mobileface.py", {"model_dir": MOBILEFACE, "bin_path": "{t}/small.bin",
                                           "output": "{o}/mobileface.npz"},
        lambda f: ("output",)),
    "convert_mediapipe_face": Tool("convert_mediapipe_face.py",
                                   {"source": TFLITE, "output": "{o}/keypoints"},
                                   lambda f: ("output",)),
}


@dataclass(frozen=True)
class Case:
    tool: str
    name: str
    changes: dict[str, str | None]
    #: each must be in the error line ({placeholders} filled)
    expect: tuple[str, ...]
    #: also run as a real process
    process: bool = False
    flags: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", with_changes(TOOL[self.tool].defaults, **self.changes))

    @property
    def id(self) -> str:
        return f"{self.tool}-{self.name}"


def cases(tool: str, table: Sequence[tuple]) -> list[Case]:
    return [Case(tool, name, changes, tuple(expect), *rest)
            for name, changes, expect, *rest in table]


PACK = {"mode": "image2bin"}
UNPACK = {"mode": "bin2image", "bin_path": "{t}/packed", "image_path": "{o}/unpacked"}
TO_IMAGES = {"mode": "bin2image"}
TO_BIN = {"mode": "image2bin", "image_path": "{t}/pairs", "bin_path": "{o}/set.bin"}

CASES = [
    *cases("train", [
        ("data folder missing", {"data_dir": "{t}/missing"},
         ["--data_dir {t}/missing: no such folder"], True),
        ("data folder is a file", {"data_dir": "{t}/plain_file"},
         ["--data_dir {t}/plain_file: is not a folder"]),
        ("data folder empty", {"data_dir": "{t}/empty_dir"},
         ["--data_dir {t}/empty_dir: found no train.rec"]),
        ("label file missing", {"data_dir": "{t}/faces", "label_file": "{t}/missing.txt"},
         ["--label_file {t}/missing.txt: cannot read"]),
        ("label file empty", {"data_dir": "{t}/faces", "label_file": "{t}/empty"},
         ["{t}/empty: no images listed"]),
        ("label file is a folder", {"data_dir": "{t}/faces", "label_file": "{t}/folder.txt"},
         ["--label_file {t}/folder.txt: cannot read (Is a directory)"]),
        ("packed shard truncated", {"data_dir": "{t}/truncated_packed", "num_classes": "2"},
         ["truncated_packed/data_00000.bin", "truncated"]),
        ("config file missing", {"config_file": "{t}/missing.py"},
         ["--config_file", "{t}/missing.py"]),
        ("config file empty", {"config_file": "{t}/empty"},
         ["--data_dir MS1M_v3: no such folder"]),  # empty: base's settings, base's data
        ("config file not python", {"config_file": "{t}/text"},
         ["{t}/text: cannot load config"]),
        ("config file is a folder", {"config_file": "{t}/empty_dir"},
         ["--config_file", "{t}/empty_dir"]),
        ("checkpoint missing", {"checkpoint_dir": "{t}/missing"}, ["{t}/missing/meta.json"]),
        ("checkpoint is a file", {"checkpoint_dir": "{t}/plain_file"}, ["{t}/plain_file"]),
        ("validation set truncated", {"val_dir": "{t}", "val_targets": "truncated",
                                      "validation_interval_step": "1"},
         ["{t}/truncated.bin", "truncated"]),
        ("output is a file", {"output": "{t}/plain_file"},
         ["--output {t}/plain_file: is a file"]),
        ("output under a file", {"output": "{t}/plain_file/run"},
         ["--output {t}/plain_file/run", "not a folder"]),
        ("output unwritable", {"output": "{u}/run"}, ["--output {u}/run: cannot write there"]),
    ]),
    *cases("validation", [
        ("model folder missing", {"model_dir": "{t}/missing"}, ["{t}/missing"]),
        ("model folder empty", {"model_dir": "{t}/empty_dir"},
         ["{t}/empty_dir: no model found"]),
        ("model folder is a file", {"model_dir": "{t}/plain_file"},
         ["{t}/plain_file: not a model file"]),
        ("model files not a model", {"model_dir": "{t}/junk_model"},
         ["junk_model/inference.pdmodel", "corrupt model graph"]),
        ("checkpoint missing", {"model_dir": None, "checkpoint_dir": "{t}/missing"},
         ["--checkpoint_dir {t}/missing"]),
        ("checkpoint empty", {"model_dir": None, "checkpoint_dir": "{t}/empty"},
         ["{t}/empty: not a weights file"]),
        ("checkpoint not weights", {"model_dir": None, "checkpoint_dir": "{t}/text"},
         ["{t}/text: not a weights file"]),
        ("checkpoint truncated", {"model_dir": None, "checkpoint_dir": "{t}/truncated.npz"},
         ["{t}/truncated.npz: not a weights file, or truncated"]),
        ("set missing", {"val_targets": "{t}/missing.bin"},
         ["--val_targets {t}/missing.bin: no such file"]),
        ("set empty", {"val_targets": "{t}/empty"}, ["{t}/empty"]),
        ("set not a set", {"val_targets": "{t}/text"}, ["{t}/text: not a readable pickle"]),
        ("set truncated", {"val_targets": "{t}/truncated.bin"},
         ["{t}/truncated.bin", "truncated"]),
        ("set is a folder", {"val_targets": "{t}/folder.bin"},
         ["--val_targets {t}/folder.bin: is a folder"]),
        ("data folder missing", {"val_targets": "lfw", "data_dir": "{t}/missing"},
         ["--data_dir {t}/missing: no such folder"]),
        ("data folder is a file", {"val_targets": "lfw", "data_dir": "{t}/plain_file"},
         ["--data_dir {t}/plain_file: is not a folder"]),
        ("json is a folder", {"val_targets": LFW, "json": "{t}/folder.txt"},
         ["--json {t}/folder.txt: is a folder"]),
        ("json under a file", {"val_targets": LFW, "json": "{t}/plain_file/scores.json"},
         ["--json {t}/plain_file/scores.json", "not a folder"]),
        ("json unwritable", {"val_targets": LFW, "json": "{u}/scores.json"},
         ["--json {u}/scores.json: cannot write there"], True),
        ("plot is a file", {"val_targets": LFW, "plot": "{t}/plain_file"},
         ["--plot {t}/plain_file: is a file"]),
        ("plot under a file", {"val_targets": LFW, "plot": "{t}/plain_file/roc"},
         ["--plot {t}/plain_file/roc", "not a folder"]),
        ("plot unwritable", {"val_targets": LFW, "plot": "{u}/roc"},
         ["--plot {u}/roc: cannot write there"]),
    ]),
    *cases("export", [
        ("checkpoint missing", {"checkpoint_dir": "{t}/missing"},
         ["--checkpoint_dir {t}/missing: no checkpoint there"]),
        ("checkpoint empty", {"checkpoint_dir": "{t}/empty"}, ["{t}/empty: not a weights"]),
        ("checkpoint not weights", {"checkpoint_dir": "{t}/text"}, ["{t}/text: not a weights"]),
        ("checkpoint truncated", {"checkpoint_dir": "{t}/truncated.npz"},
         ["{t}/truncated.npz: not a weights file, or truncated"]),
        ("checkpoint folder empty", {"checkpoint_dir": "{t}/empty_dir"},
         ["--checkpoint_dir {t}/empty_dir: no checkpoint there"]),
        ("model folder is a file", {"checkpoint_dir": None, "model_dir": "{t}/plain_file",
                                    "export_type": "onnx"}, ["--model_dir", "{t}/plain_file"]),
        ("model files not a model", {"checkpoint_dir": None, "model_dir": "{t}/junk_model",
                                     "export_type": "onnx"},
         ["--model_dir", "junk_model/inference.pdmodel"]),
        ("check data missing", {"check_data": "{t}/missing"},
         ["--check_data {t}/missing: no such file or folder"]),
        ("check data missing, model folder", {"checkpoint_dir": None, "model_dir": MOBILEFACE,
                                              "export_type": "onnx", "check_data":
                                              "{t}/missing"},
         ["--check_data {t}/missing: no such file or folder"], True),
        ("check data empty", {"check_data": "{t}/empty"}, ["{t}/empty"]),
        ("check data not a set", {"check_data": "{t}/text"}, ["{t}/text: not a readable"]),
        ("check data truncated", {"check_data": "{t}/truncated.bin"},
         ["{t}/truncated.bin", "truncated"]),
        ("check data folder without faces", {"check_data": "{t}/empty_dir"},
         ["--check_data {t}/empty_dir: no images"]),
        ("output is a file", {"output_dir": "{t}/plain_file"},
         ["--output_dir {t}/plain_file: is a file"]),
        ("output under a file", {"output_dir": "{t}/plain_file/exported"},
         ["--output_dir {t}/plain_file/exported", "not a folder"]),
        ("output unwritable", {"output_dir": "{u}/exported"},
         ["--output_dir {u}/exported: cannot write there"]),
    ]),
    *cases("inference", [
        ("image missing", {"image_path": "{t}/missing.png"},
         ["--image_path {t}/missing.png: no such file"]),
        ("image empty", {"image_path": "{t}/empty"}, ["--image_path {t}/empty: empty file"]),
        ("image not an image", {"image_path": "{t}/text"},
         ["--image_path {t}/text: not an image"]),
        ("image truncated", {"image_path": "{t}/truncated.png"},
         ["--image_path {t}/truncated.png: not an image"], True),
        ("image folder empty", {"image_path": "{t}/empty_dir"},
         ["--image_path {t}/empty_dir: no images"]),
        ("model folder missing", {"model_dir": "{t}/missing"}, ["{t}/missing"]),
        ("model folder empty", {"model_dir": "{t}/empty_dir"},
         ["{t}/empty_dir: no model found"]),
        ("model folder is a file", {"model_dir": "{t}/plain_file"},
         ["{t}/plain_file: not a model file"]),
        ("model files not a model", {"model_dir": "{t}/junk_model"},
         ["junk_model/inference.pdmodel", "corrupt model graph"]),
        ("onnx file empty", {"model_dir": None, "export_type": "onnx", "onnx_file": "{t}/empty"},
         ["{t}/empty"]),
        ("onnx file is a folder", {"model_dir": None, "export_type": "onnx",
                                   "onnx_file": "{t}/empty_dir"}, ["{t}/empty_dir"]),
        ("output is a file", {"output": "{t}/plain_file"},
         ["--output {t}/plain_file: is a file"]),
        ("output under a file", {"output": "{t}/plain_file/embedded"},
         ["--output {t}/plain_file/embedded", "not a folder"]),
        ("output unwritable", {"output": "{u}/embedded"},
         ["--output {u}/embedded: cannot write there"]),
    ]),
    *cases("convert_image_bin", [
        ("image2bin folder missing", {**PACK, "image_path": "{t}/missing"},
         ["{t}/missing/label.txt: missing"]),
        ("image2bin folder is a file", {**PACK, "image_path": "{t}/plain_file"},
         ["{t}/plain_file/label.txt"]),
        ("image2bin folder empty", {**PACK, "image_path": "{t}/empty_dir"},
         ["{t}/empty_dir/label.txt: missing"]),
        ("image2bin label file empty", {**PACK, "image_path": "{t}/empty_labels"},
         ["{t}/empty_labels/label.txt: no images listed"]),
        ("image2bin label file not a label file", {**PACK, "image_path": "{t}/junk_labels"},
         ["{t}/junk_labels/label.txt: line 1: expected"]),
        ("image2bin output is a file", {**PACK, "bin_path": "{t}/plain_file"},
         ["{t}/plain_file: is a file"]),
        ("image2bin output under a file", {**PACK, "bin_path": "{t}/plain_file/packed"},
         ["{t}/plain_file/packed", "not a folder"]),
        ("image2bin output unwritable", {**PACK, "bin_path": "{u}/packed"},
         ["{u}/packed: cannot write there"]),
        ("bin2image packed folder missing", {**UNPACK, "bin_path": "{t}/missing"},
         ["{t}/missing/meta.json: missing"]),
        ("bin2image packed folder empty", {**UNPACK, "bin_path": "{t}/empty_dir"},
         ["{t}/empty_dir/meta.json: missing"]),
        ("bin2image packed folder is a file", {**UNPACK, "bin_path": "{t}/plain_file"},
         ["{t}/plain_file/meta.json"]),
        ("bin2image shard truncated", {**UNPACK, "bin_path": "{t}/truncated_packed"},
         ["truncated_packed/data_00000.bin", "truncated"]),
        ("bin2image output is a file", {**UNPACK, "image_path": "{t}/plain_file"},
         ["{t}/plain_file: is a file"], True),
        ("bin2image output under a file", {**UNPACK, "image_path": "{t}/plain_file/unpacked"},
         ["{t}/plain_file/unpacked", "not a folder"]),
        ("bin2image output unwritable", {**UNPACK, "image_path": "{u}/unpacked"},
         ["{u}/unpacked: cannot write there"]),
    ]),
    *cases("convert_verification_bin", [
        ("bin2image set missing", {**TO_IMAGES, "bin_path": "{t}/missing.bin"},
         ["{t}/missing.bin"]),
        ("bin2image set empty", {**TO_IMAGES, "bin_path": "{t}/empty"}, ["{t}/empty"]),
        ("bin2image set not a set", {**TO_IMAGES, "bin_path": "{t}/text"},
         ["{t}/text: not a readable pickle"]),
        ("bin2image set truncated", {**TO_IMAGES, "bin_path": "{t}/truncated.bin"},
         ["{t}/truncated.bin", "truncated"], True),
        ("bin2image set is a folder", {**TO_IMAGES, "bin_path": "{t}/folder.bin"},
         ["{t}/folder.bin", "Is a directory"]),
        ("bin2image output is a file", {**TO_IMAGES, "image_path": "{t}/plain_file"},
         ["{t}/plain_file: is a file"]),
        ("bin2image output under a file", {**TO_IMAGES, "image_path": "{t}/plain_file/pairs"},
         ["{t}/plain_file/pairs", "not a folder"]),
        ("bin2image output unwritable", {**TO_IMAGES, "image_path": "{u}/pairs"},
         ["{u}/pairs: cannot write there"]),
        ("image2bin folder missing", {**TO_BIN, "image_path": "{t}/missing"},
         ["{t}/missing/pairs.txt: missing"]),
        ("image2bin folder is a file", {**TO_BIN, "image_path": "{t}/plain_file"},
         ["{t}/plain_file/pairs.txt"]),
        ("image2bin folder empty", {**TO_BIN, "image_path": "{t}/empty_dir"},
         ["{t}/empty_dir/pairs.txt: missing"]),
        ("image2bin pairs file empty", {**TO_BIN, "image_path": "{t}/empty_pairs"},
         ["{t}/empty_pairs/pairs.txt: holds no pairs"]),
        ("image2bin output is a folder", {**TO_BIN, "bin_path": "{t}/folder.bin"},
         ["{t}/folder.bin: is a folder"]),
        ("image2bin output under a file", {**TO_BIN, "bin_path": "{t}/plain_file/set.bin"},
         ["{t}/plain_file/set.bin", "not a folder"]),
        ("image2bin output unwritable", {**TO_BIN, "bin_path": "{u}/set.bin"},
         ["{u}/set.bin: cannot write there"]),
    ]),
    *cases("mx_recordio_2_images", [
        ("dataset folder missing", {"root_dir": "{t}/missing"}, ["{t}/missing/property"]),
        ("dataset folder is a file", {"root_dir": "{t}/plain_file"}, ["{t}/plain_file"]),
        ("dataset folder empty", {"root_dir": "{t}/empty_dir"}, ["{t}/empty_dir/property"]),
        ("record file truncated", {"root_dir": "{t}/truncated_rec"},
         ["truncated_rec/train.rec"]),
        ("output is a file", {"output_dir": "{t}/plain_file"},
         ["--output_dir {t}/plain_file: is a file"]),
        ("output under a file", {"output_dir": "{t}/plain_file/images"},
         ["--output_dir {t}/plain_file/images", "not a folder"]),
        ("output unwritable", {"output_dir": "{u}/images"},
         ["--output_dir {u}/images: cannot write there"], True),
    ]),
    *cases("import_published_mobileface", [
        ("model folder missing", {"model_dir": "{t}/missing"}, ["{t}/missing: no inference"]),
        ("model folder is a file", {"model_dir": "{t}/plain_file"},
         ["{t}/plain_file: no inference"]),
        ("model folder empty", {"model_dir": "{t}/empty_dir"},
         ["{t}/empty_dir: no inference"]),
        ("model files not a model", {"model_dir": "{t}/junk_model"},
         ["{t}/junk_model: cannot read the legacy model"]),
        ("set missing", {"bin_path": "{t}/missing.bin"}, ["{t}/missing.bin"]),
        ("set empty", {"bin_path": "{t}/empty"}, ["{t}/empty"]),
        ("set not a set", {"bin_path": "{t}/text"}, ["{t}/text: not a readable pickle"]),
        ("set truncated", {"bin_path": "{t}/truncated.bin"}, ["{t}/truncated.bin", "truncated"]),
        ("set is a folder", {"bin_path": "{t}/folder.bin"}, ["{t}/folder.bin"]),
        ("output is a folder", {"bin_path": LFW, "output": "{t}/folder.npz"},
         ["--output {t}/folder.npz: is a folder"]),
        ("output under a file", {"bin_path": LFW, "output": "{t}/plain_file/mobileface.npz"},
         ["--output {t}/plain_file/mobileface.npz", "not a folder"]),
        ("output unwritable", {"bin_path": LFW, "output": "{u}/mobileface.npz"},
         ["--output {u}/mobileface.npz: cannot write there"], True),
    ]),
    *cases("convert_mediapipe_face", [
        ("source missing", {"source": "{t}/missing.tflite"},
         ["{t}/missing.tflite: no such file"]),
        ("source empty", {"source": "{t}/empty"}, ["{t}/empty: sha256"]),
        ("source not the model", {"source": "{t}/text"}, ["{t}/text: sha256"]),
        ("source truncated", {"source": "{t}/truncated.tflite"}, ["{t}/truncated.tflite: sha256"]),
        ("source is a folder", {"source": "{t}/folder.tflite"}, ["{t}/folder.tflite"]),
        ("output is a file", {"output": "{t}/plain_file"},
         ["--output {t}/plain_file: is a file"], True),
        ("output under a file", {"output": "{t}/plain_file/keypoints"},
         ["--output {t}/plain_file/keypoints", "not a folder"]),
        ("output unwritable", {"output": "{u}/keypoints"},
         ["--output {u}/keypoints: cannot write there"]),
        ("output is a user's folder", {"output": "{t}/foreign"},
         ["--output {t}/foreign: a folder that is not a BlazeFaceKeypoints model"]),
    ]),
]


@cache
def tool_main(tool: str) -> Callable[[Sequence[str] | None], int | None]:
    """The tool's `main`, its module run once as it is from the command line."""
    return runpy.run_path(str(TOOLS / TOOL[tool].script), run_name=f"hostile_{tool}")["main"]


def prepared(case: Case, places: Mapping[str, str], out: Path
             ) -> tuple[list[str], list[str], dict[Path, object]]:
    """-> (argv, the fragments the line must hold, what is at each output path now)."""
    filled = {key: fill(value, places, out) for key, value in case.flags.items()}
    argv = [part for key, value in filled.items() for part in (f"--{key}", value)]
    outputs = [Path(filled[key]) for key in TOOL[case.tool].outputs(filled) if key in filled]
    return argv, [fill(f, places, out) for f in case.expect], {p: snapshot(p) for p in outputs}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_tool_refuses_in_one_line_before_any_work(case, places, tmp_path, capsys):
    argv, expect, before = prepared(case, places, tmp_path)
    main = tool_main(case.tool)
    capsys.readouterr()
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        run_main(main, argv)
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert_refused(exit_.value.code, out, err, expect)
    assert {path: snapshot(path) for path in before} == before, "the output path changed"
    assert elapsed < QUICK_S, f"refused after {elapsed:.0f} s: the work came first"


PROCESS_CASES = [case for case in CASES if case.process]


def test_every_tool_also_runs_as_a_process():
    assert {case.tool for case in PROCESS_CASES} == set(TOOL)


@pytest.mark.parametrize("case", PROCESS_CASES, ids=[case.id for case in PROCESS_CASES])
def test_tool_process_refuses_in_one_line_before_any_work(case, places, tmp_path):
    """The same, from the command line: no import-time warning, no native library's line
    (libpng on a truncated image, Paddle's glog), no progress bar in a pipe, exit status 1."""
    argv, expect, before = prepared(case, places, tmp_path)
    result = run_process([sys.executable, str(TOOLS / TOOL[case.tool].script), *argv])
    assert_refused(result.returncode, result.stdout, result.stderr, expect)
    assert {path: snapshot(path) for path in before} == before, "the output path changed"


# -- the CLI: `python -m insightface_paddle` and the console script -----------------------------
CLI_CASES = {
    "input missing": (["--det", "--input", "{t}/missing.png"], ["{t}/missing.png"]),
    "input empty": (["--det", "--input", "{t}/empty"], ["{t}/empty", "empty file"]),
    "input not an image": (["--det", "--input", "{t}/text"], ["{t}/text", "not an image"]),
    "input truncated": (["--det", "--input", "{t}/truncated.png"], ["{t}/truncated.png"]),
    "index is a folder": (["--det", "--rec", "--index", "{t}/folder.npz", "--input",
                           "{t}/face.png"], ["{t}/folder.npz"]),
    "gallery is a file": (["--build_index", "{o}/index.npz", "--img_dir", "{t}/plain_file"],
                          ["{t}/plain_file"]),
    "output under a file": (["--det", "--input", "{t}/face.png", "--output",
                             "{t}/plain_file/drawn"], ["--output", "{t}/plain_file"]),
    "index unwritable": (["--build_index", "{u}/index.npz", "--img_dir", "{t}/faces"],
                         ["--build_index", "{u}"]),
}
#: the paths each case must leave as they were
CLI_OUTPUTS = ["{o}/index.npz", "{t}/plain_file", "{u}/index.npz"]


@pytest.fixture(scope="module")
def console_script(tmp_path_factory) -> Path:
    """What pip installs for setup.py's `console_scripts` entry (tests/test_wheel.py installs
    the wheel itself, which takes a build)."""
    declared = re.search(r'"console_scripts":\s*\[\s*"(\w+)\s*=\s*([\w.]+):(\w+)"',
                         (REPO / "setup.py").read_text())
    assert declared is not None, "setup.py declares no console script"
    name, module, function = declared.groups()
    assert name == "insightfacepaddle"
    script = tmp_path_factory.mktemp("bin") / name
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n"
                      f"if __name__ == '__main__':\n    sys.exit({function}())\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("entry", ["module", "console script"])
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_in_one_line_before_any_model(case, entry, places, tmp_path,
                                                  console_script):
    argv, expect = CLI_CASES[case]
    outputs = [Path(fill(p, places, tmp_path)) for p in CLI_OUTPUTS]
    before = {path: snapshot(path) for path in outputs}
    command = ([sys.executable, "-m", "insightface_paddle"] if entry == "module"
               else [str(console_script)])
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # no model may load: an empty cache that cannot download
    result = run_process([*command, *(fill(a, places, tmp_path) for a in argv)],
                         env={"PYTHONPATH": str(REPO),
                              "INSIGHTFACE_PADDLE_HOME": str(tmp_path / "cache"),
                              "INSIGHTFACE_PADDLE_MODEL_URL": "http://127.0.0.1:9/{}.tar"},
                         cwd=elsewhere)
    assert_refused(result.returncode, result.stdout, result.stderr,
                   [fill(f, places, tmp_path) for f in expect])
    assert {path: snapshot(path) for path in outputs} == before
    assert not (tmp_path / "cache").exists()


# -- the shell scripts ------------------------------------------------------------------------
WEIGHTS_ENV = {"CHECKPOINT_DIR": "{t}/weights.npz", "BACKBONE": "MobileFaceNet_128",
               "EMBEDDING_SIZE": "128"}
#: script -> case -> (environment, arguments, fragments of the line, paths left as they were)
SCRIPT_CASES = {
    "validation_dynamic.sh": {
        "checkpoint missing": ({"CHECKPOINT_DIR": "{t}/missing", "DATA_DIR": "{t}",
                                "VAL_TARGETS": "small"}, [], ["--checkpoint_dir {t}/missing"],
                               []),
        "json under a file": ({**WEIGHTS_ENV, "DATA_DIR": "{s}/data", "VAL_TARGETS": "lfw"},
                              ["--json", "{t}/plain_file/scores.json"],
                              ["--json {t}/plain_file/scores.json"], ["{t}/plain_file"]),
    },
    "validation_static.sh": {
        "set truncated": ({**WEIGHTS_ENV, "VAL_TARGETS": "{t}/truncated.bin"}, [],
                          ["{t}/truncated.bin"], []),
        "plot unwritable": ({**WEIGHTS_ENV, "DATA_DIR": "{s}/data", "VAL_TARGETS": "lfw"},
                            ["--plot", "{u}/roc"], ["--plot {u}/roc"], ["{u}/roc"]),
    },
    "export_dynamic.sh": {
        "checkpoint empty": ({"CHECKPOINT_DIR": "{t}/empty", "OUTPUT_DIR": "{o}/exported"}, [],
                             ["{t}/empty"], ["{o}/exported"]),
        "output under a file": ({**WEIGHTS_ENV, "OUTPUT_DIR": "{t}/plain_file/exported",
                                 "CHECK_DATA": "{t}/small.bin"}, [],
                                ["--output_dir {t}/plain_file/exported"], ["{t}/plain_file"]),
    },
    "export_static.sh": {
        "check data not a set": ({**WEIGHTS_ENV, "OUTPUT_DIR": "{o}/exported",
                                  "CHECK_DATA": "{t}/text"}, [], ["{t}/text"],
                                 ["{o}/exported"]),
        "output unwritable": ({**WEIGHTS_ENV, "OUTPUT_DIR": "{u}/exported"}, [],
                              ["--output_dir {u}/exported"], ["{u}/exported"]),
    },
    "inference.sh": {
        "image truncated": ({"MODEL_DIR": MOBILEFACE, "IMAGE_PATH": "{t}/truncated.png"},
                            ["--output", "{o}/embedded"], ["{t}/truncated.png"],
                            ["{o}/embedded"]),
        "output is a file": ({"MODEL_DIR": MOBILEFACE, "IMAGE_PATH": "{t}/face.png"},
                             ["--output", "{t}/plain_file"], ["--output {t}/plain_file"],
                             ["{t}/plain_file"]),
    },
    "train_dynamic.sh": {
        "data folder missing": ({}, ["--data_dir", "{t}/missing", "--output", "{o}/run"],
                                ["--data_dir {t}/missing"], ["{o}/run"]),
        "output under a file": ({}, ["--output", "{t}/plain_file/run"],
                                ["--output {t}/plain_file/run"], ["{t}/plain_file"]),
    },
    "train_static.sh": {
        "data folder is a file": ({}, ["--data_dir", "{t}/plain_file", "--output", "{o}/run"],
                                  ["--data_dir {t}/plain_file"], ["{o}/run"]),
        "output unwritable": ({}, ["--output", "{u}/run"], ["--output {u}/run"], ["{u}/run"]),
        "config missing": ({"CONFIG": "{t}/missing.py"}, ["--output", "{o}/run"],
                           ["{t}/missing.py"], ["{o}/run"]),
    },
}
SCRIPTS = [(script, case) for script, table in SCRIPT_CASES.items() for case in table]


def test_every_thin_script_is_covered():
    thin = {p.name for p in (REPO / "scripts").glob("*.sh")} - {"demo.sh", "launch_train.sh"}
    assert set(SCRIPT_CASES) == thin


@pytest.mark.parametrize("script, case", SCRIPTS, ids=[f"{s}-{c}" for s, c in SCRIPTS])
def test_script_refuses_in_one_line_before_any_work(script, case, places, tmp_path):
    env, args, expect, untouched = SCRIPT_CASES[script][case]
    outputs = [Path(fill(p, places, tmp_path)) for p in untouched]
    before = {path: snapshot(path) for path in outputs}
    result = run_process(["sh", str(REPO / "scripts" / script),
                          *(fill(a, places, tmp_path) for a in args)],
                         env={"DEVICE": "cpu", "NPROC": "2",
                              **{k: fill(v, places, tmp_path) for k, v in env.items()}})
    assert_refused(result.returncode, result.stdout, result.stderr,
                   [fill(f, places, tmp_path) for f in expect], exit_code=None)
    assert {path: snapshot(path) for path in outputs} == before
