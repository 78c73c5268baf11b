"""Shared fixtures: real data and models come from INSIGHTFACE_PADDLE_SHARED, or from
`../shared` beside the checkout when the variable is unset (the rule scripts/demo.sh follows).

With a shared folder, a missing file fails the test. Without one (a user's machine) tests that
need real data skip; in CI (CI=true) a missing shared folder is itself a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from dist_scripts.processes import MARKER_ENV, kill_pids, wait_until_gone

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "INSIGHTFACE_PADDLE_SHARED"


# -- nothing the suite starts may outlive it ---------------------------------------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    """Mark the environment: every process the suite starts inherits the mark."""
    os.environ[MARKER_ENV] = f"{os.getpid()}-{uuid.uuid4().hex}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process it started (a descendant, one carrying the mark, or one
    naming the session's temporary folder) is still alive; then end those processes."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    # with a separator: another session's pytest-123 must not match this one's pytest-12
    paths = [f"{factory.getbasetemp()}{os.sep}"] if factory is not None else []
    alive = wait_until_gone(os.getpid(), os.environ.get(MARKER_ENV), paths)
    if not alive:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["processes started by the test session are still running:",
             *(f"  {p.describe()}" for p in alive)]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    kill_pids(p.pid for p in alive)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def find_shared_root(environ: Mapping[str, str], repo: Path = REPO) -> Path | None:
    """$INSIGHTFACE_PADDLE_SHARED, else `<repo>/../shared` if it exists, else None."""
    root = environ.get(SHARED_ENV)
    if root:
        return Path(root).resolve()
    beside = repo.parent / "shared"
    return beside.resolve() if beside.is_dir() else None


def _shared_root() -> Path | None:
    root = find_shared_root(os.environ)
    if root is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{SHARED_ENV} is not set and {REPO.parent / 'shared'} does not exist; CI "
                    "must provide the shared data folder")
    return root


@pytest.fixture(scope="session")
def shared():
    """shared("data/lfw.bin") -> Path, failing if the file is missing, skipping if no data."""
    root = _shared_root()
    if root is None:
        pytest.skip(f"{SHARED_ENV} not set and no ../shared: real data and models unavailable")

    def resolve(relative: str) -> Path:
        path = root / relative
        if not path.exists():
            pytest.fail(f"{SHARED_ENV}={root} has no {relative}")
        return path

    return resolve


MEDIAPIPE_FACE = "models/mediapipe_face_0.10.14/face_detection_short_range.tflite"


@pytest.fixture(scope="session")
def model_home(shared, tmp_path_factory) -> Path:
    """Points the model zoo cache at a folder holding the shared, read-only copies of the
    published models (linked) and BlazeFaceKeypoints converted from the shared MediaPipe
    file (about 2 s), so apps align faces as they do by default."""
    from arcface_paddle.keypoints import convert_mediapipe_face
    from insightface_paddle import zoo

    home = tmp_path_factory.mktemp("model_home")
    for folder in shared("models").iterdir():
        (home / folder.name).symlink_to(folder, target_is_directory=folder.is_dir())
    convert_mediapipe_face(home / zoo.ZOO["BlazeFaceKeypoints"].archive, shared(MEDIAPIPE_FACE))
    previous = os.environ.get("INSIGHTFACE_PADDLE_HOME")
    os.environ["INSIGHTFACE_PADDLE_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("INSIGHTFACE_PADDLE_HOME", None)
    else:
        os.environ["INSIGHTFACE_PADDLE_HOME"] = previous


# -- the runtime's real models, loaded once per session -------------------------------------------
@pytest.fixture(scope="session")
def detector(model_home):
    from insightface_paddle import zoo
    from insightface_paddle.detection import FaceDetector

    return FaceDetector.from_folder(zoo.resolve("BlazeFace"))


@pytest.fixture(scope="session")
def embedder(model_home):
    from insightface_paddle import zoo
    from insightface_paddle.recognition import FaceEmbedder

    return FaceEmbedder.from_folder(zoo.resolve("MobileFace"), "MobileFace")


@pytest.fixture(scope="session")
def app(model_home):
    from insightface_paddle import InsightFace

    return InsightFace()


@pytest.fixture(scope="session")
def friends_index(tmp_path_factory, model_home, shared) -> Path:
    """The demo gallery indexed through the CLI, largest detected face of each photo."""
    from insightface_paddle.cli import main

    path = tmp_path_factory.mktemp("friends_index") / "friends.npz"
    code = main(["--build_index", str(path), "--img_dir", str(shared("demo/friends/gallery")),
                 "--detect_gallery"])
    assert code == 0
    return path
