"""BlazeFace-FPN-SSH face detection: image in, boxes and scores in original pixels out.

Scale policy. The detector's anchors span roughly 16 to 128 pixels and it finds faces up to about
190 pixels. The old tool stretched every image to 640x640, so the face in a 250x250 portrait grew
to ~280 pixels and was missed. Here the aspect ratio is kept, images are never enlarged, and the
long side is capped at `max_side`; because a face can fill a small photo, a short pyramid of
smaller passes (each half the previous, down to a long side of 80) follows; the passes are merged
by non-maximum suppression. A face of any size thus lands in the anchors' range at some pass.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from .errors import InsightFaceError
from .predictor import Normalization, Predictor, PredictorOptions, create_predictor

#: BlazeFace's `infer_cfg.yml`: mean [123, 117, 104], std 127.502231 on the 0..255 scale, RGB.
#: The old tool used ImageNet mean/std (0..1 scale) instead. Measured side by side
#: (benchmarks/bench_detector_normalization.py): both find all 13 faces of the demo queries and a
#: face in every gallery and raw LFW photo with the same scores, but ImageNet's puts twice as many
#: spurious second boxes on the one-face gallery photos (6 against 3). This one is what the model
#: was trained with, and it is kept.
BLAZEFACE_NORMALIZATION = Normalization((123.0, 117.0, 104.0), (127.502231,) * 3, "RGB")
IMAGENET_NORMALIZATION = Normalization(
    (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255), "RGB"
)

#: oneDNN's conv + activation fusion miscompiles this detector in Paddle 3.3: boxes move by up to
#: 13 px and scores drop (checked against plain CPU kernels and the PIR translation, which agree
#: to 1e-4); without the pass oneDNN matches them and stays ~4x faster than plain kernels.
BROKEN_ONEDNN_PASSES = ("conv_activation_onednn_fuse_pass",)

PAD_MULTIPLE = 32
PYRAMID_STEP = 2.0
SMALLEST_SIDE = 80
NMS_IOU = 0.4


def normalization_from_infer_cfg(folder: Path) -> Normalization | None:
    """The NormalizeImage step of PaddleDetection's `infer_cfg.yml`, or None without the file."""
    path = folder / "infer_cfg.yml"
    if not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        steps = [s for s in cfg.get("Preprocess", []) if s.get("type") == "NormalizeImage"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as exc:
        raise InsightFaceError(f"{path}: unreadable ({exc})") from None
    if not steps:
        return None
    step = steps[0]
    unit = 255.0 if step.get("is_scale", True) else 1.0
    try:
        mean = tuple(float(v) * unit for v in step["mean"])
        std = tuple(float(v) * unit for v in step["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InsightFaceError(f"{path}: NormalizeImage needs numeric mean and std ({exc})"
                               ) from None
    if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
        raise InsightFaceError(f"{path}: NormalizeImage needs 3 means and 3 positive stds")
    return Normalization(mean, std, "RGB")  # type: ignore[arg-type]


def pyramid_sides(height: int, width: int, max_side: int = 640) -> list[float]:
    """Long-side lengths of the passes for an image: never larger than the image itself."""
    sides = [float(min(max(height, width), max_side))]
    while sides[-1] > SMALLEST_SIDE * 1.5:
        sides.append(max(sides[-1] / PYRAMID_STEP, float(SMALLEST_SIDE)))
    return sides


def nms(boxes: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """boxes [K, 5] (x1, y1, x2, y2, score) -> indices kept, highest score first."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(area[best] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class FaceDetector:
    def __init__(self, predictor: Predictor, normalization: Normalization = BLAZEFACE_NORMALIZATION,
                 threshold: float = 0.5, max_side: int = 640) -> None:
        missing = {"image", "im_shape", "scale_factor"} - set(predictor.input_names)
        if missing:
            raise InsightFaceError(f"not a BlazeFace-style detector: inputs {predictor.input_names}"
                                   f" lack {sorted(missing)}")
        self.predictor = predictor
        self.normalization = normalization
        self.threshold = threshold
        self.max_side = max_side

    @classmethod
    def from_folder(cls, folder: Path, options: PredictorOptions | None = None,
                    **kwargs) -> FaceDetector:
        normalization = normalization_from_infer_cfg(folder) or BLAZEFACE_NORMALIZATION
        options = options or PredictorOptions()
        options = replace(options, delete_passes=options.delete_passes + BROKEN_ONEDNN_PASSES)
        probe = {"image": np.zeros((1, 3, 64, 64), np.float32),
                 "im_shape": np.array([[64, 64]], np.float32),
                 "scale_factor": np.ones((1, 2), np.float32)}
        predictor = create_predictor(folder, options, probe=lambda p: p.run(probe))
        return cls(predictor, normalization, **kwargs)

    def prepare(self, rgb: np.ndarray, long_side: float) -> dict[str, np.ndarray]:
        """uint8 RGB [H, W, 3] -> the detector's feeds for one pass."""
        height, width = rgb.shape[:2]
        scale = long_side / max(height, width)
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        resized = rgb if (new_h, new_w) == (height, width) else cv2.resize(
            rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        padded_h = -(-new_h // PAD_MULTIPLE) * PAD_MULTIPLE
        padded_w = -(-new_w // PAD_MULTIPLE) * PAD_MULTIPLE
        image = np.zeros((3, padded_h, padded_w), np.float32)  # 0 == the mean colour
        image[:, :new_h, :new_w] = self.normalization.apply(
            resized.astype(np.float32)).transpose(2, 0, 1)
        return {
            "image": image[None],
            # the padded size: the model decodes its normalised anchors against im_shape, so the
            # unpadded size would shrink and shift every box by the padding's share
            "im_shape": np.array([[padded_h, padded_w]], np.float32),
            "scale_factor": np.array([[new_h / height, new_w / width]], np.float32),
        }

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> boxes [K, 5] (x1, y1, x2, y2, score), best first."""
        height, width = rgb.shape[:2]
        found = []
        for side in pyramid_sides(height, width, self.max_side):
            rows = self.predictor.run(self.prepare(rgb, side))[0]
            rows = rows[(rows[:, 0] > -1) & (rows[:, 1] >= self.threshold)]
            found.append(np.concatenate([rows[:, 2:6], rows[:, 1:2]], axis=1))
        boxes = np.concatenate(found).astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        return boxes[nms(boxes)] if len(boxes) else boxes.reshape(0, 5)
