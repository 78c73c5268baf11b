"""`tools/<name>.py` with the test backbones registered: `python run_tool.py validation ...`.

Run with PYTHONPATH = repository + tests (see `launching.clean_env`).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from dist_scripts import tiny_backbones

if __name__ == "__main__":
    tiny_backbones.register()
    tool = Path(__file__).resolve().parents[2] / "tools" / f"{sys.argv[1]}.py"
    sys.argv = [str(tool), *sys.argv[2:]]
    runpy.run_path(str(tool), run_name="__main__")
