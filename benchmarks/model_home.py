"""The model cache the benchmarks run with, so each measures what the runtime does by default
(faces aligned by the keypoint model) without downloads.

`INSIGHTFACE_PADDLE_HOME` when it is set; else `output/benchmark_models` in the checkout, which
links the published models of the shared folder (read-only, so nothing is made there) and holds
BlazeFaceKeypoints, converted once from the shared MediaPipe file.
"""

from __future__ import annotations

import os
from pathlib import Path

from arcface_paddle.demo_setup import keypoint_model
from insightface_paddle import zoo

HOME = Path(__file__).resolve().parents[1] / "output" / "benchmark_models"


def use_shared_models(shared: Path) -> Path:
    """Point the model zoo at the benchmarks' cache -> its folder."""
    if os.environ.get(zoo.HOME_ENV):
        return Path(os.environ[zoo.HOME_ENV])
    HOME.mkdir(parents=True, exist_ok=True)
    for folder in sorted((shared / "models").iterdir()):
        link = HOME / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=folder.is_dir())
    os.environ[zoo.HOME_ENV] = str(HOME)
    keypoint_model(shared, HOME)  # the cache's copy, or made there the first time
    return HOME
