"""Which input normalisation BlazeFace wants: its `infer_cfg.yml` or the old tool's ImageNet one.

Both run through the same detector (scale pyramid, NMS) on the demo queries (6 + 6 + 1 faces),
the 245 gallery photos (one face each) and the raw LFW photos (the subject's face is where the
landmarks are). Printed per normalisation: faces found, extra boxes on one-face photos and the
mean score of the true face. Run: INSIGHTFACE_PADDLE_SHARED=../shared python
benchmarks/bench_detector_normalization.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from prettytable import PrettyTable
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lfw_raw import read_landmarks
from benchmarks.model_home import use_shared_models
from insightface_paddle import zoo
from insightface_paddle.detection import (
    BLAZEFACE_NORMALIZATION,
    IMAGENET_NORMALIZATION,
    FaceDetector,
)
from insightface_paddle.media import list_images, read_image


def score_at(boxes: np.ndarray, point: np.ndarray) -> float:
    inside = boxes[(boxes[:, 0] <= point[0]) & (boxes[:, 2] >= point[0]) &
                   (boxes[:, 1] <= point[1]) & (boxes[:, 3] >= point[1])]
    return float(inside[:, 4].max()) if len(inside) else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--lfw_every", type=int, default=2, help="use every n-th LFW photo")
    args = parser.parse_args()
    shared = Path(args.shared)
    use_shared_models(shared)
    folder = zoo.resolve("BlazeFace")
    landmarks = read_landmarks(shared / "data/lfw_raw")
    lfw = sorted(landmarks)[::args.lfw_every]
    gallery = sorted(p for d in (shared / "demo/friends/gallery").iterdir() if d.is_dir()
                     for p in list_images(d))
    queries = {n: read_image(shared / "demo/friends/query" / n)
               for n in ("friends1.jpg", "friends2.jpg", "Rachel.png")}

    table = PrettyTable(["normalisation", "queries: faces (6, 6, 1)", "gallery: found / extra",
                         "LFW: found @0.5 / @0.8", "LFW: mean true-face score"])
    for name, norm in (("infer_cfg.yml (kept)", BLAZEFACE_NORMALIZATION),
                       ("ImageNet (old tool)", IMAGENET_NORMALIZATION)):
        detector = FaceDetector.from_folder(folder, threshold=0.5)
        detector.normalization = norm
        counts = [len(detector.detect(image)) for image in queries.values()]
        per_photo = [len(detector.detect(read_image(p))) for p in tqdm(gallery, desc=name)]
        scores = np.array([score_at(detector.detect(read_image(
            shared / "data/lfw_raw/images" / p)), landmarks[p].mean(axis=0))
            for p in tqdm(lfw, desc=name)])
        table.add_row([name, counts,
                       f"{sum(c >= 1 for c in per_photo)}/{len(gallery)} / "
                       f"{sum(max(c - 1, 0) for c in per_photo)}",
                       f"{np.mean(scores >= 0.5):.4f} / {np.mean(scores >= 0.8):.4f}",
                       f"{scores.mean():.5f}"])
    print(table)


if __name__ == "__main__":
    main()
