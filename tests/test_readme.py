"""The README's quick start works as written, and what it states agrees with the project."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def quick_start_commands() -> list[str]:
    """The indented command lines of the README's "Quick start" block."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n\n((?: {4}\S.*\n)+)", section)
    assert block is not None, "the quick start has no command block"
    return [line.strip() for line in block.group(1).splitlines()]


def install_line() -> str:
    (line,) = [c for c in quick_start_commands() if c.startswith("pip install")]
    return line


def api_snippet_imports() -> list[str]:
    """The import lines of the README's `InsightFace` snippet."""
    blocks = re.findall(r"\n\n((?: {4}.*\n)+)", README)
    (snippet,) = [b for b in blocks if "from insightface_paddle import InsightFace" in b]
    return [line.strip() for line in snippet.splitlines()
            if line.strip().startswith(("import ", "from "))]


def test_quick_start_installs_the_project_and_ci_runs_it():
    commands = quick_start_commands()
    assert re.fullmatch(r"pip install -r requirements\.txt -e \.", install_line())
    assert "sh scripts/demo.sh" in commands and "python -m pytest -q" in commands
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_line() in ci and "python -m pytest -q" in ci  # the same commands


def test_stated_python_is_what_setup_requires():
    required = re.search(r'python_requires=">=(\d+\.\d+)"', (REPO / "setup.py").read_text())
    assert required is not None
    version = required.group(1)
    for name in ("README.md", "docs/wheel_description.md"):
        stated = re.findall(r"Python (\d+\.\d+)\+", (REPO / name).read_text(encoding="utf-8"))
        assert stated and set(stated) == {version}, name
    target = re.search(r'target-version = "py(\d)(\d+)"', (REPO / "pyproject.toml").read_text())
    assert target is not None and f"{target.group(1)}.{target.group(2)}" == version


def _fresh_venv(folder: Path) -> Path:
    """A venv of this interpreter that sees this environment's packages, offline.

    `--system-site-packages` exposes the base interpreter's packages, not those of the venv
    running the tests, so a .pth file adds ours; the venv's own setuptools (ensurepip's) is
    removed so the pinned one is seen, as it would be after `pip install -r requirements.txt`.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(folder)],
                   check=True, capture_output=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    Path(purelib, "tests_parent_env.pth").write_text("\n".join(lines) + "\n")
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "setuptools"],
                   check=True, capture_output=True)
    return folder


@pytest.mark.slow
def test_quick_start_install_gives_the_command_and_the_api(tmp_path):
    """The install line as written (plus --no-deps --no-build-isolation: no network here) in a
    fresh venv: `insightfacepaddle` runs and the API snippet imports from another folder."""
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copytree(REPO / "insightface_paddle", clone / "insightface_paddle",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "requirements.txt",
                 "docs/wheel_description.md"):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, clone / name)
    venv = _fresh_venv(tmp_path / "venv")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "VIRTUAL_ENV": str(venv), "PIP_NO_INDEX": "1"}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(["sh", "-c", f"{install_line()} --no-deps --no-build-isolation"],
                             cwd=clone, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    assert not list(clone.glob("*.egg-info"))  # nothing written into the checkout

    help_run = subprocess.run(["insightfacepaddle", "--help"], cwd=elsewhere, env=env,
                              capture_output=True, text=True)
    assert help_run.returncode == 0, help_run.stderr
    assert help_run.stdout.startswith("usage: insightfacepaddle")
    imports = api_snippet_imports()
    assert "from insightface_paddle import InsightFace" in imports
    script = "\n".join([*imports, "import insightface_paddle",
                        "print(insightface_paddle.__file__)"])
    api = subprocess.run(["python", "-c", script], cwd=elsewhere, env=env,
                         capture_output=True, text=True)
    assert api.returncode == 0, api.stderr
    assert Path(api.stdout.strip()).is_relative_to(clone / "insightface_paddle")
