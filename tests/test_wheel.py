"""The wheel holds the runtime alone and its CLI works from outside the checkout."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path, shared, model_home):
    dist, target, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "cwd"
    elsewhere.mkdir()
    source = tmp_path / "source"  # build from a copy: no build/ or egg-info in the checkout
    shutil.copytree(REPO / "insightface_paddle", source / "insightface_paddle",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "docs/wheel_description.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(dist), str(source)], check=True, capture_output=True)
    wheels = list(dist.glob("insightface_paddle-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
        tops = {name.split("/")[0] for name in names}
        entry_points = archive.read(next(n for n in names
                                         if n.endswith("entry_points.txt"))).decode()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    # the wheel's page is its own description, not the repository README (training, data tools)
    description = email.message_from_bytes(metadata).get_payload()
    own = (REPO / "docs" / "wheel_description.md").read_text(encoding="utf-8")
    assert description.strip() == own.strip()
    assert description.strip() != (REPO / "README.md").read_text(encoding="utf-8").strip()
    assert "insightface_paddle/demo_photos.sha256" in names  # the demo download's sums
    assert "insightface_paddle" in tops
    assert not any(t.startswith(("arcface_paddle", "tests", "tools", "configs")) for t in tops)
    assert "insightfacepaddle = insightface_paddle.cli:main" in entry_points
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target),
                    str(wheels[0])], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = target / "bin" / "insightfacepaddle"
    result = subprocess.run([sys.executable, str(script), "--det", "--json", "--input",
                             str(shared("demo/friends/query/friends1.jpg"))],
                            cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"file": "friends1.jpg"' in result.stdout and result.stdout.count('"box"') == 6
    where = subprocess.run([sys.executable, "-c", "import insightface_paddle, sys; "
                            "print(insightface_paddle.__file__); "
                            "print('arcface_paddle' in sys.modules)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    location, imported_training = where.stdout.split()
    assert Path(location).is_relative_to(target) and imported_training == "False"
