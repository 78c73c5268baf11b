"""The runtime's overhead: end-to-end detection + recognition of one photo against the bare
predictor calls that work needs, measured side by side in one run.

"Bare" = the same `paddle.inference` predictors run on already prepared inputs (every pyramid
pass of the detector, the recognizer on the face batch); "end to end" = `InsightFace.predict` on
the decoded image, including preprocessing, non-maximum suppression, cropping, search and the
result objects. The ratio is the project's overhead (1.00 = none). The landmark stage's cost:
`predict` with `--align keypoints` (keypoint model on every face, similarity warp) against
`--align none` (face squares), timed call by call in the same loop.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_end_to_end.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insightface_paddle import InsightFace, zoo
from insightface_paddle.detection import pyramid_sides
from insightface_paddle.media import read_image


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    shared = Path(args.shared)
    os.environ.setdefault(zoo.HOME_ENV, str(shared / "models"))
    app = InsightFace(align="none")
    app.set_index(app.build_index(shared / "demo/friends/gallery", progress=False))
    aligned = InsightFace(align="keypoints", index=app.index)
    rgb = read_image(shared / "demo/friends/query/friends2.jpg")
    detector, embedder = app.detector, app.embedder

    det_feeds = [detector.prepare(rgb, side) for side in pyramid_sides(*rgb.shape[:2])]
    faces = embedder.preprocess(rgb, detector.detect(rgb))
    rec_batches = [faces[i:i + embedder.max_batch_size]
                   for i in range(0, len(faces), embedder.max_batch_size)]

    def bare() -> None:
        for feeds in det_feeds:
            detector.predictor.run(feeds)
        for batch in rec_batches:
            embedder.predictor.run({embedder.predictor.input_names[0]: batch})

    def end_to_end() -> None:
        app.predict_rgb(rgb)

    def with_landmarks() -> None:
        aligned.predict_rgb(rgb)

    bare(), end_to_end(), with_landmarks()  # warm-up: oneDNN compiles kernels per input shape
    # alternate call by call so load on the machine hits all alike
    runs = np.array([(timed(bare), timed(end_to_end), timed(with_landmarks))
                     for _ in range(args.repeats)])
    bare_s, e2e_s, aligned_s = np.median(runs, axis=0)
    table = PrettyTable(["friends2.jpg (1920x1080, 6 faces)", "ms per image"])
    table.add_row([f"bare predictor calls ({len(det_feeds)} detector passes, "
                   f"{len(rec_batches)} recognizer batch)", f"{bare_s * 1000:.1f}"])
    table.add_row(["InsightFace.predict end to end (--align none)", f"{e2e_s * 1000:.1f}"])
    table.add_row(["InsightFace.predict end to end (--align keypoints)",
                   f"{aligned_s * 1000:.1f}"])
    print(table)
    print(f"overhead ratio end-to-end / bare = {e2e_s / bare_s:.3f}")
    print(f"landmark stage: --align keypoints / --align none = {aligned_s / e2e_s:.3f} "
          f"(median of per-run ratios {np.median(runs[:, 2] / runs[:, 1]):.3f})")


if __name__ == "__main__":
    main()
