"""Make the `BlazeFaceKeypoints` model folder from MediaPipe's short-range face detector.

    python tools/convert_mediapipe_face.py \
        --output ~/.insightface_paddle/blazeface_keypoints_mediapipe_0.10.14
    python tools/convert_mediapipe_face.py --source face_detection_short_range.tflite \
        --output DIR

Without --source, the `mediapipe==0.10.14` wheel is fetched with pip and its sha256 checked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import run_main
from arcface_paddle.keypoints import convert_mediapipe_face


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="model folder to write")
    parser.add_argument("--source", default=None,
                        help="face_detection_short_range.tflite (default: fetch the wheel)")
    args = parser.parse_args(argv)
    meta = convert_mediapipe_face(args.output, args.source)
    print(f"wrote {args.output}: {meta['name']} from {meta['source']['package']} "
          f"(sha256 {meta['source']['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    run_main(main)
