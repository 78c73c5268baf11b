"""tools/train.py with the test backbones registered (`--backbone TinyFaceNet` or `PlainNet`).

Run with PYTHONPATH = repository + tests (see `launching.clean_env`).
"""

from __future__ import annotations

from arcface_paddle.command import run_main
from arcface_paddle.train import main
from dist_scripts import tiny_backbones

if __name__ == "__main__":
    tiny_backbones.register()
    run_main(main, native_stderr=True)  # as tools/train.py
