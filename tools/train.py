"""Train a face recogniser:

    python tools/train.py --config_file configs/ms1mv3_r50.py [--key value ...]

Under `python -m paddle.distributed.launch` each process trains one rank.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import run_main
from arcface_paddle.train import main

if __name__ == "__main__":
    run_main(main, native_stderr=True)
