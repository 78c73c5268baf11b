"""What alignment is worth: LFW accuracy of the runtime's pipeline on raw photos, per crop policy.

On `lfw_raw/` (600 pairs of raw 250x250 photos, 10 folds of 60) every row embeds with the
published MobileFace and scores with the one 10-fold protocol (arcface_paddle.evaluation), once
as `InsightFace.predict` returns the embedding and once adding the mirrored crop's embedding
(flip). The face is the detected one holding the photo centre (LFW centres the subject):
  --align keypoints   `InsightFace.predict`: keypoints of MediaPipe's BlazeFace, similarity warp
                      onto the ArcFace template (the default when BlazeFaceKeypoints is there);
  --align none        `InsightFace.predict`: the face square of the detector box;
  stretched box       the box stretched to 112x112 (the old tool's crop);
  true landmarks      (no detector) the same warp by the dataset's five landmarks: the ceiling.
Also printed: how far the keypoints lie from the true landmarks, the highest impostor
similarity per row (for the recognition threshold) and where the template square sits relative
to the detector box (the face square's constants).
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_lfw_raw_pipeline.py
(the model zoo cache must hold BlazeFaceKeypoints: see tools/convert_mediapipe_face.py).
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

from arcface_paddle.evaluation import ten_fold_accuracy
from benchmarks.lfw_raw import read_landmarks, read_pairs
from benchmarks.model_home import use_shared_models
from insightface_paddle import InsightFace
from insightface_paddle.alignment import ARCFACE_TEMPLATE, similarity_transform, warp_to_template
from insightface_paddle.face_crops import ALIGNED, FALLBACK
from insightface_paddle.media import read_image
from insightface_paddle.recognition import FaceEmbedder, crop_padded, flip_embedding, l2_normalize


def template_square_vs_box(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Where the 112x112 template square lies relative to the box: (dx, dy, side) / box side."""
    matrix = similarity_transform(ARCFACE_TEMPLATE, points)
    corners = np.array([[0, 0, 1], [112, 0, 1], [0, 112, 1], [112, 112, 1]], np.float32)
    corners = corners @ matrix.T
    side = max(box[2] - box[0], box[3] - box[1])
    centre = corners.mean(axis=0) - [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]
    return np.array([*centre, np.linalg.norm(corners[1] - corners[0])]) / side


def central(boxes: np.ndarray, height: int, width: int) -> int | None:
    """Index of the best-scoring box holding the photo centre, else of the best box."""
    if not len(boxes):
        return None
    cx, cy = width / 2, height / 2
    inside = np.flatnonzero((boxes[:, 0] <= cx) & (boxes[:, 2] >= cx) &
                            (boxes[:, 1] <= cy) & (boxes[:, 3] >= cy))
    return int(inside[0]) if len(inside) else 0


def embed_with_flip(embedder: FaceEmbedder, crops: list[np.ndarray]) -> np.ndarray:
    return l2_normalize(flip_embedding(embedder.run, embedder.preprocess_images(crops)))


def keypoint_error(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance of eyes, nose and mouth centre to the true ones / inter-ocular distance."""
    true4 = np.stack([truth[0], truth[1], truth[2], truth[3:5].mean(axis=0)])
    return float(np.linalg.norm(points[:4] - true4, axis=1).mean() /
                 np.linalg.norm(truth[1] - truth[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    args = parser.parse_args()
    shared = Path(args.shared)
    root = shared / "data" / "lfw_raw"
    use_shared_models(shared)
    apps = {policy: InsightFace(align=policy) for policy in ("keypoints", "none")}
    embedder = apps["none"].embedder
    assert embedder is not None
    pairs, issame = read_pairs(root)
    landmarks = read_landmarks(root)
    photos = sorted({p for pair in pairs for p in pair})

    plain: dict[str, dict[str, np.ndarray]] = {"--align keypoints": {}, "--align none": {}}
    crops: dict[str, dict[str, np.ndarray]] = {
        "--align keypoints": {}, "--align none": {}, "stretched box (old crop)": {},
        "true landmarks": {}}
    missed, fallbacks, errors, geometry = 0, 0, [], []
    for photo in tqdm(photos, desc="predict", unit="photo"):
        rgb = read_image(root / "images" / photo)
        truth = landmarks[photo]
        crops["true landmarks"][photo] = warp_to_template(rgb, truth, ARCFACE_TEMPLATE)
        for policy, app in apps.items():
            faces = app.predict_rgb(rgb)
            boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
            chosen = central(boxes, *rgb.shape[:2])
            if chosen is None:  # counted; the whole photo stands in
                missed += policy == "none"
                box = np.array([0, 0, rgb.shape[1], rgb.shape[0]], np.float32)
                crop = app.cropper.crop(rgb, box[None])[0]
                plain[f"--align {policy}"][photo] = app.embed(rgb, box[None], "rgb")[0]
            else:
                face, box = faces[chosen], boxes[chosen]
                crop = app.cropper.crop(rgb, box[None])[0]
                plain[f"--align {policy}"][photo] = face.embedding
            crops[f"--align {policy}"][photo] = crop.image
            if policy == "keypoints":
                fallbacks += crop.crop == FALLBACK
                if crop.crop == ALIGNED:
                    errors.append(keypoint_error(crop.landmarks, truth))
            else:
                crops["stretched box (old crop)"][photo] = crop_padded(rgb, box)
                geometry.append(template_square_vs_box(truth, box))

    table = PrettyTable(["faces", "accuracy (predict)", "accuracy (+flip)", "std (+flip)",
                         "top impostor cosine"])
    accuracy = {}
    for name, faces in crops.items():
        rows = []
        for embeddings in (plain.get(name), None):
            if embeddings is None and rows:
                flipped = embed_with_flip(embedder, [faces[p] for p in photos])
                embeddings = dict(zip(photos, flipped, strict=True))
            if embeddings is None:
                rows.append(None)
                continue
            cosine = np.array([embeddings[a] @ embeddings[b] for a, b in pairs])
            rows.append((ten_fold_accuracy(cosine, issame), cosine[~issame].max()))
        accuracy[name] = rows[1][0].accuracy
        table.add_row([name, "-" if rows[0] is None else f"{rows[0][0].accuracy:.4f}",
                       f"{rows[1][0].accuracy:.4f}", f"{rows[1][0].accuracy_std:.4f}",
                       f"{(rows[0] or rows[1])[1]:.3f}"])
    print(table)
    print(f"faces detected: {len(photos) - missed}/{len(photos)}; keypoints found: "
          f"{len(photos) - fallbacks}/{len(photos)} (the rest fell back to the face square)")
    print(f"keypoints vs true landmarks (eyes, nose, mouth centre): mean error "
          f"{np.mean(errors):.3f}, 95th percentile {np.percentile(errors, 95):.3f} "
          "x inter-ocular distance")
    dx, dy, side = np.median(np.asarray(geometry), axis=0)
    print(f"template square vs box (median over {len(geometry)} photos): centre offset "
          f"({dx:+.3f}, {dy:+.3f}) x side, side {side:.3f} x box side")
    gap = accuracy["--align keypoints"] - accuracy["--align none"]
    print(f"keypoint alignment is worth {gap * 100:+.2f} accuracy points (+flip) over the face "
          f"square on these {len(pairs)} pairs; the true landmarks "
          f"{(accuracy['true landmarks'] - accuracy['--align none']) * 100:+.2f}")


if __name__ == "__main__":
    main()
