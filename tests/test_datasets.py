"""Training datasets: the three on-disk formats behind one dataset, synthetic identities,
reproducible flips, per-rank batches that re-shard exactly, DataLoader workers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from arcface_paddle.data.datasets import (
    FaceDataset,
    GlobalBatchSampler,
    ImageFolderReader,
    SyntheticFaces,
    build_loader,
    detect_format,
    open_reader,
    synthetic_verification_pairs,
)
from arcface_paddle.data.label_file import write_label_file
from arcface_paddle.data.packed import PackedReader, PackedWriter
from arcface_paddle.data.recordio import IRHeader, RecFaceReader, RecordWriter, pack
from arcface_paddle.data.transforms import decode_rgb, hflip_chw, normalize_chw
from arcface_paddle.errors import ArcFaceError
from insightface_paddle.media import decode_image
from insightface_paddle.recognition import FACE_NORMALIZATION


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="module")
def faces() -> list[tuple[bytes, int]]:
    """Six small labelled faces (3 identities), PNG-encoded so decoding is lossless."""
    synthetic = SyntheticFaces(3, 2, seed=4)
    return [(png(image), label) for image, label in (synthetic[i] for i in range(6))]


def make_folder(root, faces) -> None:
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (data, label) in enumerate(faces):
        (root / "images").mkdir(exist_ok=True)
        (root / "images" / f"{i:03d}.png").write_bytes(data)
        entries.append((f"images/{i:03d}.png", label))
    write_label_file(root / "label.txt", entries)


def make_packed(root, faces) -> None:
    with PackedWriter(root) as writer:
        for i, (data, label) in enumerate(faces):
            writer.add(data, label, f"images/{i:03d}.png")


def make_rec(root, faces) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with RecordWriter(root / "train.rec", root / "train.idx") as writer:
        for key, (data, label) in enumerate(faces, start=1):
            writer.write_idx(key, pack(IRHeader(0, float(label), key, 0), data))
    (root / "property").write_text("3,112,112\n")


def test_every_format_is_detected_and_reads_the_same_faces(tmp_path, faces):
    makers = {"folder": (make_folder, ImageFolderReader), "packed": (make_packed, PackedReader),
              "rec": (make_rec, RecFaceReader)}
    expected = [normalize_chw(cv2.cvtColor(cv2.imdecode(np.frombuffer(d, np.uint8), 1),
                                           cv2.COLOR_BGR2RGB)) for d, _ in faces]
    for name, (make, reader_type) in makers.items():
        root = tmp_path / name
        make(root, faces)
        assert detect_format(root) == name
        reader = open_reader(str(root))
        assert isinstance(reader, reader_type) and reader.num_classes == 3
        assert isinstance(open_reader(str(root), name), reader_type)
        dataset = FaceDataset(reader, random_flip=False)
        assert len(dataset) == 6
        for i, (_, label) in enumerate(faces):
            image, got_label = dataset[(i, 0)]
            assert image.dtype == np.float32 and image.shape == (3, 112, 112)
            assert int(got_label) == label
            np.testing.assert_array_equal(image, expected[i])


def test_missing_data_and_bad_images_are_user_errors(tmp_path, faces):
    with pytest.raises(ArcFaceError, match="--data_dir"):
        detect_format(tmp_path)
    with pytest.raises(ArcFaceError, match="--data_format"):
        open_reader(str(tmp_path), "lmdb")
    small = tmp_path / "small"
    make_folder(small, [(png(np.zeros((64, 64, 3), np.uint8)), 0)])
    with pytest.raises(ArcFaceError, match="112x112"):
        FaceDataset(open_reader(str(small)))[(0, 0)]
    broken = tmp_path / "broken"
    make_folder(broken, [(b"not an image", 0)])
    with pytest.raises(ArcFaceError, match=r"broken/images/000\.png \(image 0 of .*broken/label"
                                            r"\.txt\): not an image \(cannot decode\)$"):
        FaceDataset(open_reader(str(broken)))[(0, 0)]
    (broken / "images" / "000.png").unlink()
    with pytest.raises(ArcFaceError, match=r"000\.png"):
        FaceDataset(open_reader(str(broken)))[(0, 0)]


def test_preprocessing_is_the_runtimes(faces):
    """Training decodes and normalises faces exactly as the runtime will feed them."""
    data = faces[0][0]
    rgb = decode_image(data, "face")
    np.testing.assert_array_equal(decode_rgb(data), rgb)
    np.testing.assert_array_equal(decode_rgb(np.frombuffer(data, np.uint8)), rgb)  # .bin arrays
    chw = normalize_chw(rgb)
    assert chw.dtype == np.float32 and chw.shape == (3, *rgb.shape[:2])
    assert chw.flags.c_contiguous
    np.testing.assert_array_equal(chw, FACE_NORMALIZATION.apply(rgb.astype(np.float32))
                                  .transpose(2, 0, 1))
    np.testing.assert_array_equal(chw, (rgb.astype(np.float32).transpose(2, 0, 1) - 127.5)
                                  / np.float32(127.5))
    with pytest.raises(ArcFaceError, match=r"^record 7: not an image \(cannot decode\)$"):
        decode_rgb(b"\x00" * 16, "record 7")


def test_synthetic_identities_are_reproducible_and_distinct():
    faces = SyntheticFaces(5, 4, seed=1)
    assert len(faces) == 20 and faces.num_classes == 5
    image, label = faces[9]
    assert label == 2 and image.dtype == np.uint8 and image.shape == (112, 112, 3)
    np.testing.assert_array_equal(SyntheticFaces(5, 4, seed=1)[9][0], image)
    assert not np.array_equal(faces[8][0], image)  # another image of the same identity
    templates = [faces.template(c).ravel() for c in range(5)]
    assert np.corrcoef(templates).max(initial=0, where=~np.eye(5, dtype=bool)) < 0.9
    with pytest.raises(IndexError):
        faces[20]


def test_synthetic_verification_pairs():
    images, issame = synthetic_verification_pairs(10, seed=3)
    assert len(images) == 20 and issame.dtype == bool and issame.sum() == 5
    decoded = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (112, 112, 3)


def test_flips_are_reproducible_and_mirror_the_image():
    reader = SyntheticFaces(4, 8, seed=0)
    plain = FaceDataset(reader, random_flip=False)
    flipping = FaceDataset(reader, random_flip=True, seed=5)
    flipped = 0
    for index in range(len(reader)):
        for epoch in (0, 1):
            a, _ = flipping[(index, epoch)]
            np.testing.assert_array_equal(flipping[(index, epoch)][0], a)  # same key, same flip
            original = plain[(index, epoch)][0]
            if np.array_equal(a, original):
                continue
            np.testing.assert_array_equal(a, hflip_chw(original))
            flipped += 1
    assert 16 < flipped < 48  # about half of 64


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_rank_slices_rebuild_the_one_process_batches(world_size):
    num_samples, global_batch = 50, 12
    whole = GlobalBatchSampler(num_samples, global_batch, 0, 1, seed=3)
    ranks = [GlobalBatchSampler(num_samples, global_batch, r, world_size, seed=3)
             for r in range(world_size)]
    for epoch in (0, 1):
        for sampler in [whole, *ranks]:
            sampler.set_epoch(epoch)
        batches = list(whole)
        assert len(batches) == len(whole) == 4  # 50 // 12, the remainder dropped
        seen = [key[0] for batch in batches for key in batch]
        assert len(set(seen)) == len(seen)  # no sample twice in an epoch
        assert all(key[1] == epoch for batch in batches for key in batch)
        per_rank = [list(sampler) for sampler in ranks]
        for b, batch in enumerate(batches):
            assert [key for r in range(world_size) for key in per_rank[r][b]] == batch
    whole.set_epoch(0)
    first = list(whole)
    whole.set_epoch(1)
    assert list(whole) != [[(i, 1) for i, _ in batch] for batch in first]  # reshuffled
    whole.set_epoch(1, first_batch=2)
    whole_epoch = GlobalBatchSampler(num_samples, global_batch, 0, 1, seed=3)
    whole_epoch.set_epoch(1)
    assert list(whole) == list(whole_epoch)[2:]  # a resumed epoch skips what was trained
    with pytest.raises(ArcFaceError, match="does not split"):
        GlobalBatchSampler(num_samples, 10, 0, 3)


def test_workers_deliver_the_same_batches():
    dataset = FaceDataset(SyntheticFaces(4, 6, seed=2), random_flip=True, seed=1)
    sampler = GlobalBatchSampler(len(dataset), 8, 0, 1, seed=0)
    sampler.set_epoch(1)
    single = [(x.numpy(), y.numpy()) for x, y in build_loader(dataset, sampler, 0)]
    workers = [(x.numpy(), y.numpy()) for x, y in build_loader(dataset, sampler, 2)]
    assert len(single) == len(workers) == 3
    for (xa, ya), (xb, yb) in zip(single, workers, strict=True):
        assert xa.shape == (8, 3, 112, 112) and ya.dtype == np.int64
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
