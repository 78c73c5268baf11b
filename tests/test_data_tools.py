"""rec -> images conversion (lossless, parallel, resumable, checked) and label.txt."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from arcface_paddle.data.convert_recordio import recordio_to_images
from arcface_paddle.data.label_file import read_label_file, write_label_file
from arcface_paddle.data.recordio import RecFaceReader, write_rec_dataset
from arcface_paddle.data.verification_bin import save_verification_bin
from arcface_paddle.errors import ArcFaceError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "recordio"
GOLDEN = json.loads((FIXTURES / "golden.json").read_text())
TOOL = [sys.executable, str(REPO / "tools" / "mx_recordio_2_images.py")]


def golden_dataset(folder: Path) -> Path:
    """The MXNet-written fixture as an insightface folder, with two verification sets."""
    folder.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "golden.rec", folder / "train.rec")
    shutil.copyfile(FIXTURES / "golden.idx", folder / "train.idx")
    (folder / "property").write_text("3,16,16\n")
    face = b"\xff\xd8\xff\xe0face"
    save_verification_bin(folder / "lfw.bin", [face, face], [True])
    save_verification_bin(folder / "my_photos.bin", [face] * 4, [True, False])
    return folder


def fake_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """JPEG-signed payloads of varied length (the converter never decodes them)."""
    rng = np.random.default_rng(seed)
    return [b"\xff\xd8\xff\xe0" + rng.bytes(int(rng.integers(100, 400))) for _ in range(count)]


def finished(images: Path) -> list[str]:
    """Files under their final names (temporaries start with a dot)."""
    return [name for name in os.listdir(images) if not name.startswith(".")]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


@pytest.mark.parametrize("num_workers", [1, 2])
def test_golden_rec_to_images_keeps_the_bytes(tmp_path, num_workers):
    root = golden_dataset(tmp_path / "faces")
    out = tmp_path / "out"
    summary = recordio_to_images(root, out, num_workers=num_workers, progress=False)
    assert (summary.images, summary.identities, summary.num_classes) == (7, 3, 3)
    assert (summary.identity_records, summary.written, summary.skipped) == (3, 7, 0)
    assert summary.verification_sets == ["lfw.bin", "my_photos.bin"]

    entries = read_label_file(out / "label.txt")
    assert entries == [(f"images/{k:08d}.jpg", label) for k, label in
                       zip(range(1, 8), [0, 0, 0, 1, 1, 2, 2], strict=True)]
    by_key = {e["key"]: e["payload_sha256"] for e in GOLDEN["records"]}
    for k in range(1, 8):  # MXNet's own payload bytes, including embedded magics and padding
        data = (out / f"images/{k:08d}.jpg").read_bytes()
        assert hashlib.sha256(data).hexdigest() == by_key[k]
    for name in ("lfw.bin", "my_photos.bin"):
        assert (out / name).read_bytes() == (root / name).read_bytes()
    written = json.loads((out / "summary.json").read_text())
    assert written["format_version"] == 1
    assert (written["images"], written["identities"]) == (7, 3)

    again = recordio_to_images(root, out, num_workers=num_workers, progress=False)
    assert (again.written, again.skipped) == (0, 7)


def test_rec_without_idx_converts_the_same(tmp_path):
    root = golden_dataset(tmp_path / "faces")
    (root / "train.idx").unlink()
    recordio_to_images(root, tmp_path / "out", progress=False)
    reader = RecFaceReader(root)
    for i in range(len(reader)):
        data, _ = reader[i]
        assert (tmp_path / "out" / f"images/{reader.key(i):08d}.jpg").read_bytes() == data


def test_damaged_image_file_is_rewritten(tmp_path):
    root = golden_dataset(tmp_path / "faces")
    out = tmp_path / "out"
    recordio_to_images(root, out, progress=False)
    original = (out / "images/00000004.jpg").read_bytes()
    (out / "images/00000004.jpg").write_bytes(original[:100])
    again = recordio_to_images(root, out, progress=False)
    assert (again.written, again.skipped) == (1, 6)
    assert (out / "images/00000004.jpg").read_bytes() == original


@pytest.mark.slow
def test_killed_conversion_resumes_and_leaves_no_partial_file(tmp_path):
    payloads = fake_jpegs(6000)
    labels = np.repeat(np.arange(60), 100)
    write_rec_dataset(tmp_path / "faces", labels, iter(payloads))
    out = tmp_path / "out"
    process = subprocess.Popen([*TOOL, "--root_dir", str(tmp_path / "faces"), "--output_dir",
                                str(out), "--num_workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            images = out / "images"
            if images.is_dir() and len(finished(images)) >= 300:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the conversion ended before it could be interrupted"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the tool and its workers, mid-write
        process.wait()
    assert not (out / "label.txt").exists() and not (out / "summary.json").exists()
    done_before = len(finished(out / "images"))
    assert 300 <= done_before < 6000

    summary = recordio_to_images(tmp_path / "faces", out, num_workers=2, progress=False)
    assert summary.skipped == done_before  # every file under its final name was complete
    assert summary.written + summary.skipped == 6000
    assert leftovers(out) == []
    for i in (0, 1234, 5999):
        assert (out / f"images/{i + 1:08d}.jpg").read_bytes() == payloads[i]
    assert [label for _, label in read_label_file(out / "label.txt")] == labels.tolist()


# -- bad input: each named, nothing half-written ------------------------------------------------

def assert_nothing_finished(out: Path) -> None:
    assert not (out / "label.txt").exists() and not (out / "summary.json").exists()
    assert leftovers(out) == []


def test_not_an_image_record_is_named(tmp_path):
    payloads = fake_jpegs(5)
    payloads[3] = b"<html>this record holds a web page</html>"
    write_rec_dataset(tmp_path / "faces", [0, 0, 1, 1, 1], iter(payloads))
    with pytest.raises(ArcFaceError, match=r"train\.rec: record key 4: not an encoded image"):
        recordio_to_images(tmp_path / "faces", tmp_path / "out", progress=False)
    assert_nothing_finished(tmp_path / "out")


def test_truncated_rec_is_named(tmp_path):
    write_rec_dataset(tmp_path / "faces", [0, 1, 2], iter(fake_jpegs(3)))
    rec = tmp_path / "faces" / "train.rec"
    cut = RecFaceReader(tmp_path / "faces").records.position(3) + 100  # inside image 3
    (tmp_path / "faces" / "train.idx").unlink()
    rec.write_bytes(rec.read_bytes()[:cut])
    with pytest.raises(ArcFaceError, match=rf"train\.rec: record 3: truncated at byte {cut}"):
        recordio_to_images(tmp_path / "faces", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # found while indexing, before anything is written


def test_wrong_magic_is_named(tmp_path):
    write_rec_dataset(tmp_path / "faces", [0, 1, 2], iter(fake_jpegs(3)))
    rec = tmp_path / "faces" / "train.rec"
    position = RecFaceReader(tmp_path / "faces").records.position(2)
    data = bytearray(rec.read_bytes())
    data[position] ^= 0x55
    rec.write_bytes(bytes(data))
    with pytest.raises(ArcFaceError, match=rf"record key 2: bad magic .* at byte {position}"):
        recordio_to_images(tmp_path / "faces", tmp_path / "out", num_workers=2, progress=False)
    assert_nothing_finished(tmp_path / "out")


def test_label_beyond_property_classes_is_named(tmp_path):
    write_rec_dataset(tmp_path / "faces", [0, 1, 5], iter(fake_jpegs(3)))
    (tmp_path / "faces" / "property").write_text("3,112,112\n")
    with pytest.raises(ArcFaceError, match=r"property: says 3 classes but record key 3 has "
                                           r"label 5"):
        recordio_to_images(tmp_path / "faces", tmp_path / "out", progress=False)
    assert_nothing_finished(tmp_path / "out")


def test_cli_summary_and_missing_property(tmp_path):
    root = golden_dataset(tmp_path / "faces")
    run = subprocess.run([*TOOL, "--root_dir", str(root), "--output_dir", str(tmp_path / "o")],
                         capture_output=True, text=True, check=True)
    assert "identities (distinct labels)" in run.stdout and "lfw.bin, my_photos.bin" in run.stdout
    (root / "property").unlink()
    failed = subprocess.run([*TOOL, "--root_dir", str(root), "--output_dir",
                             str(tmp_path / "o2")], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"error: {root / 'property'}: missing")
    assert not (tmp_path / "o2").exists()


# -- label.txt -----------------------------------------------------------------------------------

def test_label_file_round_trip(tmp_path):
    entries = [("images/00000001.jpg", 0), ("a b/ü.png", 17), ("x.jpg", 3)]
    assert write_label_file(tmp_path / "label.txt", entries) == 3
    assert (tmp_path / "label.txt").read_text(encoding="utf-8").splitlines()[1] == "a b/ü.png\t17"
    assert read_label_file(tmp_path / "label.txt") == entries


@pytest.mark.parametrize("line, why", [
    ("images/1.jpg 3", "expected 'relative/path<TAB>label'"),
    ("images/1.jpg\t3\textra", "expected 'relative/path<TAB>label'"),
    ("images/1.jpg\tcat", "label 'cat' is not a non-negative integer"),
    ("images/1.jpg\t-1", "label '-1' is not a non-negative integer"),
    ("images/1.jpg\t2.5", "label '2.5' is not a non-negative integer"),
    ("\t3", "empty path"),
    ("/data/1.jpg\t3", "path is absolute"),
    ("../1.jpg\t3", r"path leaves the dataset folder"),
])
def test_malformed_label_line_names_the_line(tmp_path, line, why):
    (tmp_path / "label.txt").write_text(f"images/0.jpg\t0\n\n{line}\nimages/2.jpg\t1\n")
    with pytest.raises(ArcFaceError, match=rf"label\.txt: line 3: {why}"):
        read_label_file(tmp_path / "label.txt")
