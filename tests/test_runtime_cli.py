"""The `insightfacepaddle` CLI: every user error is one line and a non-zero exit; end to end on
the demo photos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from friends_truth import match_truth
from insightface_paddle.cli import main
from insightface_paddle.index import FaceIndex
from insightface_paddle.outputs import MANIFEST
from insightface_paddle.recognition import ModelSignature
from refusals import assert_refused

REPO = Path(__file__).resolve().parents[1]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert_refused(code, "", err, fragments)


@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.jpg").write_text("this is not an image")
    (tmp_path / "broken.mp4").write_bytes(os.urandom(2048))
    model = tmp_path / "corrupt_model"
    model.mkdir()
    (model / "inference.pdmodel").write_bytes(b"garbage that is not a program")
    (model / "inference.pdiparams").write_bytes(os.urandom(1024))
    (tmp_path / "gallery" / "alice").mkdir(parents=True)
    (tmp_path / "labels.txt").write_text("alice/1.jpg alice\n")  # space, not a tab
    (tmp_path / "photos").mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "photos" / "noise.png"), noise)
    cv2.imwrite(str(tmp_path / "gallery" / "alice" / "1.png"), noise)
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 but no zip after all")
    return tmp_path


@pytest.mark.parametrize("argv, fragments", [
    (["--det", "--input", "{t}/missing.jpg"], ["missing.jpg", "no such file"]),
    (["--det", "--input", "{t}/text.jpg"], ["text.jpg", "not an image"]),
    (["--det", "--input", "{t}/empty"], ["empty", "no images"]),
    (["--det", "--input", "{t}/broken.mp4"], ["broken.mp4", "cannot read video"]),
    (["--input", "{t}/text.jpg"], ["nothing to do"]),
    (["--det", "--rec", "--input", "{t}/empty"], ["--rec needs --index"]),
    (["--det", "--rec", "--index", "{t}/none.npz", "--input", "{t}"], ["none.npz"]),
    (["--det", "--rec", "--index", "{t}/damaged.npz", "--input", "{t}/photos"],
     ["damaged.npz", "not an insightface-paddle index"]),
    (["--det", "--input", "{t}/photos", "--output", "{t}/photos"], ["drawings would replace"]),
    (["--det", "--input", "{t}/photos/noise.png", "--output", "{t}/photos"],
     ["drawings would replace"]),
    (["--det", "--input", "{t}/photos", "--output", "{t}/text.jpg"], ["not a folder"]),
    (["--det", "--input", "{t}/photos", "--output", "/proc/none/out"], ["cannot create folder"]),
    (["--build_index", "/proc/none/i.npz", "--img_dir", "{t}/gallery"], ["cannot create folder"]),
    (["--det", "--input", "{t}/photos", "--cpu_threads", "-3"], ["--cpu_threads must be >= 1"]),
    (["--build_index", "{t}/out.npz"], ["needs --img_dir"]),
    (["--build_index", "{t}/out.pkl", "--img_dir", "{t}/gallery"], [".npz"]),
    (["--build_index", "{t}/out.npz", "--img_dir", "{t}/gallery", "--rec_model",
      "{t}/corrupt_model"], ["corrupt_model", "corrupt model graph"]),
])
def test_user_errors_are_one_line(capsys, bad_inputs, argv, fragments):
    code, _, err = _run(capsys, *[a.format(t=bad_inputs) for a in argv])
    _assert_one_line_error(code, err, *fragments)


def test_missing_model_folder_and_offline_zoo(capsys, tmp_path, monkeypatch, shared):
    image = str(shared("demo/friends/query/Rachel.png"))
    code, _, err = _run(capsys, "--det", "--input", image, "--det_model", str(tmp_path / "nope"))
    _assert_one_line_error(code, err, "neither a folder nor a zoo name")
    monkeypatch.setenv("INSIGHTFACE_PADDLE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("INSIGHTFACE_PADDLE_MODEL_URL", "http://127.0.0.1:9/{}.tar")
    code, _, err = _run(capsys, "--det", "--input", image)
    _assert_one_line_error(code, err, "cannot download BlazeFace", "Offline?")


@pytest.mark.slow
def test_label_file_errors_and_index_of_another_model(capsys, bad_inputs, model_home, shared):
    code, _, err = _run(capsys, "--build_index", f"{bad_inputs}/out.npz", "--img_dir",
                        f"{bad_inputs}/gallery", "--label", f"{bad_inputs}/labels.txt")
    _assert_one_line_error(code, err, "labels.txt:1", "path<TAB>label")
    foreign = FaceIndex(ModelSignature("SomeoneElse", "e" * 64, 128))
    foreign.add(["x"], np.ones((1, 128), np.float32))
    foreign.save(bad_inputs / "foreign.npz")
    code, _, err = _run(capsys, "--det", "--rec", "--index", f"{bad_inputs}/foreign.npz",
                        "--input", str(shared("demo/friends/query/Rachel.png")))
    _assert_one_line_error(code, err, "built with SomeoneElse", "MobileFace")
    assert not (bad_inputs / "out.npz").exists()


def test_entry_point_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "insightface_paddle", "--det", "--input",
                             str(tmp_path / "absent.png")], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'absent.png'}: "
                                                  "no such file or folder"]
    assert result.stdout == ""


@pytest.mark.slow
def test_demo_queries_end_to_end(capsys, friends_index, shared, tmp_path):
    index = FaceIndex.load(friends_index)
    assert len(index) == 245 and index.identities == sorted(
        ["Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross"])
    assert index.info["align"] == "keypoints"  # the default where the keypoint model exists
    code, out, _ = _run(capsys, "--det", "--rec", "--index", str(friends_index), "--input",
                        str(shared("demo/friends/query")), "--output", str(tmp_path / "drawn"),
                        "--json")
    assert code == 0
    results = {r["file"]: r["faces"] for r in json.loads(out)["results"]}
    assert sorted(results) == ["Rachel.png", "friends1.jpg", "friends2.jpg"]
    correct = 0
    for name in ("friends1.jpg", "friends2.jpg"):
        faces = results[name]
        assert len(faces) == 6
        for face in faces:
            assert len(face["box"]) == 4 and face["box"][0] < face["box"][2]
            assert face["label"] and 0 <= face["score"] <= 1
        assert {face["crop"] for face in faces} == {"aligned"}
        truth = match_truth(name, [f["box"] for f in faces])
        correct += sum(faces[i]["label"] == who for who, i in truth.items())
    assert correct == 12, f"{correct} of 12 named correctly"
    assert len(results["Rachel.png"]) == 1
    assert results["Rachel.png"][0]["candidates"][0]["label"] == "Rachel"
    drawn = cv2.imread(str(tmp_path / "drawn" / "friends1.jpg"))
    original = cv2.imread(str(shared("demo/friends/query/friends1.jpg")))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100


@pytest.mark.slow
def test_table_video_legacy_import_and_removal(capsys, friends_index, shared, tmp_path):
    frame = cv2.resize(cv2.imread(str(shared("demo/friends/query/friends2.jpg"))), (960, 540))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (960, 540))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    code, out, _ = _run(capsys, "--det", "--rec", "--index", str(friends_index), "--input",
                        str(video), "--output", str(tmp_path / "drawn"))
    assert code == 0
    assert out.count("clip.mp4#") == 18 and "Chandler" in out  # a table: 3 frames x 6 faces
    drawn = cv2.VideoCapture(str(tmp_path / "drawn" / "clip.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 3

    legacy = tmp_path / "legacy.npz"
    code, _, err = _run(capsys, "--build_index", str(legacy), "--legacy_index",
                        str(shared("demo/friends/index.bin")))
    assert code == 0 and "245 entries" in err
    code, _, err = _run(capsys, "--build_index", str(legacy), "--index", str(legacy),
                        "--remove", "Joey", "Ross")
    assert code == 0
    assert FaceIndex.load(legacy).identities == ["Chandler", "Monica", "Phoebe", "Rachel"]


@pytest.mark.slow
def test_quick_start_demo_script(tmp_path, shared):
    """README's first command (after the install): scripts/demo.sh prints the table, draws."""
    env = {**os.environ, "INSIGHTFACE_PADDLE_SHARED": str(shared(".")),
           "OUT": str(tmp_path / "demo")}
    env.pop("INSIGHTFACE_PADDLE_HOME", None)  # the script finds the shared models itself
    result = subprocess.run(["sh", str(REPO / "scripts" / "demo.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| friends")]
    assert len(rows) == 12 and sum("unknown" in row for row in rows) == 0
    assert sorted(p.name for p in (tmp_path / "demo" / "drawn").iterdir()) == [
        MANIFEST, "Rachel.png", "friends1.jpg", "friends2.jpg"]
