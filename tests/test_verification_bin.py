"""Verification `.bin`: safe loading, the same format written back, the folder round trip."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from arcface_paddle.data.convert_verification import (
    folder_to_verification_bin,
    read_pairs_file,
    verification_bin_to_folder,
)
from arcface_paddle.data.verification_bin import (
    MIN_PAIRS,
    load_verification_bin,
    save_verification_bin,
)
from arcface_paddle.errors import ArcFaceError

REPO = Path(__file__).resolve().parents[1]
JPEG_A = b"\xff\xd8\xff\xe0" + b"a" * 20
JPEG_B = b"\xff\xd8\xff\xe1" + b"b" * 30


@pytest.mark.slow
def test_lfw_round_trip_through_a_folder(shared, tmp_path):
    lfw = shared("data/lfw.bin")
    original = load_verification_bin(lfw)
    assert (original.name, len(original), len(original.images)) == ("lfw", 6000, 12000)
    summary = verification_bin_to_folder(lfw, tmp_path / "lfw", progress=False)
    assert (summary.pairs, summary.same, summary.different) == (6000, 3000, 3000)
    pairs = read_pairs_file(tmp_path / "lfw" / "pairs.txt")
    assert [same for _, _, same in pairs] == original.issame.tolist()
    for n in (0, 2999, 5999):
        a, b, _ = pairs[n]
        assert (tmp_path / "lfw" / a).read_bytes() == original.images[2 * n]
        assert (tmp_path / "lfw" / b).read_bytes() == original.images[2 * n + 1]

    folder_to_verification_bin(tmp_path / "lfw", tmp_path / "again.bin", progress=False)
    again = load_verification_bin(tmp_path / "again.bin")
    assert again.images == original.images
    np.testing.assert_array_equal(again.issame, original.issame)
    # the same pickle layout insightface wrote: the file comes back byte for byte
    assert (tmp_path / "again.bin").read_bytes() == lfw.read_bytes()


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_bin_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(([JPEG_A, _RunsCode(str(marker))], [True]), protocol=2))
    with pytest.raises(ArcFaceError, match=r"evil\.bin: refused to unpickle.*system"):
        load_verification_bin(evil)
    assert not marker.exists()
    failed = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_verification_bin.py"), "--bin_path",
         str(evil), "--image_path", str(tmp_path / "out"), "--mode", "bin2image"],
        capture_output=True, text=True)
    assert failed.returncode == 1 and failed.stderr.startswith(f"error: {evil}: refused")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_python2_bin_with_str_images_loads(tmp_path):
    # what Python 2 pickle.dump((bins, issame), f, protocol=2) writes: str as SHORT_BINSTRING
    images = b"".join(b"U" + bytes([len(x)]) + x for x in (JPEG_A, JPEG_B))
    data = b"\x80\x02]q\x00(" + images + b"e]q\x01\x89a\x86q\x02."
    (tmp_path / "old.bin").write_bytes(data)
    loaded = load_verification_bin(tmp_path / "old.bin")
    assert loaded.images == [JPEG_A, JPEG_B] and loaded.issame.tolist() == [False]


def test_uint8_array_images_become_bytes(tmp_path):
    arrays = [np.frombuffer(x, dtype=np.uint8) for x in (JPEG_A, JPEG_B, JPEG_B, JPEG_A)]
    (tmp_path / "arr.bin").write_bytes(pickle.dumps((arrays, [True, False]), protocol=2))
    loaded = load_verification_bin(tmp_path / "arr.bin")
    assert loaded.images == [JPEG_A, JPEG_B, JPEG_B, JPEG_A]
    assert loaded.issame.dtype == bool and loaded.issame.tolist() == [True, False]


@pytest.mark.parametrize("obj, why", [
    ({"images": []}, "expected a pair"),
    (([JPEG_A, JPEG_B, JPEG_A], [True]), "3 images for 1 pairs"),
    (([JPEG_A, JPEG_B], [1]), r"issame\[0\] is int"),
    (([JPEG_A, np.zeros(4, np.float32)], [True]), "image 1 is float32"),
    (([JPEG_A, 5], [True]), "image 1 is int"),
    (([], []), "no pairs"),
])
def test_wrong_structure_is_refused(tmp_path, obj, why):
    (tmp_path / "odd.bin").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(ArcFaceError, match=rf"odd\.bin: not an insightface verification set "
                                           rf"\(.*{why}"):
        load_verification_bin(tmp_path / "odd.bin")


def test_truncated_bin_names_the_file(tmp_path):
    data = pickle.dumps(([JPEG_A, JPEG_B], [True]), protocol=2)
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArcFaceError, match=r"cut\.bin: not a readable pickle"):
        load_verification_bin(tmp_path / "cut.bin")


def encoded_face(extension: str, value: int) -> bytes:
    """A small real image (decodable, as a usable set needs)."""
    ok, data = cv2.imencode(f".{extension}", np.full((8, 8, 3), value, dtype=np.uint8))
    assert ok
    return data.tobytes()


def own_photos(folder: Path, pairs: int) -> tuple[bytes, bytes]:
    (folder / "ann").mkdir(parents=True)
    jpeg, png = encoded_face("jpg", 90), encoded_face("png", 200)
    (folder / "ann" / "1.jpg").write_bytes(jpeg)
    (folder / "bob.png").write_bytes(png)
    lines = ["ann/1.jpg\tbob.png\t0\n", "\n", "ann/1.jpg\tann/1.jpg\t1\n"]
    lines += ["bob.png\tbob.png\t1\n"] * (pairs - 2)
    (folder / "pairs.txt").write_text("".join(lines))
    return jpeg, png


def test_own_photos_become_a_set(tmp_path):
    folder = tmp_path / "mine"
    jpeg, png = own_photos(folder, MIN_PAIRS)
    summary = folder_to_verification_bin(folder, tmp_path / "mine.bin", progress=False)
    assert (summary.pairs, summary.same) == (MIN_PAIRS, MIN_PAIRS - 1)
    loaded = load_verification_bin(tmp_path / "mine.bin")
    assert loaded.name == "mine" and loaded.issame.tolist() == [False] + [True] * (MIN_PAIRS - 1)
    assert loaded.images[:4] == [jpeg, png, jpeg, jpeg]


def test_set_training_cannot_use_is_refused(tmp_path):
    """Issue 10 item 15: 2 pairs (fewer than the 10 folds) or an undecodable image."""
    few = tmp_path / "few"
    own_photos(few, 2)
    with pytest.raises(ArcFaceError, match=r"2 pairs; the 10-fold protocol needs at least 10"):
        folder_to_verification_bin(few, tmp_path / "few.bin", progress=False)
    broken = tmp_path / "broken"
    own_photos(broken, MIN_PAIRS)
    (broken / "bob.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"p" * 10)
    with pytest.raises(ArcFaceError, match=r"image 1"):
        folder_to_verification_bin(broken, tmp_path / "broken.bin", progress=False)
    assert not (tmp_path / "few.bin").exists() and not (tmp_path / "broken.bin").exists()
    result = subprocess.run([sys.executable, str(REPO / "tools" / "convert_verification_bin.py"),
                             "--bin_path", str(tmp_path / "few.bin"), "--image_path", str(few),
                             "--mode", "image2bin"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "2 pairs" in result.stderr and not (tmp_path / "few.bin").exists()


@pytest.mark.parametrize("pairs, why", [
    ("a.jpg\tb.jpg\n", r"line 1: expected"),
    ("a.jpg\tb.jpg\t1\na.jpg b.jpg 1\n", r"line 2: expected"),
    ("a.jpg\tb.jpg\tyes\n", r"line 1: expected"),
    ("a.jpg\t/etc/passwd\t1\n", r"line 1: path is absolute"),
    ("a.jpg\tmissing.jpg\t1\n", r"missing\.jpg: cannot read .*named in .*pairs\.txt"),
    ("a.jpg\tnotes.txt\t1\n", r"notes\.txt: not an encoded image"),
])
def test_bad_pairs_folder_is_named_and_no_bin_written(tmp_path, pairs, why):
    (tmp_path / "a.jpg").write_bytes(JPEG_A)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "pairs.txt").write_text(pairs)
    with pytest.raises(ArcFaceError, match=why):
        folder_to_verification_bin(tmp_path, tmp_path / "out.bin", progress=False)
    assert not (tmp_path / "out.bin").exists()


def test_save_refuses_unpaired_images(tmp_path):
    with pytest.raises(ArcFaceError, match="3 images for 2 pairs"):
        save_verification_bin(tmp_path / "x.bin", [JPEG_A] * 3, [True, False])
    assert list(tmp_path.iterdir()) == []
