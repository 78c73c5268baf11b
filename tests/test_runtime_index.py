"""The face index: search, edits, the safe file format, model checks, legacy import, faiss."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.index import FaceIndex
from insightface_paddle.recognition import ModelSignature

MODEL = ModelSignature("TestNet", "a" * 64, 8)
OTHER = ModelSignature("OtherNet", "b" * 64, 8)


def _gallery(rng, identities=5, per_identity=3, dim=8):
    centres = rng.standard_normal((identities, dim))
    labels, rows = [], []
    for i, centre in enumerate(centres):
        for _ in range(per_identity):
            labels.append(f"id{i}")
            rows.append(centre + 0.1 * rng.standard_normal(dim))
    return centres, labels, np.asarray(rows, np.float32)


def test_search_returns_distinct_identities_by_best_entry():
    rng = np.random.default_rng(0)
    centres, labels, rows = _gallery(rng)
    index = FaceIndex(MODEL)
    index.add(labels, rows)
    results = index.search(centres, MODEL, k=3)
    assert [r[0].label for r in results] == [f"id{i}" for i in range(5)]
    for r, centre in zip(results, centres, strict=True):
        assert len({c.label for c in r}) == 3
        sims = [c.similarity for c in r]
        assert sims == sorted(sims, reverse=True)
        own = rows[[i for i, x in enumerate(labels) if x == r[0].label]]
        best = max(own @ centre / np.linalg.norm(own, axis=1) / np.linalg.norm(centre))
        assert r[0].similarity == pytest.approx(best, abs=1e-5)


def test_add_and_remove_without_rebuilding(tmp_path):
    rng = np.random.default_rng(1)
    centres, labels, rows = _gallery(rng)
    index = FaceIndex(MODEL)
    index.add(labels[:12], rows[:12])  # id0..id3
    assert index.search(centres[4:5], MODEL, k=1)[0][0].label != "id4"
    index.add(labels[12:], rows[12:])
    assert index.search(centres[4:5], MODEL, k=1)[0][0].label == "id4"
    assert index.remove("id4") == 3
    assert "id4" not in index.identities and len(index) == 12
    with pytest.raises(InsightFaceError, match="not in the index"):
        index.remove("id4")
    with pytest.raises(InsightFaceError, match="unknown"):
        index.add(["unknown"], rows[:1])


def test_round_trip_is_exact_and_not_a_pickle(tmp_path):
    rng = np.random.default_rng(2)
    _, labels, rows = _gallery(rng)
    index = FaceIndex(MODEL, info={"faces": "whole photo"})
    index.add(labels, rows, [f"photo{i}.jpg" for i in range(len(labels))])
    path = index.save(tmp_path / "gallery.npz")
    again = FaceIndex.load(path)
    np.testing.assert_array_equal(again.embeddings, index.embeddings)
    assert again.labels == labels and again.sources[3] == "photo3.jpg"
    assert again.model == MODEL and again.info == {"faces": "whole photo"}
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(str(np.load(archive.open("meta.npy"), allow_pickle=False)))
        for name in archive.namelist():  # every member loads without pickle
            np.load(archive.open(name), allow_pickle=False)
    assert meta["format_version"] == 2 and meta["model"]["fingerprint"] == "a" * 64
    assert not [p for p in os.listdir(tmp_path) if p != "gallery.npz"]  # no temporary left


def test_other_model_and_other_versions_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    _, labels, rows = _gallery(rng)
    index = FaceIndex(MODEL)
    index.add(labels, rows)
    with pytest.raises(InsightFaceError, match="built with TestNet"):
        index.search(rows[:1], OTHER)
    with pytest.raises(InsightFaceError, match="16-D"):
        FaceIndex(ModelSignature("Wide", "c" * 64, 16), rows, labels)
    path = index.save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 99
    arrays["meta"] = np.asarray(json.dumps(meta))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(InsightFaceError, match="version 99"):
        FaceIndex.load(tmp_path / "future.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InsightFaceError, match="not an insightface-paddle index"):
        FaceIndex.load(tmp_path / "junk.npz")


def test_pickled_npz_member_is_refused(tmp_path):
    """A tampered index with an object array (which would need pickle) is not loaded."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez(tmp_path / "evil.npz", embeddings=np.zeros((1, 8), np.float32),
             labels=np.array([Exploit()], dtype=object), sources=np.array([""]),
             meta=np.asarray(json.dumps({"format_version": 1, "model": {
                 "name": "x", "fingerprint": "a" * 64, "embedding_size": 8}})))
    with pytest.raises(InsightFaceError, match="not an insightface-paddle index"):
        FaceIndex.load(tmp_path / "evil.npz")
    assert not marker.exists()


def test_legacy_import_refuses_code_and_wrong_sizes(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"label": ["a"], "feature": [Exploit()]}))
    with pytest.raises(InsightFaceError, match="refused"):
        FaceIndex.from_legacy(tmp_path / "evil.bin", MODEL)
    assert not marker.exists()
    (tmp_path / "wide.bin").write_bytes(pickle.dumps(
        {"label": ["a"], "feature": [np.ones((1, 16), np.float32)]}))
    with pytest.raises(InsightFaceError, match="16-D"):
        FaceIndex.from_legacy(tmp_path / "wide.bin", MODEL)


@pytest.mark.slow
def test_legacy_index_imports_and_searches(shared, embedder, tmp_path):
    index = FaceIndex.from_legacy(shared("demo/friends/index.bin"), embedder.signature)
    assert len(index) == 245 and len(index.identities) == 6
    assert index.info["channel_order"] == "BGR"
    index.save(tmp_path / "imported.npz")
    again = FaceIndex.load(tmp_path / "imported.npz")
    # each entry's nearest identity is its own
    hits = [r[0].label for r in again.search(again.embeddings, embedder.signature, k=1)]
    assert hits == again.labels


def test_approximate_search_agrees_with_exact():
    rng = np.random.default_rng(4)
    dim, identities = 32, 3000
    centres = rng.standard_normal((identities, dim)).astype(np.float32)
    labels = [f"id{i}" for i in range(identities) for _ in range(4)]
    rows = np.repeat(centres, 4, axis=0) + 0.3 * rng.standard_normal((identities * 4, dim))
    index = FaceIndex(ModelSignature("T", "d" * 64, dim))
    index.add(labels, rows)
    queries = centres[:200] + 0.3 * rng.standard_normal((200, dim)).astype(np.float32)
    exact = index.search(queries, index.model, k=1)
    approx = index.search(queries, index.model, k=1, approximate=True)
    agree = np.mean([e[0].label == a[0].label for e, a in zip(exact, approx, strict=True)])
    assert agree >= 0.95
    assert np.mean([e[0].label == f"id{i}" for i, e in enumerate(exact)]) >= 0.99


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


@pytest.mark.parametrize("damage, why", [
    (lambda data, arrays: data[: len(data) // 2], "BadZipFile"),
    (lambda data, arrays: _flip(data, data.index(b"NUMPY") + 140), "BadZipFile"),  # in the data
    (lambda data, arrays: os.urandom(3000), "pickled data is refused"),
    (lambda data, arrays: {**arrays, "meta": np.asarray(json.dumps([1, 2]))}, "bad metadata"),
    (lambda data, arrays: {**arrays, "embeddings": np.zeros(16, np.float32)}, "shapes"),
    (lambda data, arrays: {k: v for k, v in arrays.items() if k != "labels"}, "no 'labels'"),
])
def test_damaged_index_files_give_one_clear_error(tmp_path, damage, why):
    index = FaceIndex(MODEL)
    index.add(["a", "b"], np.random.default_rng(5).standard_normal((2, 8)))
    path = index.save(tmp_path / "good.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    damaged = damage(path.read_bytes(), arrays)
    target = tmp_path / "damaged.npz"
    if isinstance(damaged, bytes):
        target.write_bytes(damaged)
    else:
        np.savez(target, **damaged)
    with pytest.raises(InsightFaceError, match=f"not an insightface-paddle index.*{why}"):
        FaceIndex.load(target)
