"""One rule for where the shared data is, in the tests and in scripts/demo.sh:
INSIGHTFACE_PADDLE_SHARED, else ../shared beside the checkout when it exists, else none."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import SHARED_ENV, find_shared_root

REPO = Path(__file__).resolve().parents[1]


def test_the_variable_wins(tmp_path):
    (tmp_path / "shared").mkdir()
    elsewhere = tmp_path / "elsewhere"
    assert find_shared_root({SHARED_ENV: str(elsewhere)}, tmp_path / "clone") == elsewhere.resolve()


def test_shared_beside_the_checkout_is_used_when_present(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    assert find_shared_root({}, clone) is None
    assert find_shared_root({SHARED_ENV: ""}, clone) is None  # an empty variable is unset
    (tmp_path / "shared").mkdir()
    beside = (tmp_path / "shared").resolve()
    assert find_shared_root({}, clone) == beside
    assert find_shared_root({SHARED_ENV: ""}, clone) == beside


def _clone_with_shared_demo(tmp_path: Path, shared_demo: Path | None) -> Path:
    """A copy of what demo.sh runs, with (or without) a ../shared holding only the demo photos."""
    clone = tmp_path / "clone"
    for name in ("scripts", "tools", "arcface_paddle", "insightface_paddle"):
        shutil.copytree(REPO / name, clone / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if shared_demo is not None:
        (tmp_path / "shared" / "demo").mkdir(parents=True)
        (tmp_path / "shared" / "demo" / "friends").symlink_to(shared_demo)
    return clone


@pytest.mark.slow
@pytest.mark.parametrize("beside", [True, False], ids=["shared_beside", "no_shared"])
def test_demo_script_follows_the_rule(beside, shared, tmp_path):
    """Offline with no models: demo.sh takes the photos from ../shared when it exists (the
    message names only the models), else it needs them too."""
    clone = _clone_with_shared_demo(tmp_path, shared("demo/friends") if beside else None)
    (tmp_path / "no_wheels").mkdir()
    env = {**os.environ, "INSIGHTFACE_PADDLE_HOME": str(tmp_path / "home"),
           "INSIGHTFACE_PADDLE_MODEL_URL": "http://127.0.0.1:9/{}.tar",
           "INSIGHTFACE_PADDLE_DEMO_URL": "http://127.0.0.1:9/",
           "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
           "PIP_FIND_LINKS": str(tmp_path / "no_wheels")}
    for name in (SHARED_ENV, "INSIGHTFACE_PADDLE_DEMO", "OUT"):
        env.pop(name, None)
    result = subprocess.run(["sh", str(clone / "scripts" / "demo.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "BlazeFace, MobileFace, BlazeFaceKeypoints" in result.stderr
    assert ("the demo photos" in result.stderr) is not beside
