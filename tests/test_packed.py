"""Packed shards: lossless round trip with an image folder, random access, corruption caught."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from arcface_paddle.data.convert_packed import images_to_packed, packed_to_images
from arcface_paddle.data.label_file import read_label_file, write_label_file
from arcface_paddle.data.packed import INDEX_FILE, META_FILE, PackedReader, PackedWriter
from arcface_paddle.data.verification_bin import save_verification_bin
from arcface_paddle.errors import ArcFaceError

REPO = Path(__file__).resolve().parents[1]


def image_folder(root: Path, count: int = 40) -> list[tuple[str, int, bytes]]:
    """`count` small JPEG/PNG faces in nested folders plus label.txt -> (path, label, bytes)."""
    rng = np.random.default_rng(1)
    entries = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)
        ext = ".png" if i % 5 == 0 else ".jpg"
        data = cv2.imencode(ext, pixels)[1].tobytes()
        relative = f"person_{i % 7}/img {i:03d}{ext}"  # a space in the name on purpose
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        entries.append((relative, (i % 7) * 2, data))  # labels 0, 2, ..., 12: gaps allowed
    write_label_file(root / "label.txt", [(path, label) for path, label, _ in entries])
    return entries


def test_round_trip_is_lossless_across_shards(tmp_path):
    entries = image_folder(tmp_path / "images")
    save_verification_bin(tmp_path / "images" / "lfw.bin", [entries[0][2]] * 2, [True])
    summary = images_to_packed(tmp_path / "images", tmp_path / "packed", max_shard_bytes=4000,
                               progress=False)
    assert summary.verification_sets == ["lfw.bin"]
    meta = json.loads((tmp_path / "packed" / META_FILE).read_text())
    assert meta["format_version"] == 1 and meta["num_images"] == len(entries)
    assert summary.shards == len(meta["shards"]) > 3
    for shard in meta["shards"]:  # every shard respects the limit (no image exceeds it here)
        assert (tmp_path / "packed" / shard).stat().st_size <= 4000
    assert (summary.num_classes, summary.identities) == (13, 7)

    reader = PackedReader(tmp_path / "packed")
    order = np.random.default_rng(0).permutation(len(entries))  # random access
    for i in order:
        assert reader[int(i)] == (entries[i][2], entries[i][1])
        assert reader.name(int(i)) == entries[i][0]
    assert reader.labels.tolist() == [label for _, label, _ in entries]

    back = packed_to_images(tmp_path / "packed", tmp_path / "restored", progress=False)
    assert back.verification_sets == ["lfw.bin"]  # the shards are not taken for sets
    assert (tmp_path / "restored" / "lfw.bin").read_bytes() == \
        (tmp_path / "images" / "lfw.bin").read_bytes()
    assert read_label_file(tmp_path / "restored" / "label.txt") == \
        [(path, label) for path, label, _ in entries]
    for relative, _, data in entries:
        assert (tmp_path / "restored" / relative).read_bytes() == data


def test_reader_pickles_into_workers_without_open_files(tmp_path):
    entries = image_folder(tmp_path / "images", count=6)
    images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    reader = PackedReader(tmp_path / "packed")
    assert reader[2][0] == entries[2][2]  # opens shard 0 and maps the index here
    state = pickle.dumps(reader)
    assert len(state) < 2000  # no index, names or descriptors travel with it
    clone = pickle.loads(state)
    assert clone[5] == (entries[5][2], entries[5][1])


def test_oversized_image_gets_a_shard_of_its_own(tmp_path):
    with PackedWriter(tmp_path / "p", max_shard_bytes=10) as writer:
        for i, size in enumerate([4, 30, 4, 4]):
            writer.add(bytes([i]) * size, i, f"{i}.jpg")
    reader = PackedReader(tmp_path / "p")
    assert reader.index[:, 0].tolist() == [0, 1, 2, 2]
    assert [reader[i][0] for i in range(4)] == [bytes([i]) * s for i, s in
                                                 enumerate([4, 30, 4, 4])]


def test_corrupt_shard_byte_is_caught_by_checksum(tmp_path):
    image_folder(tmp_path / "images", count=5)
    images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    shard = tmp_path / "packed" / "data_00000.bin"
    data = bytearray(shard.read_bytes())
    offset = int(PackedReader(tmp_path / "packed").index[3, 1])
    data[offset + 50] ^= 0xFF
    shard.write_bytes(bytes(data))
    reader = PackedReader(tmp_path / "packed")
    reader[2]  # untouched images still read
    with pytest.raises(ArcFaceError, match=r"data_00000\.bin: image 3 .* fails its checksum"):
        reader[3]


def test_truncated_shard_and_bad_meta_are_refused(tmp_path):
    image_folder(tmp_path / "images", count=5)
    images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    packed = tmp_path / "packed"
    shard = packed / "data_00000.bin"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ArcFaceError, match=r"data_00000\.bin: \d+ bytes but the index needs"):
        PackedReader(packed)
    meta = json.loads((packed / META_FILE).read_text())
    (packed / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ArcFaceError, match="format_version 99"):
        PackedReader(packed)
    (packed / META_FILE).unlink()
    with pytest.raises(ArcFaceError, match=r"meta\.json: missing"):
        PackedReader(packed)


@pytest.mark.parametrize("bad_name, why", [
    ("../escaped.jpg", r"path leaves the dataset folder"),
    ("{outside}/escaped.jpg", r"path is absolute"),
])
def test_names_escaping_the_target_folder_are_refused(tmp_path, bad_name, why):
    """names.txt is data from elsewhere: unpacking must never write outside the target."""
    image_folder(tmp_path / "images", count=4)
    packed = tmp_path / "packed"
    images_to_packed(tmp_path / "images", packed, progress=False)
    outside = tmp_path / "outside"
    bad_name = bad_name.format(outside=outside)
    lines = (packed / "names.txt").read_text().splitlines()
    lines[2] = bad_name  # keeps the count: only the check can stop it
    (packed / "names.txt").write_text("\n".join(lines) + "\n")
    message = rf"names\.txt: line 3: {why}.*: {re.escape(repr(bad_name))}$"
    with pytest.raises(ArcFaceError, match=message):
        PackedReader(packed)
    with pytest.raises(ArcFaceError, match=message):
        packed_to_images(packed, tmp_path / "back" / "nested", progress=False)
    assert not (tmp_path / "back" / "escaped.jpg").exists()
    assert not (outside / "escaped.jpg").exists()
    assert not (tmp_path / "back" / "nested" / "label.txt").exists()


def test_failed_packing_leaves_nothing(tmp_path):
    entries = image_folder(tmp_path / "images", count=8)
    (tmp_path / "images" / entries[6][0]).write_bytes(b"this is not an image")
    with pytest.raises(ArcFaceError, match=r"img 006\.jpg: not an encoded image"):
        images_to_packed(tmp_path / "images", tmp_path / "packed" / "new", max_shard_bytes=2000,
                         progress=False)
    assert not (tmp_path / "packed").exists()  # the folders it created are gone too
    (tmp_path / "kept").mkdir()  # a folder the user made stays, empty
    with pytest.raises(ArcFaceError, match=r"img 006\.jpg: not an encoded image"):
        images_to_packed(tmp_path / "images", tmp_path / "kept", max_shard_bytes=2000,
                         progress=False)
    assert list((tmp_path / "kept").iterdir()) == []


def test_malformed_label_line_is_named_and_nothing_written(tmp_path):
    image_folder(tmp_path / "images", count=4)
    label = tmp_path / "images" / "label.txt"
    lines = label.read_text().splitlines()
    lines[2] = lines[2].replace("\t", " ")
    label.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArcFaceError, match=r"label\.txt: line 3: expected"):
        images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    assert not (tmp_path / "packed" / INDEX_FILE).exists()
    assert not (tmp_path / "packed" / META_FILE).exists()


def test_existing_packed_set_is_not_overwritten(tmp_path):
    image_folder(tmp_path / "images", count=3)
    images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    before = (tmp_path / "packed" / "data_00000.bin").read_bytes()
    with pytest.raises(ArcFaceError, match="already holds a packed set"):
        images_to_packed(tmp_path / "images", tmp_path / "packed", progress=False)
    assert (tmp_path / "packed" / "data_00000.bin").read_bytes() == before


def test_cli_round_trip_and_error_exit(tmp_path):
    entries = image_folder(tmp_path / "images", count=5)
    tool = [sys.executable, str(REPO / "tools" / "convert_image_bin.py")]
    run = subprocess.run([*tool, "--image_path", str(tmp_path / "images"), "--bin_path",
                          str(tmp_path / "packed"), "--mode", "image2bin"],
                         capture_output=True, text=True, check=True)
    assert re.search(r"^\|\s+5\s+\|", run.stdout, re.MULTILINE), run.stdout  # images column
    subprocess.run([*tool, "--image_path", str(tmp_path / "back"), "--bin_path",
                    str(tmp_path / "packed"), "--mode", "bin2image"], capture_output=True,
                   check=True)
    assert (tmp_path / "back" / entries[4][0]).read_bytes() == entries[4][2]
    failed = subprocess.run([*tool, "--image_path", str(tmp_path / "nowhere"), "--bin_path",
                             str(tmp_path / "p2"), "--mode", "image2bin"],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"error: {tmp_path / 'nowhere' / 'label.txt'}: missing"


def _packed(tmp_path: Path) -> Path:
    with PackedWriter(tmp_path / "packed") as writer:
        for i in range(6):
            writer.add(bytes([i + 1]) * 10, i % 3, f"images/{i}.jpg")
    return tmp_path / "packed"


@pytest.mark.parametrize("meta_change, message", [
    ({"shards": 5}, r"shards must be a list of file names in the folder, got 5"),
    ({"shards": ["../elsewhere/data_00000.bin"]}, r"shards must be a list of file names"),
    ({"num_images": "6"}, r"num_images must be an integer >= 0, got '6'"),
    ({"num_classes": None}, r"num_classes must be an integer >= 0, got None"),
    ({"num_classes": 2}, r"index\.npy: row \d+ has label 2, but meta\.json says 2 classes"),
])
def test_tampered_meta_is_refused_with_one_line(tmp_path, meta_change, message):
    """Beside issue 10, item 1: a damaged meta.json gave TypeError/KeyError tracebacks, and a
    shard name could point outside the folder."""
    root = _packed(tmp_path)
    meta = json.loads((root / META_FILE).read_text())
    (root / META_FILE).write_text(json.dumps({**meta, **meta_change}))
    with pytest.raises(ArcFaceError, match=message):
        PackedReader(root)


@pytest.mark.parametrize("column, value, message", [
    (1, -10, r"row 0 has offset -10"), (2, 0, r"row 0 has length 0"), (3, -1, r"label -1")])
def test_tampered_index_rows_are_refused_when_opened(tmp_path, column, value, message):
    root = _packed(tmp_path)
    index = np.load(root / INDEX_FILE)
    index[0, column] = value
    np.save(root / INDEX_FILE, index)
    with pytest.raises(ArcFaceError, match=message):
        PackedReader(root)


@pytest.mark.parametrize("bad_name, why", [
    ("img\0.jpg", r"line 3: path holds a NUL byte"),
    (".", r"line 3: path names the folder itself"),
    ("label.txt", r"line 3: 'label\.txt' is a reserved name"),
    ("lfw.bin", r"line 3: 'lfw\.bin' is a reserved name"),
    ("{first}", r"line 3: .* repeats line 1"),
    ("{folder}", r"line \d: '.*' is also the folder of other images"),
])
def test_names_that_would_clash_on_unpacking_are_refused(tmp_path, bad_name, why):
    """Issue 10 item 13: a NUL byte, a reserved name or a duplicate in names.txt is one error
    naming the line, before anything is written (a duplicate overwrote another image)."""
    entries = image_folder(tmp_path / "images", count=6)
    save_verification_bin(tmp_path / "images" / "lfw.bin", [entries[0][2]] * 2, [True])
    packed = tmp_path / "packed"
    images_to_packed(tmp_path / "images", packed, progress=False)
    lines = (packed / "names.txt").read_text().splitlines()
    lines[2] = bad_name.format(first=lines[0], folder=lines[0].split("/")[0])
    (packed / "names.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ArcFaceError, match=why):
        packed_to_images(packed, tmp_path / "back", progress=False)
    assert not (tmp_path / "back").exists() or not any((tmp_path / "back").rglob("*.*"))


@pytest.mark.parametrize("line, why", [
    ("a.jpg\t9223372036854775808", r"line 2: label 9223372036854775808 is larger than"),
    ("a\0.jpg\t1", r"line 2: path holds a NUL byte"),
    ("a.jpg\t1", r"line 2: 'a\.jpg' repeats line 1"),
    ("label.txt\t1", r"line 2: 'label\.txt' is a reserved name"),
])
def test_bad_label_file_is_refused_before_packing(tmp_path, line, why):
    """Issue 10 item 13: an oversized label was an OverflowError after packing everything."""
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((4, 4, 3), np.uint8))[1])
    (folder / "label.txt").write_text(f"a.jpg\t0\n{line}\n")
    with pytest.raises(ArcFaceError, match=why):
        images_to_packed(folder, tmp_path / "packed", progress=False)
    assert not (tmp_path / "packed").exists()
    with PackedWriter(tmp_path / "w") as writer, pytest.raises(ArcFaceError, match="label"):
        writer.add(b"\xff\xd8\xffx", 2**63, "x.jpg")
