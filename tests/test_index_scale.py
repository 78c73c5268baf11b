"""Search at scale: the blocked exact scan against brute force, the saved approximate-search
structure, and merging shards (issue 11, items 3-5)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from insightface_paddle import ann, search
from insightface_paddle.cli import main
from insightface_paddle.errors import InsightFaceError
from insightface_paddle.index import FaceIndex, merge_files
from insightface_paddle.recognition import ModelSignature, l2_normalize

MODEL = ModelSignature("TestNet", "a" * 64, 16)


def _brute_force(index: FaceIndex, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Every score, grouped by identity with a dict: slow and obviously right."""
    scores = l2_normalize(queries) @ index.embeddings.T
    out = []
    for row in scores:
        best: dict[str, float] = {}
        for label, score in zip(index.labels, row, strict=True):
            best[label] = max(best.get(label, -np.inf), float(score))
        out.append(sorted(best.items(), key=lambda item: -item[1])[:k])
    return out


@pytest.fixture(params=["blocked", "whole"])
def scan(request, monkeypatch):
    """Both exact searches: the blocked scan, with blocks of 32 to 256 rows (by the number of
    queries) so that a few thousand entries span many blocks and both scan threads; and the
    small gallery's single product."""
    if request.param == "blocked":
        monkeypatch.setattr(search, "BLOCK_ROWS", 32)
        monkeypatch.setattr(search, "WHOLE_SCORE_ROWS", 0)
    else:
        monkeypatch.setattr(search, "WHOLE_SCORE_ROWS", 10_000)
    return request.param


def test_exact_search_equals_brute_force(scan, monkeypatch):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((5000, 16)).astype(np.float32)
    labels = [f"id{i % 700}" for i in range(5000)]
    # one identity with 300 near-copies of one photo: its rows fill any fixed-size shortlist
    crowd = rows[7] + 0.01 * rng.standard_normal((300, 16)).astype(np.float32)
    index = FaceIndex(MODEL)
    index.add(labels, rows)
    index.add(["crowd"] * 300, crowd)
    queries = np.concatenate([rows[rng.choice(5000, 40)], crowd[:3],
                              rng.standard_normal((5, 16)).astype(np.float32)])
    for k in (1, 5, 12):
        got = index.search(queries, MODEL, k=k)
        for found, truth in zip(got, _brute_force(index, queries, k), strict=True):
            assert [c.label for c in found] == [label for label, _ in truth]
            np.testing.assert_allclose([c.similarity for c in found], [s for _, s in truth],
                                       atol=1e-5)
    if scan == "blocked":  # the scan really ran in blocks, on both threads
        calls = []
        original = search._scan_blocks
        monkeypatch.setattr(search, "_scan_blocks", lambda *a: calls.append(a[2]) or original(*a))
        index.search(queries, MODEL, k=5)
        assert len(calls) >= 2 and sum(map(len, calls)) > 20
    # more identities asked for than exist: all of them, best first
    tiny = FaceIndex(MODEL)
    tiny.add(["a", "a", "b"], rows[:3])
    assert sorted(c.label for c in tiny.search(rows[:1], MODEL, k=10)[0]) == ["a", "b"]


def test_searches_made_on_the_runtime_worker_threads_run_inline():
    """An app that calls the runtime from the runtime's own pool: a search there must not wait
    on scan tasks queued behind it (with every worker doing so, none would be left to run them).
    In a child process, so that a regression times out instead of hanging the suite."""
    script = textwrap.dedent("""
        import numpy as np
        from insightface_paddle import search, workers
        from insightface_paddle.index import FaceIndex
        from insightface_paddle.recognition import ModelSignature
        workers.cpu_workers = lambda: 2  # two workers, each searching, on any machine
        search.BLOCK_ROWS, search.WHOLE_SCORE_ROWS = 32, 0
        model = ModelSignature("TestNet", "a" * 64, 16)
        rows = np.random.default_rng(0).standard_normal((4000, 16)).astype(np.float32)
        index = FaceIndex(model)
        index.add([f"id{i % 500}" for i in range(4000)], rows)
        pool = workers.executor()
        assert workers.parallel_workers() == 2
        assert pool.submit(workers.parallel_workers).result() == 1
        jobs = [pool.submit(index.search, rows[i:i + 8], model, 3) for i in (0, 8)]
        inline = [job.result(timeout=60) for job in jobs]
        assert inline == [index.search(rows[i:i + 8], model, 3) for i in (0, 8)]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.split() == ["ok"]


def _ann_index(n: int = 6000, seed: int = 1) -> tuple[FaceIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, 16)).astype(np.float32)
    index = FaceIndex(MODEL, info={"faces": "whole photo"})
    index.add([f"id{i // 3}" for i in range(n)], rows)
    queries = rows[rng.choice(n, 100, replace=False)] + 0.2 * rng.standard_normal((100, 16))
    return index, queries.astype(np.float32)


def test_saved_approximate_structure_answers_without_retraining(tmp_path, monkeypatch):
    index, queries = _ann_index()
    exact = index.search(queries, MODEL, k=3)
    approx = index.search(queries, MODEL, k=3, approximate=True)
    agree = np.mean([e[0].label == a[0].label for e, a in zip(exact, approx, strict=True)])
    assert agree >= 0.99
    # candidates are rescored exactly: same scores when found
    for e, a in zip(exact, approx, strict=True):
        if e[0].label == a[0].label:
            assert a[0].similarity == pytest.approx(e[0].similarity, abs=1e-5)
    path = index.save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(ann.ARRAYS) <= set(data.files)
        meta = json.loads(str(data["meta"]))
    assert meta["ann"]["checksum"] == ann.embeddings_checksum(index.embeddings)

    def no_training(*args, **kwargs):
        raise AssertionError("the saved structure should have been used")

    monkeypatch.setattr(ann.AnnIndex, "train", no_training)
    again = FaceIndex.load(path)
    assert [r[0].label for r in again.search(queries, MODEL, k=3, approximate=True)] == \
        [r[0].label for r in approx]
    # any edit drops the structure: it described other embeddings
    again.add(["new"], queries[:1])
    with pytest.raises(AssertionError, match="saved structure"):
        again.search(queries[:1], MODEL, approximate=True)


def test_structure_of_other_embeddings_is_ignored_and_tampered_one_refused(tmp_path, caplog):
    index, queries = _ann_index()
    index.search(queries[:1], MODEL, approximate=True)
    path = index.save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    swapped = dict(arrays, embeddings=arrays["embeddings"][::-1].copy())
    np.savez(tmp_path / "swapped.npz", **swapped)
    with caplog.at_level(logging.WARNING):
        loaded = FaceIndex.load(tmp_path / "swapped.npz")
    assert "checksum mismatch" in caplog.text and "ignored" in caplog.text
    assert "approximate search ready" not in repr(loaded)
    assert loaded.search(queries[:5], MODEL, approximate=True)[0]  # rebuilt, answers
    lists = arrays["ann_lists"].copy()
    lists[0] = 10**6
    np.savez(tmp_path / "tampered.npz", **dict(arrays, ann_lists=lists))
    with pytest.raises(InsightFaceError, match=r"tampered.npz: bad approximate-search.*range"):
        FaceIndex.load(tmp_path / "tampered.npz")
    np.savez(tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k != "ann_codes"})
    with pytest.raises(InsightFaceError, match="'ann_codes' is missing"):
        FaceIndex.load(tmp_path / "short.npz")


def test_merge_refuses_other_models_and_crop_policies(tmp_path, capsys):
    rng = np.random.default_rng(2)
    a = FaceIndex(MODEL, info={"channel_order": "RGB", "faces": "whole photo"})
    a.add(["x", "y"], rng.standard_normal((2, 16)))
    other_model = FaceIndex(ModelSignature("Other", "b" * 64, 16),
                            info={"channel_order": "RGB", "faces": "whole photo"})
    other_model.add(["z"], rng.standard_normal((1, 16)))
    detected = FaceIndex(MODEL, info={"channel_order": "RGB", "faces": "largest detected face"})
    detected.add(["z"], rng.standard_normal((1, 16)))
    bgr = FaceIndex(MODEL, info={"channel_order": "BGR", "faces": "whole photo"})
    bgr.add(["z"], rng.standard_normal((1, 16)))
    paths = {name: idx.save(tmp_path / f"{name}.npz") for name, idx in
             {"a": a, "model": other_model, "detected": detected, "bgr": bgr}.items()}
    for name, why in (("model", "built with Other"), ("detected", "faces 'largest detected"),
                      ("bgr", "channel_order 'BGR'")):
        with pytest.raises(InsightFaceError, match=why):
            merge_files([paths["a"], paths[name]])
        code = main(["--build_index", str(tmp_path / "m.npz"), "--merge", str(paths["a"]),
                     str(paths[name])])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and f"{name}.npz" in err[0] and why in err[0]
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow
def test_four_shards_merged_equal_one_build(app, shared, tmp_path, capsys):
    gallery = shared("demo/friends/gallery")
    labels = tmp_path / "labels.txt"  # 26 photos of the six friends: a quick gallery
    lines = (gallery / "label.txt").read_text().splitlines()
    labels.write_text("\n".join(lines[::10]) + "\n")
    whole = app.build_index(gallery, labels, progress=False).save(tmp_path / "whole.npz")
    shards = [app.build_index(gallery, labels, progress=False, shard=(i, 4)).save(
        tmp_path / f"shard{i}.npz") for i in range(1, 5)]
    assert main(["--build_index", str(tmp_path / "merged.npz"), "--merge",
                 *map(str, shards)]) == 0
    assert "wrote" in capsys.readouterr().err
    one, merged = FaceIndex.load(whole), FaceIndex.load(tmp_path / "merged.npz")
    assert merged.labels == one.labels and merged.sources == one.sources
    np.testing.assert_array_equal(merged.hashes, one.hashes)
    assert len(one.known_hashes()) == len(one) == len(lines[::10])
    np.testing.assert_array_equal(merged.embeddings, one.embeddings)
    assert {k: merged.info[k] for k in ("channel_order", "faces")} == \
        {k: one.info[k] for k in ("channel_order", "faces")}
    queries = one.embeddings[::3] + 0.05
    assert merged.search(queries, one.model) == one.search(queries, one.model)
