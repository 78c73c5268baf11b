"""RecordIO without MXNet: read and rewrite a file real MXNet wrote, byte for byte.

The golden fixture `tests/fixtures/recordio/golden.{rec,idx}` was written once by MXNet 1.9.1
(numpy 1.23.5, a side venv) with `tests/fixtures/recordio/make_fixture.py`, which also stored
what `mx.recordio.unpack` returned for every record in `golden.json`. It holds an insightface
header record (flag 2, label [8, 11]), scalar and array labels, payloads with the magic at
aligned offsets (split by MXNet into 2-4 frames, one with an empty middle frame and one with an
empty last frame), an unaligned magic (not split), padding, and identity records.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from arcface_paddle.data.recordio import (
    MAGIC_BYTES,
    MAX_RECORD_BYTES,
    IRHeader,
    RecFaceReader,
    RecordReader,
    RecordWriter,
    decode_frames,
    encode_frames,
    pack,
    read_index,
    unpack,
    write_rec_dataset,
)
from arcface_paddle.errors import ArcFaceError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "recordio"
GOLDEN = json.loads((FIXTURES / "golden.json").read_text())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def golden_dataset(folder: Path, with_idx: bool = True, classes: int = 3) -> Path:
    """The golden fixture laid out as an insightface dataset folder."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "golden.rec", folder / "train.rec")
    if with_idx:
        shutil.copyfile(FIXTURES / "golden.idx", folder / "train.idx")
    (folder / "property").write_text(f"{classes},16,16\n")
    return folder


@pytest.mark.parametrize("with_idx", [True, False], ids=["idx", "scan"])
def test_reads_golden_file_as_mxnet_does(with_idx):
    reader = RecordReader(FIXTURES / "golden.rec", FIXTURES / "golden.idx" if with_idx else None)
    assert reader.keys.tolist() == [entry["key"] for entry in GOLDEN["records"]]
    for entry in GOLDEN["records"]:
        key = entry["key"]
        assert reader.position(key) == entry["position"]
        record = reader.read(key)
        assert (len(record), sha(record)) == (entry["record_len"], entry["record_sha256"])
        header, payload = unpack(record)
        assert (header.flag, header.id, header.id2) == (entry["flag"], entry["id"], entry["id2"])
        label = header.label.tolist() if header.flag else header.label
        assert label == entry["label"]
        assert (len(payload), sha(payload)) == (entry["payload_len"], entry["payload_sha256"])


def test_rewrites_golden_file_byte_identically(tmp_path):
    reader = RecordReader(FIXTURES / "golden.rec", FIXTURES / "golden.idx")
    with RecordWriter(tmp_path / "out.rec", tmp_path / "out.idx") as writer:
        for entry in GOLDEN["records"]:
            header, payload = unpack(reader.read(entry["key"]))
            writer.write_idx(entry["key"], pack(header, payload))  # re-packed, not copied
    assert sha((tmp_path / "out.rec").read_bytes()) == GOLDEN["rec_sha256"]
    assert sha((tmp_path / "out.idx").read_bytes()) == GOLDEN["idx_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.idx", "out.rec"]


def test_pack_matches_mxnet_pack_from_header_fields():
    for entry in GOLDEN["records"]:
        record = RecordReader(FIXTURES / "golden.rec").read(entry["key"])
        payload = unpack(record)[1]
        header = IRHeader(0, entry["label"], entry["id"], entry["id2"])
        assert sha(pack(header, payload)) == entry["record_sha256"]


def test_frames_split_only_at_aligned_magic():
    rng = np.random.default_rng(7)
    for trial in range(300):
        body = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 64))).astype(np.uint8))
        for _ in range(int(rng.integers(0, 4))):  # magics at random (often aligned) offsets
            at = int(rng.integers(0, len(body) + 1))
            body[at:at] = MAGIC_BYTES
        record = bytes(body)
        frames = encode_frames(record)
        assert len(frames) % 4 == 0
        aligned = sum(1 for i in range(0, len(record) - 3, 4) if record[i:i + 4] == MAGIC_BYTES)
        # each aligned magic is dropped and opens a new frame (8-byte head); the end is padded
        expected = len(record) - 4 * aligned + 8 * (aligned + 1) + (-len(record) % 4)
        assert len(frames) == expected, trial
        decoded, end = decode_frames(lambda at, n, f=frames: f[at:at + n], 0, "trial")
        assert (decoded, end) == (record, len(frames))


def test_record_size_limit_is_mxnet_s():
    assert GOLDEN["record_limit"] == {"size": MAX_RECORD_BYTES, "refused": True}
    with pytest.raises(ArcFaceError, match="shorter than"):
        encode_frames(bytes(MAX_RECORD_BYTES))


def test_rec_face_reader_over_golden_folder(tmp_path):
    reader = RecFaceReader(golden_dataset(tmp_path / "ds"))
    images = {e["key"]: e for e in GOLDEN["records"] if 1 <= e["key"] <= 7}
    assert len(reader) == 7 and reader.num_classes == 3
    assert reader.identity_ranges.tolist() == [8, 9, 10]
    labels = []
    for i in range(len(reader)):
        payload, label = reader[i]
        assert sha(payload) == images[reader.key(i)]["payload_sha256"]
        labels.append(label)
    assert labels == [0, 0, 0, 1, 1, 2, 2]  # array labels give their first value


def test_rec_face_reader_pickles_without_its_file(tmp_path):
    reader = RecFaceReader(golden_dataset(tmp_path / "ds"))
    first = reader[3]  # opens the file in this process
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.records._fd is None
    assert clone[3] == first
    reader.records.close()


def test_write_rec_dataset_is_read_back(tmp_path):
    labels = [0, 0, 1, 3, 3, 3]
    images = [b"\xff\xd8\xff" + bytes([i]) * (i + 5) + MAGIC_BYTES for i in range(6)]
    write_rec_dataset(tmp_path, labels, iter(images), image_size=(112, 96))
    reader = RecFaceReader(tmp_path)
    assert (reader.num_classes, reader.height, reader.width) == (4, 112, 96)
    assert [reader[i] for i in range(6)] == list(zip(images, labels, strict=True))
    ranges = [unpack(reader.records.read(int(k)))[0].label.tolist()
              for k in reader.identity_ranges]
    assert ranges == [[1, 3], [3, 4], [4, 4], [4, 7]]  # class 2 has no images
    with pytest.raises(ArcFaceError, match="ascending"):
        write_rec_dataset(tmp_path / "bad", [1, 0], iter(images[:2]))
    assert not (tmp_path / "bad" / "train.rec").exists()


# -- bad input ----------------------------------------------------------------------------------

def test_truncated_rec_names_file_and_record(tmp_path):
    folder = golden_dataset(tmp_path / "ds", with_idx=False)
    data = (FIXTURES / "golden.rec").read_bytes()
    (folder / "train.rec").write_bytes(data[:5600])  # inside record 7
    with pytest.raises(ArcFaceError, match=r"train\.rec: record 7: truncated at byte 5600"):
        RecFaceReader(folder)
    # with the index the cut is found before any record is read
    shutil.copyfile(FIXTURES / "golden.idx", folder / "train.idx")
    with pytest.raises(ArcFaceError, match=r"train\.idx: position 6384 is past the end"):
        RecFaceReader(folder)
    # a cut inside the last record shows when that record is read
    (folder / "train.rec").write_bytes(data[:6480])
    reader = RecordReader(folder / "train.rec", folder / "train.idx")
    assert reader.read(9) == RecordReader(FIXTURES / "golden.rec").read(9)
    with pytest.raises(ArcFaceError, match=r"train\.rec: record key 10: truncated"):
        reader.read(10)


def test_wrong_magic_names_file_record_and_offset(tmp_path):
    data = bytearray((FIXTURES / "golden.rec").read_bytes())
    data[2792:2796] = struct.pack("<I", 0xDEADBEEF)  # record key 4
    (tmp_path / "x.rec").write_bytes(bytes(data))
    reader = RecordReader(tmp_path / "x.rec", FIXTURES / "golden.idx")
    assert reader.read(3) == RecordReader(FIXTURES / "golden.rec").read(3)
    with pytest.raises(ArcFaceError,
                       match=r"x\.rec: record key 4: bad magic 0xdeadbeef at byte 2792"):
        reader.read(4)
    (tmp_path / "y.rec").write_bytes(b"GIF89a not a record file at all")
    with pytest.raises(ArcFaceError, match=r"y\.rec: record 0: bad magic .* at byte 0"):
        RecordReader(tmp_path / "y.rec")


def test_sparse_shuffled_keys_and_repeated_keys(tmp_path):
    golden = RecordReader(FIXTURES / "golden.rec", FIXTURES / "golden.idx")
    lines = [f"{100 + 7 * k}\t{golden.position(k)}" for k in (5, 0, 9, 2)]
    (tmp_path / "x.idx").write_text("\n".join(lines) + "\n")
    reader = RecordReader(FIXTURES / "golden.rec", tmp_path / "x.idx")
    for k in (5, 0, 9, 2):
        assert reader.read(100 + 7 * k) == golden.read(k)
    with pytest.raises(ArcFaceError, match=r"x\.idx: no record with key 101"):
        reader.read(101)
    (tmp_path / "x.idx").write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(ArcFaceError, match=r"x\.idx: key 163 appears on more than one line"):
        RecordReader(FIXTURES / "golden.rec", tmp_path / "x.idx")


def test_index_pointing_into_a_record_is_caught(tmp_path):
    (tmp_path / "x.idx").write_text("0\t0\n1\t1880\n")  # 1880: a middle frame of record 3
    reader = RecordReader(FIXTURES / "golden.rec", tmp_path / "x.idx")
    with pytest.raises(ArcFaceError, match="continuation flag 2"):
        reader.read(1)


@pytest.mark.parametrize("text, line", [("0\t0\n1 40 7\n", 2), ("0\t0\n\nx\t40\n", 2),
                                        ("0\t0\n1\t-40\n", 2)])
def test_malformed_index_names_line(tmp_path, text, line):
    (tmp_path / "x.idx").write_text(text)
    with pytest.raises(ArcFaceError, match=rf"x\.idx: line {line}: expected"):
        read_index(tmp_path / "x.idx")


def test_missing_property_is_named(tmp_path):
    folder = golden_dataset(tmp_path / "ds")
    (folder / "property").unlink()
    with pytest.raises(ArcFaceError, match=r"ds/property: missing"):
        RecFaceReader(folder)
    (folder / "property").write_text("3;112;112\n")
    with pytest.raises(ArcFaceError, match=r"ds/property: expected 'num_classes,height,width'"):
        RecFaceReader(folder)


def test_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), \
            RecordWriter(tmp_path / "x.rec", tmp_path / "x.idx") as writer:
        writer.write_idx(0, b"abcd")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
