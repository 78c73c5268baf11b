"""What `scripts/demo.sh` needs, found, fetched or made in one pass before it starts: the demo
photos, the zoo's BlazeFace and MobileFace models, and the BlazeFaceKeypoints model (converted
from MediaPipe's file, so it lives on the training side).

Each is tried even when another failed, so an offline machine hears once about everything it
lacks and where local copies go, instead of one problem per run with a hint meant for another
command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from insightface_paddle import demo_photos, zoo
from insightface_paddle.errors import InsightFaceError, describe_os_error

from .errors import ArcFaceError

DEMO_MODELS = ("BlazeFace", "MobileFace")  # the CLI's defaults
KEYPOINTS = "BlazeFaceKeypoints"
#: MediaPipe's face detector under the shared data folder: the keypoint model without a download
SHARED_MEDIAPIPE = "models/mediapipe_face_0.10.14/face_detection_short_range.tflite"

T = TypeVar("T")


@dataclass(frozen=True)
class DemoInputs:
    photos: Path  # gallery/ (label.txt) and query/
    keypoints: Path  # the BlazeFaceKeypoints model folder


@dataclass(frozen=True)
class _Missing:
    what: str  # a zoo model name, or PHOTOS
    reason: str


PHOTOS = "the demo photos"


def prepare_demo(shared: Path | None, work: Path) -> DemoInputs:
    """Find, download or make every input of the demo. `shared`: the project's shared data
    folder (a local source of photos and of MediaPipe's file), if any; `work`: where the
    keypoint model is made when the model cache lacks it (the cache may be read-only)."""
    missing: list[_Missing] = []
    candidates = [shared / "demo" / "friends"] if shared is not None else []
    photos = _attempt(PHOTOS, lambda: demo_photos.find_or_fetch(candidates), missing)
    for name in DEMO_MODELS:
        _attempt(name, lambda name=name: zoo.resolve(name), missing)
    keypoints = _attempt(KEYPOINTS, lambda: keypoint_model(shared, work), missing)
    if missing:
        raise ArcFaceError(missing_message(missing))
    assert photos is not None and keypoints is not None
    return DemoInputs(photos, keypoints)


def keypoint_model(shared: Path | None, work: Path) -> Path:
    """The cache's BlazeFaceKeypoints, else the one made in `work` before, else make it there
    from the shared MediaPipe file or (without one) from the mediapipe wheel pip fetches."""
    from .keypoints import convert_mediapipe_face  # imports paddle: only when needed

    archive = zoo.ZOO[KEYPOINTS].archive
    for folder in (zoo.model_home() / archive, work / archive):
        if zoo.folder_problem(KEYPOINTS, folder) is None:
            return folder
    source = shared / SHARED_MEDIAPIPE if shared is not None else None
    convert_mediapipe_face(work / archive, source if source and source.is_file() else None)
    return work / archive


def _attempt(what: str, get: Callable[[], T], missing: list[_Missing]) -> T | None:
    try:
        return get()
    except zoo.DownloadError as exc:
        missing.append(_Missing(what, exc.what))  # without the hint of another command
    except (InsightFaceError, ArcFaceError) as exc:
        missing.append(_Missing(what, str(exc)))
    except OSError as exc:
        missing.append(_Missing(what, describe_os_error(exc)))
    return None


def missing_message(missing: list[_Missing]) -> str:
    """One message: everything missing, the first reason, and where each local copy goes."""
    names = [m.what for m in missing]
    models = [n for n in names if n in zoo.ZOO]
    lacking = []
    if models:
        lacking.append(f"the model{'s' if len(models) > 1 else ''} {', '.join(models)}")
    if PHOTOS in names:
        lacking.append(PHOTOS)
    text = (f"the demo cannot start: {' and '.join(lacking)} could not be found, downloaded or "
            f"made (offline? first problem: {missing[0].reason})")
    places = []
    if models:
        folders = ", ".join(f"{zoo.ZOO[n].archive}/" for n in models)
        places.append(f"put the model folders ({folders}) in {zoo.HOME_ENV} "
                      f"(now {zoo.model_home()})")
    if KEYPOINTS in models:
        places.append("make the keypoint model from MediaPipe's face_detection_short_range"
                      ".tflite with `python tools/convert_mediapipe_face.py --source FILE "
                      f"--output {zoo.model_home() / zoo.ZOO[KEYPOINTS].archive}`")
    if PHOTOS in names:
        places.append(f"point {demo_photos.DEMO_ENV} at a copy of the demo photos "
                      f"({demo_photos.LAYOUT}; demo/friends of github.com/"
                      f"{demo_photos.REPOSITORY})")
    return f"{text}. Local copies: {'; '.join(places)}"
