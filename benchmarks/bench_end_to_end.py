"""End to end against its bare predictor calls, and against the old tool's way, in one run.

On friends2.jpg (1920x1080, 6 faces), side by side, alternating call by call:
  bare          the `paddle.inference` calls `predict` makes, on inputs prepared beforehand
                (every pyramid pass of the detector, the recogniser on the face batch);
  predict       `InsightFace.predict` on the decoded image, including preprocessing, non-maximum
                suppression, cropping, search and the result objects;
  old way       the old insight-face-paddle tool's core on the same predictors: the image
                stretched to 640x640, one detector pass, then one recogniser call per face and a
                search per face;
  old way bare  the predictor calls of the old way alone;
  aligned       `predict` with `--align keypoints` (keypoint model on every face, similarity
                warp), against `predict` with `--align none` (face squares): the landmark cost.
Printed: predict / bare (the project's overhead, 1.00 = none), old way / predict (the speed-up)
and old way / bare (the speed-up's ceiling: predict could not beat its own model calls).
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_end_to_end.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_home import use_shared_models
from insightface_paddle import InsightFace
from insightface_paddle.media import read_image
from insightface_paddle.predictor import PredictorOptions
from insightface_paddle.recognition import l2_normalize

OLD_SIDE = 640


def timed(fn) -> tuple[float, float]:
    """-> (wall seconds, CPU seconds of this process) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def old_way(app: InsightFace, rgb: np.ndarray) -> int:
    """The old tool's core: stretch to 640x640, one pass, one recogniser call per face."""
    detector, embedder = app.detector, app.embedder
    height, width = rgb.shape[:2]
    stretched = cv2.resize(rgb, (OLD_SIDE, OLD_SIDE), interpolation=cv2.INTER_LINEAR)
    rows = detector.predictor.run(detector.prepare(stretched, OLD_SIDE))[0]
    rows = rows[(rows[:, 0] > -1) & (rows[:, 1] >= detector.threshold)]
    boxes = rows[:, 2:6] * np.array([width, height, width, height]) / OLD_SIDE
    for box in boxes:
        embedding = l2_normalize(embedder.run(embedder.preprocess(rgb, box[None])))
        app.index.search(embedding, embedder.signature, app.cdd_num)
    return len(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--cpu_threads", type=int, default=None,
                        help="predictor threads (default: the runtime's)")
    args = parser.parse_args()
    shared = Path(args.shared)
    use_shared_models(shared)
    app = InsightFace(align="none", cpu_threads=args.cpu_threads)
    app.set_index(app.build_index(shared / "demo/friends/gallery", progress=False))
    aligned = InsightFace(align="keypoints", index=app.index, cpu_threads=args.cpu_threads)
    rgb = read_image(shared / "demo/friends/query/friends2.jpg")
    detector, embedder = app.detector, app.embedder
    rec_input = embedder.predictor.input_names[0]

    det_feeds = [{k: v.copy() for k, v in feeds.items()} for feeds in detector.pass_feeds(rgb)]
    faces = embedder.preprocess(rgb, detector.detect(rgb))
    rec_batches = [faces[i:i + embedder.max_batch_size]
                   for i in range(0, len(faces), embedder.max_batch_size)]
    old_det = detector.prepare(cv2.resize(rgb, (OLD_SIDE, OLD_SIDE)), OLD_SIDE)
    old_faces = old_way(app, rgb)

    def bare() -> None:
        for feeds in det_feeds:
            detector.predictor.run(feeds)
        for batch in rec_batches:
            embedder.predictor.run({rec_input: batch})

    def old_bare() -> None:
        detector.predictor.run(old_det)
        for face in faces[:old_faces]:
            embedder.predictor.run({rec_input: face[None]})

    runs = {"bare": bare, "predict": lambda: app.predict_rgb(rgb),
            "old": lambda: old_way(app, rgb), "old_bare": old_bare,
            "aligned": lambda: aligned.predict_rgb(rgb)}
    for run in runs.values():  # warm-up: oneDNN compiles kernels per input shape
        run()
        run()
    # alternate call by call so load on the machine hits all alike
    times = np.array([[timed(run) for run in runs.values()] for _ in range(args.repeats)])
    medians = np.median(times, axis=0) * 1000  # [run, (wall, cpu)]
    ms = dict(zip(runs, medians[:, 0], strict=True))
    cpu = dict(zip(runs, medians[:, 1], strict=True))
    threads = args.cpu_threads or PredictorOptions().cpu_threads
    table = PrettyTable([f"friends2.jpg (1920x1080, 6 faces), cpu_threads={threads}",
                         "ms per image (median)", "CPU ms (median)"])
    names = {"bare": f"bare predictor calls of predict ({len(det_feeds)} detector passes "
                     f"{[f['image'].shape[2:] for f in det_feeds]}, {len(rec_batches)} "
                     "recogniser batch)",
             "predict": "InsightFace.predict end to end",
             "old": f"old tool's way (one 640x640 pass, {old_faces} recogniser calls)",
             "old_bare": "bare predictor calls of the old way",
             "aligned": "InsightFace.predict with --align keypoints"}
    for key, name in names.items():
        table.add_row([name, f"{ms[key]:.1f}", f"{cpu[key]:.1f}"])
    print(table)
    # CPU time is the steadier figure on a loaded machine with one thread (no spinning threads)
    print(f"overhead ratio predict / bare = {ms['predict'] / ms['bare']:.3f} "
          f"(CPU {cpu['predict'] / cpu['bare']:.3f})")
    print(f"speed-up old way / predict = {ms['old'] / ms['predict']:.3f} "
          f"(CPU {cpu['old'] / cpu['predict']:.3f})")
    # what the model calls alone allow: predict with no cost outside them, the old way with all
    print(f"ceiling of that speed-up, old way / bare predictor calls of predict = "
          f"{ms['old'] / ms['bare']:.3f} (bare / bare {ms['old_bare'] / ms['bare']:.3f})")
    print(f"landmark stage: --align keypoints / --align none = "
          f"{ms['aligned'] / ms['predict']:.3f} (CPU {cpu['aligned'] / cpu['predict']:.3f})")


if __name__ == "__main__":
    main()
