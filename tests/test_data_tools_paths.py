"""The three data tools against paths the machine refuses (issue 10, item 13, the `OSError`
part): an output that is an existing file, an output under a file, and a folder where the tool
reads a file. Each ends with one `error: ...` line on stderr, exit 1, no traceback, and leaves
every file and folder as it was: nothing created, nothing changed, no temporary left behind.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from arcface_paddle.data.convert_packed import images_to_packed
from arcface_paddle.data.label_file import write_label_file
from arcface_paddle.data.recordio import write_rec_dataset
from arcface_paddle.data.verification_bin import save_verification_bin
from dist_scripts.launching import clean_env

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


def small_pngs(count: int) -> list[bytes]:
    """Distinct decodable images (verification sets are decoded when built)."""
    rng = np.random.default_rng(5)
    return [cv2.imencode(".png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))[1].tobytes()
            for _ in range(count)]


def image_folder(root: Path) -> Path:
    """label.txt and eight images of four classes."""
    (root / "images").mkdir(parents=True)
    entries = []
    for i, data in enumerate(small_pngs(8)):
        (root / "images" / f"{i}.png").write_bytes(data)
        entries.append((f"images/{i}.png", i % 4))
    write_label_file(root / "label.txt", entries)
    return root


def pairs_folder(root: Path) -> Path:
    """pairs.txt naming ten pairs (the fewest a set may hold) and their twenty images."""
    (root / "images").mkdir(parents=True)
    lines = []
    for i, data in enumerate(small_pngs(20)):
        (root / "images" / f"{i}.png").write_bytes(data)
    for n in range(10):
        lines.append(f"images/{2 * n}.png\timages/{2 * n + 1}.png\t{n % 2}\n")
    (root / "pairs.txt").write_text("".join(lines))
    return root


# -- each tool and mode: (build its input under tmp -> (flags but the output, output flag),
#    make the file it reads a folder -> the flags that point at it) ----------------------------
def _rec_input(tmp: Path) -> list[str]:
    payloads = small_pngs(6)
    write_rec_dataset(tmp / "faces", [0, 0, 1, 1, 2, 2], iter(payloads))
    (tmp / "faces" / "property").write_text("3,16,16\n")
    return ["--root_dir", str(tmp / "faces")]


def _rec_folder_for_file(tmp: Path) -> list[str]:
    flags = _rec_input(tmp)
    rec = tmp / "faces" / "train.rec"
    rec.unlink()
    rec.mkdir()
    return flags


def _images_input(tmp: Path) -> list[str]:
    return ["--image_path", str(image_folder(tmp / "faces")), "--mode", "image2bin"]


def _images_folder_for_file(tmp: Path) -> list[str]:
    flags = _images_input(tmp)
    listed = tmp / "faces" / "images" / "5.png"  # packing has begun when it meets this one
    listed.unlink()
    listed.mkdir()
    return flags


def _packed_input(tmp: Path) -> list[str]:
    images_to_packed(image_folder(tmp / "faces"), tmp / "packed", progress=False)
    shutil.rmtree(tmp / "faces")
    return ["--bin_path", str(tmp / "packed"), "--mode", "bin2image"]


def _packed_folder_for_file(tmp: Path) -> list[str]:
    flags = _packed_input(tmp)
    shard = tmp / "packed" / "data_00000.bin"
    shard.unlink()
    shard.mkdir()
    return flags


def _bin_input(tmp: Path) -> list[str]:
    save_verification_bin(tmp / "lfw.bin", small_pngs(20), [n % 2 == 0 for n in range(10)])
    return ["--bin_path", str(tmp / "lfw.bin"), "--mode", "bin2image"]


def _bin_folder_for_file(tmp: Path) -> list[str]:
    (tmp / "lfw.bin").mkdir()
    return ["--bin_path", str(tmp / "lfw.bin"), "--mode", "bin2image"]


def _pairs_input(tmp: Path) -> list[str]:
    return ["--image_path", str(pairs_folder(tmp / "pairs")), "--mode", "image2bin"]


def _pairs_folder_for_file(tmp: Path) -> list[str]:
    (tmp / "mine.bin").mkdir()  # the output: a folder where the .bin is to be written
    return [*_pairs_input(tmp), "--bin_path", str(tmp / "mine.bin")]


#: id -> (tool, input builder, output flag, builder of the folder-for-a-file case)
TOOL_MODES = {
    "mx_recordio_2_images": ("mx_recordio_2_images.py", _rec_input, "--output_dir",
                             _rec_folder_for_file),
    "convert_image_bin image2bin": ("convert_image_bin.py", _images_input, "--bin_path",
                                    _images_folder_for_file),
    "convert_image_bin bin2image": ("convert_image_bin.py", _packed_input, "--image_path",
                                    _packed_folder_for_file),
    "convert_verification_bin bin2image": ("convert_verification_bin.py", _bin_input,
                                           "--image_path", _bin_folder_for_file),
    "convert_verification_bin image2bin": ("convert_verification_bin.py", _pairs_input,
                                           "--bin_path", _pairs_folder_for_file),
}


def _output_is_a_file(tmp: Path, build, output_flag: str, folder_for_file) -> list[str]:
    target = tmp / "target"
    target.write_bytes(b"a file the user keeps\n")
    return [*build(tmp), output_flag, str(target)]


def _output_under_a_file(tmp: Path, build, output_flag: str, folder_for_file) -> list[str]:
    (tmp / "target").write_bytes(b"a file the user keeps\n")
    return [*build(tmp), output_flag, str(tmp / "target" / "sub")]


def _folder_where_a_file_is_expected(tmp: Path, build, output_flag: str,
                                     folder_for_file) -> list[str]:
    flags = folder_for_file(tmp)
    if output_flag not in flags:
        flags += [output_flag, str(tmp / "out")]
    return flags


CASES = {
    "output is a file": _output_is_a_file,
    "output under a file": _output_under_a_file,
    "folder where a file is expected": _folder_where_a_file_is_expected,
}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` -> "dir" or the sha256 of the file's bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        state[relative] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()
                                                                        ).hexdigest()
    return state


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("tool_mode", list(TOOL_MODES))
def test_a_path_the_machine_refuses_gives_one_line_and_writes_nothing(tmp_path, tool_mode,
                                                                      case):
    tool, build, output_flag, folder_for_file = TOOL_MODES[tool_mode]
    flags = CASES[case](tmp_path, build, output_flag, folder_for_file)
    before = snapshot(tmp_path)
    result = subprocess.run([sys.executable, str(TOOLS / tool), *flags], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    shown = f"{tool} {' '.join(flags)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert str(tmp_path) in lines[0], shown  # names the path it could not use
    assert snapshot(tmp_path) == before, shown
