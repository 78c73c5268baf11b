"""What alignment is worth: LFW accuracy of the runtime's pipeline on raw photos vs aligned faces.

On `lfw_raw/` (600 pairs of raw 250x250 photos, 10 folds of 60), every row embeds with the
published MobileFace, adds the embedding of the mirrored face (flip) and scores with the one
10-fold protocol (arcface_paddle.evaluation). BlazeFace detects; the face at the photo centre is
  pipeline            cropped as `insightfacepaddle` does it (the face square of its box);
  stretched box       cropped by its box and stretched to 112x112 (the old tool's crop);
  aligned             (no detector) warped onto the 112x112 ArcFace template by the given five
                      landmarks: the alignment the model was trained with.
Also printed: the old tool's detection (stretch to 640x640, threshold 0.8) on the same photos, and
where the template square sits relative to the detector box (the runtime's crop constants).
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_lfw_raw_pipeline.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from prettytable import PrettyTable
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.evaluation import ten_fold_accuracy
from benchmarks.lfw_raw import read_landmarks, read_pairs
from insightface_paddle import zoo
from insightface_paddle.detection import FaceDetector
from insightface_paddle.media import read_image
from insightface_paddle.recognition import (
    FaceEmbedder,
    crop_face,
    crop_padded,
    flip_embedding,
    l2_normalize,
)

#: where insightface's 112x112 training crops put the five landmarks
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def align(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    matrix, _ = cv2.estimateAffinePartial2D(points, ARCFACE_TEMPLATE, method=cv2.LMEDS)
    return cv2.warpAffine(rgb, matrix, (112, 112), borderValue=0)


def template_square_vs_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Where the 112x112 template square lies relative to the box: (dx, dy, side) / box side."""
    matrix, _ = cv2.estimateAffinePartial2D(ARCFACE_TEMPLATE, points, method=cv2.LMEDS)
    corners = np.array([[0, 0, 1], [112, 0, 1], [0, 112, 1], [112, 112, 1]], np.float32)
    corners = corners @ matrix.T
    side = max(box[2] - box[0], box[3] - box[1])
    centre = corners.mean(axis=0) - [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    return np.array([*centre, np.linalg.norm(corners[1] - corners[0])]) / side


def central_face(boxes: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The best-scoring box holding the photo centre (LFW centres the subject), else the best."""
    if not len(boxes):
        return None
    cx, cy = width / 2, height / 2
    central = boxes[(boxes[:, 0] <= cx) & (boxes[:, 2] >= cx) &
                    (boxes[:, 1] <= cy) & (boxes[:, 3] >= cy)]
    return (central if len(central) else boxes)[0]


def old_tool_finds_face(detector: FaceDetector, rgb: np.ndarray) -> bool:
    """The old tool: stretch to 640x640, ImageNet normalisation, threshold 0.8."""
    height, width = rgb.shape[:2]
    stretched = cv2.resize(rgb, (640, 640)).astype(np.float32)
    mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], np.float32) * 255
    feeds = {"image": ((stretched - mean) / std).transpose(2, 0, 1)[None],
             "im_shape": np.array([[640, 640]], np.float32),
             "scale_factor": np.array([[640 / height, 640 / width]], np.float32)}
    rows = detector.predictor.run(feeds)[0]
    return bool(np.any((rows[:, 0] > -1) & (rows[:, 1] > 0.8)))


def embed_with_flip(embedder: FaceEmbedder, crops: list[np.ndarray]) -> np.ndarray:
    return l2_normalize(flip_embedding(embedder.run, embedder.preprocess_images(crops)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    args = parser.parse_args()
    shared = Path(args.shared)
    root = shared / "data" / "lfw_raw"
    os.environ.setdefault(zoo.HOME_ENV, str(shared / "models"))
    detector = FaceDetector.from_folder(zoo.resolve("BlazeFace"))
    embedder = FaceEmbedder.from_folder(zoo.resolve("MobileFace"), "MobileFace")
    pairs, issame = read_pairs(root)
    landmarks = read_landmarks(root)
    photos = sorted({p for pair in pairs for p in pair})

    rows = {"pipeline (face square)": {}, "stretched box (old crop)": {},
            "aligned (landmarks)": {}}
    found, old_found, geometry = 0, 0, []
    for photo in tqdm(photos, desc="detect", unit="photo"):
        rgb = read_image(root / "images" / photo)
        box = central_face(detector.detect(rgb), *rgb.shape[:2])
        old_found += old_tool_finds_face(detector, rgb)
        rows["aligned (landmarks)"][photo] = align(rgb, landmarks[photo])
        if box is None:  # counted below; the whole photo stands in
            box = np.array([0, 0, rgb.shape[1], rgb.shape[0], 0], np.float32)
        else:
            found += 1
            geometry.append(template_square_vs_box(landmarks[photo], box))
        rows["pipeline (face square)"][photo] = crop_face(rgb, box)
        rows["stretched box (old crop)"][photo] = crop_padded(rgb, box)

    table = PrettyTable(["faces", "detected", "LFW accuracy (10-fold)", "std"])
    accuracies = {}
    for name, faces in rows.items():
        emb = dict(zip(photos, embed_with_flip(embedder, [faces[p] for p in photos])))
        cosine = np.array([emb[a] @ emb[b] for a, b in pairs])
        result = ten_fold_accuracy(cosine, issame)
        accuracies[name] = result.accuracy
        detected = "-" if name.startswith("aligned") else f"{found}/{len(photos)}"
        table.add_row([name, detected, f"{result.accuracy:.4f}", f"{result.accuracy_std:.4f}"])
    table.add_row(["old tool detection (640x640)", f"{old_found}/{len(photos)}", "-", "-"])
    print(table)
    dx, dy, side = np.median(np.asarray(geometry), axis=0)
    print(f"template square vs box (median over {len(geometry)} photos): centre offset "
          f"({dx:+.3f}, {dy:+.3f}) x side, side {side:.3f} x box side")
    gap = accuracies["aligned (landmarks)"] - accuracies["pipeline (face square)"]
    print(f"alignment is worth {gap * 100:+.2f} accuracy points over the pipeline on these "
          f"{len(pairs)} pairs")


if __name__ == "__main__":
    main()
