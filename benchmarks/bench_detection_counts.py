"""No face lost: the detector's faces on every shared photo set, to compare before and after a
change to detection.

Sets: the demo queries (friends1, friends2: 6 faces each; Rachel.png: one face filling the photo),
the old tool's drawn outputs (the same scenes and two more), the 245 gallery photos (one face
each) and the 1163 raw LFW photos (the subject's face is where its landmarks are). Printed per
set: photos, photos with a face, boxes in all, and for LFW the photos with a box at the landmarks.
`--save FILE` writes every photo's boxes (JSON); `--compare FILE` reports, per set, the boxes of
that earlier run that no box of this run overlaps (IoU >= 0.5), the faces lost (and how many of
them scored >= 0.8), and the boxes of this run new against it.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_detection_counts.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from prettytable import PrettyTable
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lfw_raw import read_landmarks
from benchmarks.model_home import use_shared_models
from insightface_paddle import InsightFace
from insightface_paddle.detection import box_iou
from insightface_paddle.media import list_images

SAME_FACE_IOU = 0.5


def photo_sets(shared: Path) -> dict[str, list[Path]]:
    demo = shared / "demo/friends"
    gallery = sorted(p for d in sorted((demo / "gallery").iterdir()) if d.is_dir()
                     for p in list_images(d))
    lfw = shared / "data/lfw_raw/images"
    return {"demo queries": list_images(demo / "query"),
            "demo outputs": list_images(demo / "output"),
            "demo gallery": gallery,
            "LFW raw": sorted(lfw / name for name in read_landmarks(shared / "data/lfw_raw"))}


def lost_boxes(before: list[list[float]], after: list[list[float]]) -> list[list[float]]:
    """Boxes of `before` that no box of `after` overlaps by SAME_FACE_IOU."""
    found = np.asarray(after, np.float32).reshape(-1, 5)
    return [b for b in before
            if not len(found) or box_iou(np.asarray(b), found).max() < SAME_FACE_IOU]


def at_point(boxes: np.ndarray, point: np.ndarray) -> bool:
    return bool(np.any((boxes[:, 0] <= point[0]) & (boxes[:, 2] >= point[0]) &
                       (boxes[:, 1] <= point[1]) & (boxes[:, 3] >= point[1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--save", type=Path, help="write every photo's boxes to this JSON file")
    parser.add_argument("--compare", type=Path, help="a --save file of an earlier run")
    args = parser.parse_args()
    shared = Path(args.shared)
    use_shared_models(shared)
    app = InsightFace(rec_model=None)
    landmarks = read_landmarks(shared / "data/lfw_raw")
    earlier = json.loads(args.compare.read_text()) if args.compare else None

    columns = ["set", "photos", "with a face", "boxes", "per photo / at landmarks", "seconds"]
    if earlier is not None:
        columns += ["lost vs --compare (>= 0.8)", "new vs --compare"]
    table = PrettyTable(columns)
    saved: dict[str, dict[str, list[list[float]]]] = {}
    for name, paths in photo_sets(shared).items():
        start = time.perf_counter()
        found = {str(p.relative_to(shared)): app.detect(p) for p in tqdm(paths, desc=name)}
        seconds = time.perf_counter() - start
        counts = [len(b) for b in found.values()]
        if name == "LFW raw":
            detail = sum(at_point(b, landmarks[str(Path(k).relative_to("data/lfw_raw/images"))]
                                  .mean(axis=0)) for k, b in found.items())
        else:
            detail = counts if len(counts) <= 8 else "-"
        row = [name, len(paths), sum(c > 0 for c in counts), sum(counts), detail,
               f"{seconds:.1f}"]
        saved[name] = {k: np.round(b, 2).tolist() for k, b in found.items()}
        if earlier is not None:
            before = earlier.get(name, {})
            lost = [b for key, boxes in before.items()
                    for b in lost_boxes(boxes, saved[name].get(key, []))]
            new = [b for key, boxes in saved[name].items()
                   for b in lost_boxes(boxes, before.get(key, []))]
            row += [f"{len(lost)} ({sum(b[4] >= 0.8 for b in lost)})", len(new)]
        table.add_row(row)
    print(table)
    if args.save:
        args.save.write_text(json.dumps(saved))


if __name__ == "__main__":
    main()
