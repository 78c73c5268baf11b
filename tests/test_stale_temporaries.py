"""Issue 10 item 14: what a killed run leaves (this project's temporary names) is removed by the
next run and never read as data; a rerun's output is the same as a clean run's."""

from __future__ import annotations

import os
from pathlib import Path

from arcface_paddle.data.convert_packed import images_to_packed, packed_to_images
from arcface_paddle.data.convert_recordio import recordio_to_images
from arcface_paddle.data.convert_verification import verification_bin_to_folder
from arcface_paddle.data.verification_bin import save_verification_bin
from insightface_paddle.fileio import atomic_path, is_temporary, remove_temporaries
from test_data_tools import golden_dataset
from test_packed import image_folder

PARTIAL_SET = ".lfw.bin.k2j3h4g5.tmp.bin"  # an atomic_path copy of lfw.bin cut by kill -9


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")]


def test_both_temporary_namings_are_recognised(tmp_path):
    with atomic_path(tmp_path / "lfw.bin") as tmp:
        assert is_temporary(tmp.name)
    assert is_temporary(f".00000001.jpg.{os.getpid()}.tmp")  # write_bytes_atomic
    for name in ("lfw.bin", ".hidden", "data_00000.bin", ".lfw.bin.k2j3h4g5.tmp.npz", "x.tmp"):
        assert not is_temporary(name), name
    (tmp_path / PARTIAL_SET).write_bytes(b"partial")
    (tmp_path / ".keep").write_bytes(b"a user's hidden file")
    assert remove_temporaries(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "lfw.bin"]
    assert remove_temporaries(tmp_path / "missing") == 0


def test_rec_conversion_removes_and_ignores_temporaries(tmp_path):
    root = golden_dataset(tmp_path / "faces")
    clean = tmp_path / "clean"
    recordio_to_images(root, clean, progress=False)
    (root / PARTIAL_SET).write_bytes(b"\x80\x02partial pickle")  # in the source: not a set
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / PARTIAL_SET).write_bytes(b"partial")
    (out / ".label.txt.a1b2c3d4.tmp.txt").write_text("images/0")
    (out / "images" / ".00000003.jpg.4242.tmp").write_bytes(b"\xff\xd8")
    summary = recordio_to_images(root, out, progress=False)
    assert summary.verification_sets == ["lfw.bin", "my_photos.bin"]
    assert hidden(out) == []
    assert listing(out).keys() == listing(clean).keys()


def test_packing_neither_copies_nor_keeps_temporaries(tmp_path):
    entries = image_folder(tmp_path / "images", count=6)
    save_verification_bin(tmp_path / "images" / "lfw.bin", [entries[0][2]] * 2, [True])
    (tmp_path / "images" / PARTIAL_SET).write_bytes(b"partial")
    packed = tmp_path / "packed"
    packed.mkdir()
    stale_shard = ".data_00000.bin.q9w8e7r6.tmp.bin"  # a shard of a killed image2bin
    (packed / stale_shard).write_bytes(b"\xff" * 64)
    summary = images_to_packed(tmp_path / "images", packed, progress=False)
    assert summary.verification_sets == ["lfw.bin"]
    assert hidden(packed) == []

    (packed / stale_shard).write_bytes(b"\xff" * 64)  # left beside a finished set
    clean = tmp_path / "clean"
    packed_to_images(packed, clean, progress=False)
    assert hidden(clean) == [] and not (clean / stale_shard).exists()

    back = tmp_path / "back"  # a killed bin2image: some images and a partial one
    first = back / entries[0][0]
    first.parent.mkdir(parents=True)
    first.write_bytes(entries[0][2])
    (first.parent / f".{first.name}.31337.tmp").write_bytes(entries[0][2][:5])
    (back / PARTIAL_SET).write_bytes(b"partial")
    packed_to_images(packed, back, progress=False)
    assert listing(back) == listing(clean)


def test_verification_unpacking_removes_temporaries(tmp_path):
    faces = [bytes([0xFF, 0xD8, 0xFF, 0xE0, i]) for i in range(4)]
    save_verification_bin(tmp_path / "set.bin", faces, [True, False])
    clean = tmp_path / "clean"
    verification_bin_to_folder(tmp_path / "set.bin", clean, progress=False)
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / ".00000001.jpg.777.tmp").write_bytes(b"\xff")
    (out / ".pairs.txt.z1x2c3v4.tmp.txt").write_text("images/")
    verification_bin_to_folder(tmp_path / "set.bin", out, progress=False)
    assert listing(out) == listing(clean)
