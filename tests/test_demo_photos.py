"""The demo photos come from the old project's repository when no local copy exists: checked
against the manifest, cached under the model home, written atomically; offline, the demo says
once what it lacks. Downloads go to a local HTTP server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from arcface_paddle.demo_setup import prepare_demo
from arcface_paddle.errors import ArcFaceError
from insightface_paddle import demo_photos, zoo
from insightface_paddle.errors import InsightFaceError
from insightface_paddle.fileio import is_temporary, sha256_file
from local_server import serve

REPO = Path(__file__).resolve().parents[1]
DEMO = "demo/friends"
NOTHING_LISTENS = "http://127.0.0.1:9/"  # the discard port: connection refused


@pytest.fixture
def server(shared):
    """Serves the shared copy of demo/friends at the paths of the repository's raw files."""
    source = shared(DEMO)
    with serve() as httpd:
        httpd.files.update({path: (source / path).read_bytes()
                            for path in demo_photos.manifest()})
        yield httpd


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty model home; no demo folder named."""
    folder = tmp_path / "home"
    monkeypatch.setenv(zoo.HOME_ENV, str(folder))
    monkeypatch.delenv(demo_photos.DEMO_ENV, raising=False)
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_manifest_is_the_published_demo(shared):
    """Every photo and the label file of gallery/ and query/, with the published bytes."""
    source = shared(DEMO)
    sums = demo_photos.manifest()
    expected = [p for p in _files(source) if p.startswith(("gallery/", "query/"))]
    assert sorted(sums) == expected and len(sums) == 249
    assert {"gallery/label.txt", "query/friends1.jpg", "query/friends2.jpg",
            "query/Rachel.png"} <= set(sums)
    assert all(sha256_file(source / path) == digest for path, digest in sums.items())
    published = ("https://raw.githubusercontent.com/littletomatodonkey/insight-face-paddle/"
                 f"{demo_photos.COMMIT}/demo/friends/")
    assert published == demo_photos.DEFAULT_URL


def test_download_is_verified_cached_and_reused(server, home, shared, monkeypatch):
    monkeypatch.setenv(demo_photos.URL_ENV, server.base)
    folder = demo_photos.find_or_fetch()
    assert folder == home / "demo" / "friends"
    assert _files(folder) == sorted(demo_photos.manifest())  # no temporaries left
    assert all((folder / p).read_bytes() == (shared(DEMO) / p).read_bytes()
               for p in demo_photos.manifest())
    assert len(server.requests) == 249
    server.requests.clear()
    assert demo_photos.find_or_fetch() == folder and server.requests == []  # a cache hit

    (folder / "query" / "Rachel.png").unlink()
    (folder / "gallery" / "label.txt").write_text("modified\n")
    assert demo_photos.fetch_demo_photos() == folder
    assert sorted(server.requests) == ["gallery/label.txt", "query/Rachel.png"]
    assert demo_photos.stale_files(folder) == []


def test_a_tampered_file_is_refused_and_not_kept(server, home, monkeypatch):
    monkeypatch.setenv(demo_photos.URL_ENV, server.base)
    data = server.files["query/friends2.jpg"]
    server.files["query/friends2.jpg"] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(InsightFaceError, match=r"friends2\.jpg .*does not match its sha256"):
        demo_photos.fetch_demo_photos()
    folder = home / "demo" / "friends"
    assert not (folder / "query" / "friends2.jpg").exists()
    assert not any(is_temporary(p.name) for p in folder.rglob("*"))
    assert demo_photos.stale_files(folder) == ["query/friends2.jpg"]  # the rest is kept
    server.files["query/friends2.jpg"] = data
    server.requests.clear()
    demo_photos.fetch_demo_photos()
    assert server.requests == ["query/friends2.jpg"]


def test_local_copies_come_first(server, home, shared, tmp_path, monkeypatch):
    monkeypatch.setenv(demo_photos.URL_ENV, server.base)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo_photos.find_or_fetch([empty, shared(DEMO)]) == shared(DEMO)
    monkeypatch.setenv(demo_photos.DEMO_ENV, str(shared(DEMO)))
    assert demo_photos.find_or_fetch([empty]) == shared(DEMO)
    monkeypatch.setenv(demo_photos.DEMO_ENV, str(empty))
    with pytest.raises(InsightFaceError, match=r"INSIGHTFACE_PADDLE_DEMO: .*no gallery/label\.txt"):
        demo_photos.find_or_fetch([shared(DEMO)])
    assert server.requests == [] and not home.exists()


def test_offline_command_is_one_line_and_leaves_nothing(home):
    env = {**os.environ, demo_photos.URL_ENV: NOTHING_LISTENS}
    result = subprocess.run([sys.executable, "-m", "insightface_paddle.demo_photos"], env=env,
                            cwd=REPO, capture_output=True, text=True)  # as from a checkout
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download the demo photo ")
    assert demo_photos.DEMO_ENV in lines[0]
    assert not home.exists()  # no empty cache folder either


def test_only_what_is_missing_is_named(model_home, tmp_path, monkeypatch):
    """Models present, photos unreachable: the message is about the photos alone."""
    monkeypatch.delenv(demo_photos.DEMO_ENV, raising=False)
    monkeypatch.setenv(demo_photos.URL_ENV, NOTHING_LISTENS)
    home = tmp_path / "home"
    home.mkdir()
    for entry in model_home.iterdir():
        (home / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    monkeypatch.setenv(zoo.HOME_ENV, str(home))
    with pytest.raises(ArcFaceError) as caught:
        prepare_demo(None, tmp_path / "work")
    message = str(caught.value)
    assert "the demo photos could not be" in message and demo_photos.DEMO_ENV in message
    assert "model" not in message.split("Local copies")[0] and zoo.HOME_ENV not in message
    assert not (tmp_path / "work").exists() and not (home / "demo").exists()


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """demo.sh with no shared folder (an empty one is named) and its own output folder."""
    (tmp_path / "no_shared").mkdir(exist_ok=True)
    env = {**os.environ, "INSIGHTFACE_PADDLE_SHARED": str(tmp_path / "no_shared"),
           "OUT": str(tmp_path / "out"), **extra}
    env.pop(demo_photos.DEMO_ENV, None)
    return env


def _offline(tmp_path: Path) -> dict[str, str]:
    """Every download fails at once: the zoo, the photos and pip (the mediapipe wheel)."""
    (tmp_path / "no_wheels").mkdir(exist_ok=True)
    return {zoo.URL_ENV: NOTHING_LISTENS + "{}.tar", demo_photos.URL_ENV: NOTHING_LISTENS,
            "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(tmp_path / "no_wheels")}


@pytest.mark.slow
def test_demo_script_offline_names_everything_once(tmp_path):
    env = _demo_env(tmp_path, **_offline(tmp_path), INSIGHTFACE_PADDLE_HOME=str(tmp_path / "h"))
    result = subprocess.run(["sh", str(REPO / "scripts" / "demo.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for name in ("BlazeFace, MobileFace, BlazeFaceKeypoints and the demo photos",
                 "INSIGHTFACE_PADDLE_HOME", "INSIGHTFACE_PADDLE_DEMO", str(tmp_path / "h")):
        assert name in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "h").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_preparation_downloads_the_photos(server, model_home, tmp_path):
    """No local photos: the step demo.sh starts with (tools/prepare_demo.py, called as the
    script calls it) fetches them into the model home and names that folder; what demo.sh does
    with the folder it is given is tests/test_runtime_cli.py::test_quick_start_demo_script."""
    home = tmp_path / "home"
    home.mkdir()
    for entry in model_home.iterdir():  # the models (and the keypoint model) are there
        (home / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    env = _demo_env(tmp_path, INSIGHTFACE_PADDLE_HOME=str(home),
                    **{demo_photos.URL_ENV: server.base})
    result = subprocess.run([sys.executable, str(REPO / "tools" / "prepare_demo.py"), "--shared",
                             env["INSIGHTFACE_PADDLE_SHARED"], "--work", str(tmp_path / "work")],
                            env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    photos, keypoints = result.stdout.splitlines()
    assert Path(photos) == home / "demo" / "friends"
    assert Path(keypoints).parent == home
    assert demo_photos.stale_files(home / "demo" / "friends") == []
    assert len(server.requests) == 249
