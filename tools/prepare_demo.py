"""Find, download or make what scripts/demo.sh needs; print the demo photo folder and the keypoint
model folder, one per line (for the script):

    python tools/prepare_demo.py --shared ../shared --work output/demo/models

When something cannot be had (offline), one line on stderr names all of it and the variables
(INSIGHTFACE_PADDLE_HOME, INSIGHTFACE_PADDLE_DEMO) that point at local copies; exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import run_main
from arcface_paddle.demo_setup import prepare_demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="",
                        help="the shared data folder, if any (demo/friends, MediaPipe's file)")
    parser.add_argument("--work", required=True,
                        help="where the keypoint model is made when the model cache lacks it")
    args = parser.parse_args(argv)
    inputs = prepare_demo(Path(args.shared) if args.shared else None, Path(args.work))
    print(inputs.photos)
    print(inputs.keypoints)
    return 0


if __name__ == "__main__":
    run_main(main)
