"""Index files against hostile input and concurrent writers (issue 10, items 5, 6, 7, 12, 20)."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from insightface_paddle.cli import main
from insightface_paddle.errors import InsightFaceError
from insightface_paddle.index import FaceIndex
from insightface_paddle.recognition import ModelSignature

REPO = Path(__file__).resolve().parents[1]
MODEL = ModelSignature("TestNet", "a" * 64, 8)


def _index(n: int = 6) -> FaceIndex:
    index = FaceIndex(MODEL, info={"channel_order": "RGB", "faces": "whole photo"})
    index.add([f"id{i % 3}" for i in range(n)], np.random.default_rng(n).standard_normal((n, 8)))
    return index


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _run_all(commands: list[list[str]], timeout: float) -> list[subprocess.CompletedProcess]:
    """Start every command at once, each in its own process group; kill any left at the end."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), start_new_session=True) for c in commands]
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
        return [subprocess.CompletedProcess(c, p.returncode, o, e)
                for c, p, (o, e) in zip(commands, procs, outs, strict=True)]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


# -- 5: writers of one index serialise --------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from insightface_paddle.fileio import exclusive_lock
    from insightface_paddle.index import FaceIndex
    path, name = sys.argv[1], sys.argv[2]
    for step in range(8):
        with exclusive_lock(path):
            index = FaceIndex.load(path)
            time.sleep(0.05)  # without the lock the other writer reads the same old file here
            index.add([f"{name}{step}"], np.ones((1, index.model.embedding_size)))
            index.save(path)
""")


def test_lock_file_serialises_read_modify_write_of_two_processes(tmp_path):
    path = _index().save(tmp_path / "g.npz")
    results = _run_all([[sys.executable, "-c", WRITER, str(path), name] for name in "ab"], 120)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    labels = FaceIndex.load(path).labels
    assert len(labels) == 6 + 16
    assert sorted(labels[6:]) == sorted(f"{n}{s}" for n in "ab" for s in range(8))
    assert stat.S_IMODE((tmp_path / "g.npz.lock").stat().st_mode) == 0o600


@pytest.mark.slow
def test_two_cli_processes_adding_galleries_to_one_index_lose_nothing(shared, model_home,
                                                                       tmp_path):
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()
    parts = {"base": lines[:5], "a": lines[5:125], "b": lines[125:]}
    for name, part in parts.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(part) + "\n")
    index = tmp_path / "g.npz"
    cli = [sys.executable, "-m", "insightface_paddle", "--build_index", str(index)]
    assert main([*cli[3:], "--img_dir", str(gallery), "--label", str(tmp_path / "base.txt")]) == 0
    results = _run_all([[*cli, "--index", str(index), "--img_dir", str(gallery), "--label",
                         str(tmp_path / f"{name}.txt")] for name in "ab"], 600)
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    final = FaceIndex.load(index)
    assert sorted(final.sources) == sorted(str(gallery / line.split("\t")[0]) for line in lines)
    assert len(final) == len(lines) == len(final.known_hashes())


# -- 6: contents checked on load ---------------------------------------------------------------
@pytest.mark.parametrize("damage, length", [
    (lambda e: e * 1000, "1000"),
    (lambda e: np.where(np.arange(len(e))[:, None] == 2, np.nan, e), "nan"),
    (lambda e: np.where(np.arange(len(e))[:, None] == 4, np.inf, e), "inf"),
    (lambda e: np.where(np.arange(len(e))[:, None] == 1, 0.0, e), "length 0"),
])
def test_rows_that_are_not_unit_vectors_are_refused_on_load(tmp_path, capsys, damage, length):
    path = _index().save(tmp_path / "g.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["embeddings"] = damage(arrays["embeddings"]).astype(np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InsightFaceError, match=f"bad.npz: embedding .*{length}.*not 1"):
        FaceIndex.load(tmp_path / "bad.npz")
    # the CLI reads the index before any model and reports it in one line
    code = main(["--rec", "--approximate", "--index", str(tmp_path / "bad.npz"), "--input",
                 str(tmp_path / "g.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "bad.npz: embedding" in err[0]


def test_legacy_index_with_nan_rows_is_refused(tmp_path):
    bad = {"label": ["a", "b"], "feature": [np.ones((1, 8), np.float32),
                                             np.full((1, 8), np.nan, np.float32)]}
    (tmp_path / "nan.bin").write_bytes(pickle.dumps(bad))
    with pytest.raises(InsightFaceError, match=r"nan.bin: .*feature 1 \('b'\) is zero or not fin"):
        FaceIndex.from_legacy(tmp_path / "nan.bin", MODEL)
    # (an empty old index: tests/test_legacy_pickle.py and tests/test_hostile_inputs.py)




# -- 7: file modes -----------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_index_files_are_private_and_updates_keep_the_mode(tmp_path, capsys):
    old_umask = os.umask(0o022)
    try:
        path = _index().save(tmp_path / "g.npz")
        assert _mode(path) == 0o600
        path.chmod(0o640)
        _index(9).save(path)
        assert _mode(path) == 0o640
        _index().save(tmp_path / "shared.npz", mode=0o644)
        assert _mode(tmp_path / "shared.npz") == 0o644
        # the CLI: an in-place update keeps the mode; a new file is 0600 unless --index_mode
        assert main(["--build_index", str(path), "--merge", str(path),
                     str(tmp_path / "shared.npz")]) == 0
        assert _mode(path) == 0o640 and len(FaceIndex.load(path)) == 9 + 6
        assert main(["--build_index", str(tmp_path / "new.npz"), "--merge", str(path)]) == 0
        assert _mode(tmp_path / "new.npz") == 0o600
        assert main(["--build_index", str(tmp_path / "open.npz"), "--merge", str(path),
                     "--index_mode", "644"]) == 0
        assert _mode(tmp_path / "open.npz") == 0o644
    finally:
        os.umask(old_umask)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--build_index", str(tmp_path / "x.npz"), "--merge", str(path), "--index_mode",
              "rw"])
    assert "octal" in capsys.readouterr().err


# -- 12: the same photos twice ----------------------------------------------------------------
@pytest.mark.slow
def test_adding_the_same_gallery_twice_skips_the_photos_already_in(app, shared, tmp_path,
                                                                    caplog):
    gallery = shared("demo/friends/gallery")
    lines = (gallery / "label.txt").read_text().splitlines()[::20]
    (tmp_path / "labels.txt").write_text("\n".join(lines) + "\n")
    index = app.build_index(gallery, tmp_path / "labels.txt", progress=False)
    assert len(index) == len(lines)
    with caplog.at_level(logging.WARNING):
        again = app.build_index(gallery, tmp_path / "labels.txt", base=index, progress=False)
    assert len(again) == len(lines)
    assert f"{len(lines)} of {len(lines)} gallery photos are already in the index" in caplog.text
    # a copy of a photo under another name is the same photo
    first = gallery / lines[0].split("\t")[0]
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "dup.jpg").write_bytes(first.read_bytes())
    (tmp_path / "copy" / "new.txt").write_text("dup.jpg\tSomeone\n")
    assert len(app.build_index(tmp_path / "copy", tmp_path / "copy" / "new.txt", base=again,
                               progress=False)) == len(lines)


# -- 20: print(index) --------------------------------------------------------------------------
def test_repr_is_a_summary_not_every_label():
    index = FaceIndex(MODEL)
    index.add([f"person{i}" for i in range(2000)], np.ones((2000, 8)),
              [f"/photos/{i}.jpg" for i in range(2000)])
    text = repr(index)
    assert len(text) < 200 and "2000 entries" in text and "2000 identities" in text
    assert "TestNet" in text and "8-D" in text and "person1" not in text and str(index) == text
