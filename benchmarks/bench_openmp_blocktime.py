"""How long Paddle's OpenMP threads spin after a model call, and what it costs the work between
calls: Intel's default (200 ms) against the runtime's setting (1 ms), side by side in one process.

After each paddle.inference call its OpenMP worker threads keep spinning for the block time. With
200 ms one of the two cores stays busy through the work that follows the call: the keypoint crops
and the keypoint model (ONNX Runtime) between the detector and the recogniser, the worker pool,
the read-ahead thread. The setting is switched call by call through `kmp_set_blocktime` of the
libiomp5 Paddle loads, alternating the two values on friends2.jpg (1920x1080, 6 faces):
  predict      `InsightFace.predict` with `--align none`
  aligned      `InsightFace.predict` with `--align keypoints` (the default)
  landmarks    the landmark stage alone, right after a recogniser call (as in a loop of photos)
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_openmp_blocktime.py
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_home import use_shared_models
from insightface_paddle import InsightFace
from insightface_paddle.media import read_image

SETTINGS_MS = (200, 1)


def openmp_runtime() -> ctypes.CDLL:
    """The libiomp5 loaded into this process with Paddle."""
    with open("/proc/self/maps", encoding="utf-8") as maps:
        paths = [line.split()[-1] for line in maps if "libiomp5" in line]
    if not paths:
        sys.exit("no libiomp5 loaded: this Paddle build does not use Intel's OpenMP")
    return ctypes.CDLL(paths[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    shared = Path(args.shared)
    use_shared_models(shared)
    plain = InsightFace(align="none")
    plain.set_index(plain.build_index(shared / "demo/friends/gallery", progress=False))
    aligned = InsightFace(align="keypoints", index=plain.index)
    assert aligned.cropper.keypoints is not None
    rgb = read_image(shared / "demo/friends/query/friends2.jpg")
    boxes = plain.detector.detect(rgb)
    faces = plain.embedder.preprocess(rgb, boxes)

    def landmarks() -> float:
        plain.embedder.run(faces)  # untimed: the model call the stage follows
        start = time.perf_counter()
        aligned.cropper.keypoints.locate(rgb, boxes)
        return time.perf_counter() - start

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    runs = {"predict": lambda: timed(lambda: plain.predict_rgb(rgb)),
            "aligned": lambda: timed(lambda: aligned.predict_rgb(rgb)),
            "landmarks": landmarks}
    iomp = openmp_runtime()
    times = {(ms, name): [] for ms in SETTINGS_MS for name in runs}
    for _ in range(args.repeats):
        for ms in SETTINGS_MS:
            iomp.kmp_set_blocktime(ms)
            for name, run in runs.items():
                run()  # the first call after a switch settles the threads
                times[(ms, name)].append(run())
    median = {key: float(np.median(v)) * 1000 for key, v in times.items()}
    table = PrettyTable(["friends2.jpg, ms (median)"]
                        + [f"block time {ms} ms" for ms in SETTINGS_MS] + ["1 ms / 200 ms"])
    labels = {"predict": "predict, --align none", "aligned": "predict, --align keypoints",
              "landmarks": "landmark stage alone (6 faces)"}
    for name, label in labels.items():
        row = [median[(ms, name)] for ms in SETTINGS_MS]
        table.add_row([label] + [f"{v:.1f}" for v in row] + [f"{row[1] / row[0]:.3f}"])
    print(table)
    for ms in SETTINGS_MS:
        print(f"block time {ms} ms: predict --align keypoints / --align none = "
              f"{median[(ms, 'aligned')] / median[(ms, 'predict')]:.3f}")


if __name__ == "__main__":
    main()
