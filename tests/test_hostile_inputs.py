"""Hostile inputs to the runtime CLI and the Python API (issue 10, items 8-11 and 20).

The rule: a problem a user can cause is one line on stderr and a non-zero exit, never a
traceback; checks that need no model run before any model loads; a failed run leaves no empty
folders; `--output` never replaces a file it did not draw; in a folder, each unreadable file is
one line and is skipped while the others are reported.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from insightface_paddle import Face, InsightFace, InsightFaceError
from insightface_paddle.media import InputSource, decode_image
from insightface_paddle.outputs import MANIFEST, OutputFolder
from insightface_paddle.report import RunReport, results_json, results_table
from refusals import assert_refused

REPO = Path(__file__).resolve().parents[1]
#: the two ways to start the CLI: the module, and what the `insightfacepaddle` script runs
ENTRY_POINTS = {
    "module": [sys.executable, "-m", "insightface_paddle"],
    "script": [sys.executable, "-c",
               "import sys; from insightface_paddle.cli import main; sys.exit(main())"],
}


def png_claiming(width: int, height: int, rows: int = 4) -> bytes:
    """A PNG whose header declares width x height (8-bit RGB) with the first `rows` rows of
    pixel data: a decoder without a pixel cap allocates the whole declared image."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    raw = (b"\x00" + bytes(3 * width)) * rows
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def run_cli(argv: list[str], entry: str = "module", env: dict[str, str] | None = None,
            memory_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(ENTRY_POINTS[entry] + argv, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, preexec_fn=limit, timeout=300)


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    return assert_refused(result.returncode, result.stdout, result.stderr, fragments,
                          exit_code=None)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder of bad inputs; none of them needs a model to be refused."""
    t = tmp_path_factory.mktemp("hostile")
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(t / "good.png"), photo)
    png = (t / "good.png").read_bytes()
    jpeg = cv2.imencode(".jpg", photo)[1]
    (t / "empty.jpg").write_bytes(b"")
    (t / "text.jpg").write_text("this is not an image")
    (t / "truncated.png").write_bytes(png[: len(png) // 2])
    (t / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (t / "huge.png").write_bytes(png_claiming(40000, 40000))
    (t / "bomb.png").write_bytes(png_claiming(30000, 30000))
    (t / "a_folder.jpg").mkdir()
    (t / "a_folder.npz").mkdir()
    (t / "plain_file").write_text("x")
    (t / "empty.npz").write_bytes(b"")
    (t / "empty_legacy.bin").write_bytes(b"")
    (t / "gallery" / "alice").mkdir(parents=True)
    cv2.imwrite(str(t / "gallery" / "alice" / "1.png"), photo)
    return t


#: (argv, fragments of the one line); {t} is the hostile folder, {m} the shared models
CASES = {
    "missing input": (["--det", "--input", "{t}/missing.jpg"], ["missing.jpg", "no such"]),
    "empty input": (["--det", "--input", "{t}/empty.jpg"], ["empty.jpg", "empty file"]),
    "not an image": (["--det", "--input", "{t}/text.jpg"], ["text.jpg", "not an image"]),
    "device as image": (["--det", "--input", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    "truncated png": (["--det", "--input", "{t}/truncated.png"], ["truncated.png"]),
    "truncated jpeg": (["--det", "--input", "{t}/truncated.jpg"], ["truncated.jpg"]),
    "huge png": (["--det", "--input", "{t}/huge.png"], ["huge.png", "40000x40000",
                                                          "--max_megapixels"]),
    "bomb png": (["--det", "--input", "{t}/bomb.png"], ["bomb.png", "900 megapixels"]),
    "small cap": (["--det", "--input", "{t}/good.png", "--max_megapixels", "0.001"],
                  ["good.png", "80x60"]),
    "folder as image": (["--det", "--rec", "--index", "{t}/a_folder.jpg", "--input",
                         "{t}/good.png"], ["a_folder.jpg"]),
    "folder as label file": (["--build_index", "{t}/o.npz", "--img_dir", "{t}/gallery",
                              "--label", "{t}/a_folder.jpg"], ["a_folder.jpg"]),
    "folder as legacy index": (["--build_index", "{t}/o.npz", "--legacy_index",
                                "{t}/a_folder.jpg"], ["a_folder.jpg"]),
    "folder as index target": (["--build_index", "{t}/a_folder.npz", "--img_dir",
                                "{t}/gallery"], ["a_folder.npz", "is a folder"]),
    "empty index": (["--det", "--rec", "--index", "{t}/empty.npz", "--input", "{t}/good.png"],
                    ["empty.npz"]),
    "empty legacy index": (["--build_index", "{t}/o.npz", "--legacy_index",
                            "{t}/empty_legacy.bin"], ["empty_legacy.bin"]),
    "file as gallery": (["--build_index", "{t}/o.npz", "--img_dir", "{t}/plain_file"],
                        ["plain_file", "gallery folder not found"]),
    "file as output": (["--det", "--input", "{t}/good.png", "--output", "{t}/plain_file"],
                       ["plain_file", "not a folder"]),
    "output under a file": (["--det", "--input", "{t}/good.png", "--output",
                             "{t}/plain_file/sub"], ["plain_file", "is a file"]),
    "unwritable output": (["--det", "--input", "{t}/good.png", "--output", "/proc/none/out"],
                          ["cannot create folder"]),
    "unwritable index": (["--build_index", "/proc/none/i.npz", "--img_dir", "{t}/gallery"],
                         ["cannot create folder"]),
    "file as model": (["--det", "--input", "{t}/good.png", "--det_model", "{t}/plain_file"],
                      ["plain_file", "neither a folder nor a zoo name"]),
    "batch size 0": (["--det", "--input", "{t}/good.png", "--max_batch_size", "0"],
                     ["--max_batch_size must be >= 1"]),
    "batch size 0 for an index": (["--build_index", "{t}/o.npz", "--img_dir", "{t}/gallery",
                                   "--max_batch_size", "0"], ["--max_batch_size"]),
    "batch size text": (["--det", "--input", "{t}/good.png", "--max_batch_size", "many"],
                        ["--max_batch_size", "invalid int"]),
    "100000 threads": (["--det", "--input", "{t}/good.png", "--cpu_threads", "100000"],
                       ["--cpu_threads must be at most"]),
    "nan threshold": (["--det", "--input", "{t}/good.png", "--det_thresh", "nan"],
                      ["--det_thresh must be finite"]),
    "threshold above 1": (["--det", "--input", "{t}/good.png", "--det_thresh", "2"],
                          ["--det_thresh must be between 0 and 1"]),
    "no candidates": (["--det", "--input", "{t}/good.png", "--cdd_num", "0"], ["--cdd_num"]),
    "tiny detector side": (["--det", "--input", "{t}/good.png", "--det_max_side", "1"],
                           ["--det_max_side"]),
    "negative pixel cap": (["--det", "--input", "{t}/good.png", "--max_megapixels", "-1"],
                           ["--max_megapixels"]),
    "unknown flag": (["--det", "--input", "{t}/good.png", "--bogus"], ["--bogus"]),
    "gallery missing": (["--build_index", "{t}/o.npz", "--img_dir", "{t}/nowhere"],
                        ["nowhere", "gallery folder not found"]),
    "bad infer_cfg mean": (["--det", "--input", "{t}/good.png", "--det_model",
                            "{t}/bad_cfg_model"], ["infer_cfg.yml", "numeric mean"]),
    "bad model_meta size": (["--build_index", "{t}/o.npz", "--img_dir", "{t}/gallery",
                             "--rec_model", "{t}/bad_meta_model"], ["model_meta.json",
                                                                    "input size"]),
}


@pytest.fixture(scope="module")
def bad_models(hostile, shared):
    """Real model files with tampered metadata (links to the shared models)."""
    blaze = shared("models/blazeface_fpn_ssh_1000e_v1.0_infer")
    mobile = shared("models/mobileface_v1.0_infer")
    for name, source in (("bad_cfg_model", blaze), ("bad_meta_model", mobile)):
        folder = hostile / name
        folder.mkdir(exist_ok=True)
        for file in ("inference.pdmodel", "inference.pdiparams"):
            target = folder / file
            if not target.exists():
                target.symlink_to(source / file)
    (hostile / "bad_cfg_model" / "infer_cfg.yml").write_text(
        "Preprocess:\n- type: NormalizeImage\n  mean: [zero, 0.5, 0.5]\n  std: [1, 1, 1]\n")
    (hostile / "bad_meta_model" / "model_meta.json").write_text(json.dumps(
        {"format_version": 1, "name": "m",
         "input": {"mean": [127.5] * 3, "std": [127.5] * 3, "size": ["112", 112.5]}}))
    return hostile


@pytest.mark.parametrize("case, entry", [(case, "module") for case in sorted(CASES)]
                         + [(case, "script") for case in ("missing input", "huge png",
                                                           "unknown flag", "100000 threads")])
def test_cli_refuses_in_one_line_before_models_load(bad_models, case, entry, tmp_path):
    argv, fragments = CASES[case]
    # no model may load: the zoo points at an empty cache that cannot download
    env = {"INSIGHTFACE_PADDLE_HOME": str(tmp_path / "cache"),
           "INSIGHTFACE_PADDLE_MODEL_URL": "http://127.0.0.1:9/{}.tar"}
    limit = 2 << 30 if case in ("huge png", "bomb png") else None  # no decoding of gigabytes
    result = run_cli([a.format(t=bad_models) for a in argv], entry, env, memory_limit=limit)
    assert_one_line(result, *fragments)
    assert result.stdout == ""
    assert not (tmp_path / "cache").exists()  # nothing was downloaded, no folder left
    assert not (bad_models / "o.npz").exists()


def test_failures_leave_no_empty_folders(hostile, tmp_path):
    env = {"INSIGHTFACE_PADDLE_HOME": str(tmp_path / "home" / ".insightface_paddle"),
           "INSIGHTFACE_PADDLE_MODEL_URL": "http://127.0.0.1:9/{}.tar"}
    # the offline zoo fails after the output folder was made: both are gone again
    result = run_cli(["--det", "--input", str(hostile / "good.png"), "--output",
                      str(tmp_path / "out" / "demo")], env=env)
    assert_one_line(result, "cannot download BlazeFace")
    result = run_cli(["--build_index", str(tmp_path / "index" / "sub" / "i.npz"), "--img_dir",
                      str(hostile / "gallery")], env=env)
    assert_one_line(result, "cannot download MobileFace")
    assert sorted(os.listdir(tmp_path)) == []


def test_output_never_replaces_files_it_did_not_draw(tmp_path):
    photo = np.full((40, 40, 3), 200, np.uint8)
    (tmp_path / "ow" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "ow" / "sub" / "photo.jpg"), photo)
    (tmp_path / "ow" / "photo.jpg").write_bytes(b"the user's own photo")
    result = run_cli(["--det", "--input", str(tmp_path / "ow" / "sub"), "--output",
                      str(tmp_path / "ow")])
    assert_one_line(result, "photo.jpg exists and was not drawn")
    assert (tmp_path / "ow" / "photo.jpg").read_bytes() == b"the user's own photo"

    # what this tool drew itself it may draw again (a rerun into the same folder)
    source = InputSource(tmp_path / "ow" / "sub")
    out = OutputFolder(tmp_path / "drawn", source)
    out.draw(next(iter(source)), [])
    out.close()
    assert (tmp_path / "drawn" / MANIFEST).read_text().split() == ['"photo.jpg"']
    again = OutputFolder(tmp_path / "drawn", InputSource(tmp_path / "ow" / "sub"))
    again.close()
    (tmp_path / "drawn" / MANIFEST).unlink()  # without its record the drawing is foreign
    with pytest.raises(InsightFaceError, match="was not drawn"):
        OutputFolder(tmp_path / "drawn", InputSource(tmp_path / "ow" / "sub"))


def test_a_bad_file_in_a_folder_is_skipped_and_the_rest_reported(hostile, model_home, shared,
                                                                  tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(shared("demo/friends/query/Rachel.png"), folder / "b_rachel.png")
    for name in ("empty.jpg", "text.jpg", "truncated.png", "huge.png"):
        shutil.copy(hostile / name, folder / f"a_{name}")
    (folder / "c_folder.jpg").mkdir()  # listed as an image, is a folder
    env = {"INSIGHTFACE_PADDLE_HOME": str(model_home)}
    result = run_cli(["--det", "--input", str(folder), "--json", "--output",
                      str(tmp_path / "drawn")], env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, result.stderr  # the folder named *.jpg is not listed as an image
    for name, line in zip(("a_empty.jpg", "a_huge.png", "a_text.jpg", "a_truncated.png"),
                          errors, strict=True):
        assert name in line
    payload = json.loads(result.stdout)
    assert [r["file"] for r in payload["results"]] == ["b_rachel.png"]
    assert len(payload["results"][0]["faces"]) == 1
    assert [f["file"] for f in payload["failed"]] == [
        "a_empty.jpg", "a_huge.png", "a_text.jpg", "a_truncated.png"]
    assert sorted(os.listdir(tmp_path / "drawn")) == [MANIFEST, "b_rachel.png"]



def small_video(path: Path, frames: int = 12) -> bytes:
    """A readable .mp4 (OpenCV's mp4v: its index comes last, as most encoders write it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    assert cv2.VideoCapture(str(path)).read()[0], "the test's own video is unreadable"
    return data


def test_a_bad_video_in_a_folder_is_skipped_and_the_rest_reported(model_home, shared, tmp_path):
    """Issue 10, item 8, for videos: a truncated .mp4 and one of junk bytes among photos each
    get one line and are skipped; the photos are reported; the exit status says inputs failed.
    A readable video is not silently passed over either: a folder input reads its images, and
    the line says to give the video on its own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("Rachel.png", "friends1.jpg"):
        shutil.copy(shared(f"demo/friends/query/{name}"), folder / name)
    whole = small_video(tmp_path / "clip.mp4")
    (folder / "a_truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "b_junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 64)
    (folder / "c_readable.mp4").write_bytes(whole)
    env = {"INSIGHTFACE_PADDLE_HOME": str(model_home)}
    result = run_cli(["--det", "--input", str(folder), "--json", "--output",
                      str(tmp_path / "drawn")], env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[3:] == [f"drawn results in {tmp_path / 'drawn'}"], result.stderr
    lines = lines[:3]  # one line per video, nothing else
    assert lines[0] == f"error: {folder / 'a_truncated.mp4'}: cannot read video"
    assert lines[1] == f"error: {folder / 'b_junk.mp4'}: cannot read video"
    assert lines[2].startswith(f"error: {folder / 'c_readable.mp4'}: a video;"), lines[2]
    assert "--input" in lines[2]
    payload = json.loads(result.stdout)
    assert [r["file"] for r in payload["results"]] == ["Rachel.png", "friends1.jpg"]
    assert all(r["faces"] for r in payload["results"])
    assert [(f["file"], f["error"]) for f in payload["failed"]] == [
        (name, line[len("error: "):]) for name, line in
        zip(("a_truncated.mp4", "b_junk.mp4", "c_readable.mp4"), lines, strict=True)]
    assert sorted(os.listdir(tmp_path / "drawn")) == [MANIFEST, "Rachel.png", "friends1.jpg"]



def test_a_folder_of_videos_only_is_refused_before_models_load(tmp_path):
    small_video(tmp_path / "clip.mp4")
    with pytest.raises(InsightFaceError, match=r"folder holds no images \(.*\); a video is read "
                                               r"when given as --input on its own"):
        InputSource(tmp_path)


def face(x1: float, y1: float, score: float) -> Face:
    return Face((x1, y1, x1 + 10, y1 + 10), score)


def test_reports_list_faces_left_to_right():
    faces = [face(300, 10, 0.99), face(20, 50, 0.95), face(150, 5, 0.90)]  # detector order
    report = RunReport(results=[("group.jpg", faces)])
    rows = [line for line in str(results_table(report)).splitlines() if "group.jpg" in line]
    assert [row.split("|")[3].split(",")[0].strip() for row in rows] == ["20", "150", "300"]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "2", "3"]
    boxes = json.loads(results_json(report))["results"][0]["faces"]
    assert [b["box"][0] for b in boxes] == [20, 150, 300]


def test_pixel_cap_is_checked_before_decoding():
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 100_000
    with pytest.raises(InsightFaceError, match="900 megapixels, above the limit of 150"):
        decode_image(bomb, "bomb.png")
    small = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    assert decode_image(small, "small.png", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(InsightFaceError, match="40x30"):
        decode_image(small, "small.png", max_pixels=1199)


def test_api_constructor_refuses_bad_options_before_loading(tmp_path):
    for kwargs, fragment in [({"det_thresh": "0.5"}, "--det_thresh must be a number"),
                             ({"max_batch_size": 0}, "--max_batch_size"),
                             ({"cpu_threads": 100000}, "--cpu_threads must be at most"),
                             ({"cdd_num": 2.5}, "--cdd_num must be an integer"),
                             ({"rec_thresh": float("nan")}, "--rec_thresh must be finite"),
                             ({"max_pixels": 0}, "max_pixels"),
                             ({"index": 42}, "index must be a path or a FaceIndex")]:
        with pytest.raises(InsightFaceError, match=fragment):
            # a model folder that does not exist: the check must come before any loading
            InsightFace(det_model=tmp_path / "none", rec_model=None, **kwargs)


@pytest.mark.slow
def test_api_bad_arguments_are_the_one_error_type(app):
    rgb = np.zeros((50, 60, 3), np.uint8)
    bad_calls = [
        (lambda: app.predict(None), "image must be a path or a uint8 ndarray"),
        (lambda: app.predict(np.zeros((0, 0, 3), np.uint8)), "must not be empty"),
        (lambda: app.predict(rgb, channel_order=None), "channel_order"),
        (lambda: app.detect(12), "image must be a path"),
        (lambda: app.embed(rgb, boxes=[[1, 2]]), r"boxes must be \[K, >=4\]"),
        (lambda: app.embed(rgb, boxes=[["a", "b", "c", "d"]]), "boxes must be numbers"),
        (lambda: app.embed(rgb, boxes=np.array([[np.nan, 0, 10, 10]])), "finite"),
        (lambda: app.embed(rgb, boxes=[[10, 10, 5, 5]]), "x1 < x2"),
        (lambda: app.embed(rgb, boxes=[[500, 500, 600, 600]]), "outside the 60x50 image"),
        (lambda: app.embed(rgb, boxes=[[0, 0, 1e6, 1e6]]), "more than 4x the image"),
        (lambda: app.set_index(3.5), "index must be a path or a FaceIndex"),
        (lambda: app.build_index(None), "img_dir must be a path"),
        (lambda: app.build_index("gallery", base="index.npz"), "base must be a FaceIndex"),
    ]
    for call, fragment in bad_calls:
        with pytest.raises(InsightFaceError, match=fragment):
            call()
    assert app.embed(rgb, boxes=[[-5, -5, 30, 30]]).shape == (1, 128)  # partly outside: padded
