"""BlazeFace-FPN-SSH face detection: image in, boxes and scores in original pixels out.

Scale policy. The detector's anchors span 16 to 128 pixels; measured on LFW faces pasted at many
sizes into a 640x640 canvas, it finds faces whose box is about 20 to 170 pixels high and misses
larger ones. The old tool stretched every image to 640x640, so the face in a 250x250 portrait
grew to ~280 pixels and was missed. Here the aspect ratio is kept, images are never enlarged and
the long side is capped at `max_side`. Because a face can fill a photo, passes at smaller scales
follow until the long side is at most LARGEST_FACE: there no face the image can hold is too
large. Between passes the scale drops by at most MAX_STEP, so a face too large for one pass is
still at least ~34 pixels in the next. A 1920x1080 photo thus takes a 640x360 pass and a 128x72
one; the passes are merged by non-maximum suppression.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from .errors import InsightFaceError
from .predictor import (
    GraphFix,
    Normalization,
    Predictor,
    PredictorOptions,
    create_predictor,
)

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


#: the activations Paddle 3.3's oneDNN conv + activation pass fuses, also after a concat
#: (phi::funcs::GetSupportedActivations)
ONEDNN_FUSED_ACTIVATIONS = frozenset({
    "abs", "clip", "gelu", "hard_sigmoid", "hard_swish", "leaky_relu", "mish", "relu", "relu6",
    "sigmoid", "sqrt", "swish", "tanh"})


def keep_concat_relus_apart(program: Any) -> bool:
    """Rewrite each `relu` that follows a `concat` as `thresholded_relu(threshold=0)`, the same
    function, in a legacy `ProgramDesc`; -> whether the program is then safe for the pass.

    Why: Paddle 3.3's oneDNN conv + activation pass also moves an activation after a concat into
    the convolutions feeding it, even where those convolutions' outputs feed other ops too. In
    BlazeFace's SSH heads they do, so the pass moved boxes by up to 13 px and lost faces; the
    detector used to run with the whole pass off. Kept apart, the two concat-fed relus run alone,
    every other conv + activation pair is fused, the boxes match plain CPU kernels (0.05 px on the
    demo queries) and a 640x360 pass takes 15-20% less time than with the pass off. Any other
    fusable activation after a concat (another detector export) has no same-function stand-in
    here: False, and the loader deletes the pass (BLAZEFACE_FIX).
    """
    from paddle.base.proto import framework_pb2  # installed with paddle, like the program

    block = program.blocks[0]
    producers = {name: op.type for op in block.ops for out in op.outputs for name in out.arguments}
    safe = True
    for op in block.ops:
        if op.type not in ONEDNN_FUSED_ACTIVATIONS or not any(
                producers.get(name) == "concat" for slot in op.inputs for name in slot.arguments):
            continue
        if op.type != "relu":
            safe = False
            continue
        op.type = "thresholded_relu"
        for name, value in (("threshold", 0.0), ("value", 0.0)):
            attr = op.attrs.add()
            attr.name, attr.type, attr.f = name, framework_pb2.FLOAT, value
    return safe


#: a PIR copy is not edited: both forms of the fusion are deleted for it (the PIR one crashes on
#: BlazeFace; the translated BlazeFace then fails its oneDNN probe and runs on plain kernels)
BLAZEFACE_FIX = GraphFix(keep_concat_relus_apart, ("conv_activation_onednn_fuse_pass",
                                                   "conv_concat_activation_onednn_fuse_pass"))

#: the stride of the finest head; the coarser map is resized to it inside the model, so any
#: multiple of 8 gives the same boxes (checked against 32 on the demo queries, to 0.2 px)
PAD_MULTIPLE = 8
#: the last pass's long side: no face the image holds is larger there (the largest anchor)
LARGEST_FACE = 128.0
#: images up to this long side take one pass: the faces they hold are within the ~170 px found
SINGLE_PASS_SIDE = 160.0
#: the largest scale ratio between passes (faces of ~20-170 px are found: a range of 8.5)
MAX_STEP = 5.0
#: input buffers kept per detector (one per pass size of the recent image sizes)
MAX_BUFFERS = 16
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
    """Long-side lengths of the passes for an image: the first never larger than the image,
    the last LARGEST_FACE (unless the first is small enough alone), equal steps of at most
    MAX_STEP between them."""
    first = float(min(max(height, width), max_side))
    if first <= SINGLE_PASS_SIDE:
        return [first]
    steps = math.ceil(math.log(first / LARGEST_FACE) / math.log(MAX_STEP) - 1e-9)
    ratio = (first / LARGEST_FACE) ** (1.0 / steps)
    return [first / ratio**i for i in range(steps)] + [LARGEST_FACE]


def _pass_size(height: int, width: int, long_side: float) -> tuple[int, int]:
    """(width, height) of an image resized so that its long side is `long_side`."""
    scale = long_side / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x1, y1, x2, y2, ...) with each of boxes [K, >=4]."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = (np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
             * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """boxes [K, 5] (x1, y1, x2, y2, score) -> indices kept, highest score first."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
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
        #: input buffers by resized (height, width): the padding stays the mean colour
        self._buffers: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], options: PredictorOptions | None = None,
                    **kwargs) -> FaceDetector:
        folder = Path(folder)
        normalization = normalization_from_infer_cfg(folder) or BLAZEFACE_NORMALIZATION
        options = options or PredictorOptions()
        if options.graph_fix is None:  # a caller's own fix is kept
            options = replace(options, graph_fix=BLAZEFACE_FIX)
        probe = {"image": np.zeros((1, 3, 64, 64), np.float32),
                 "im_shape": np.array([[64, 64]], np.float32),
                 "scale_factor": np.ones((1, 2), np.float32)}
        predictor = create_predictor(folder, options, probe=lambda p: p.run(probe))
        return cls(predictor, normalization, **kwargs)

    def prepare(self, rgb: np.ndarray, long_side: float) -> dict[str, np.ndarray]:
        """uint8 RGB [H, W, 3] -> the detector's feeds for one pass (new arrays)."""
        height, width = rgb.shape[:2]
        size = _pass_size(height, width, long_side)
        resized = rgb if size == (width, height) else cv2.resize(
            rgb, size, interpolation=cv2.INTER_LINEAR)
        return self._feeds(resized, height, width)

    def pass_feeds(self, rgb: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        """The feeds of every pass of the pyramid, largest first, each valid until the next.

        The first pass is resized from the image, each later one from the pass before (fewer
        pixels to read; INTER_AREA because those steps shrink up to MAX_STEP times); the input
        buffers are kept per size and reused across calls.
        """
        height, width = rgb.shape[:2]
        source = rgb
        for side in pyramid_sides(height, width, self.max_side):
            size = _pass_size(height, width, side)
            if size != (source.shape[1], source.shape[0]):
                interpolation = cv2.INTER_LINEAR if source is rgb else cv2.INTER_AREA
                source = cv2.resize(source, size, interpolation=interpolation)
            yield self._feeds(source, height, width, reuse=True)

    def _feeds(self, resized: np.ndarray, height: int, width: int,
               reuse: bool = False) -> dict[str, np.ndarray]:
        new_h, new_w = resized.shape[:2]
        padded_h = -(-new_h // PAD_MULTIPLE) * PAD_MULTIPLE
        padded_w = -(-new_w // PAD_MULTIPLE) * PAD_MULTIPLE
        image = self._buffers.get((new_h, new_w)) if reuse else None
        if image is None:
            image = np.zeros((1, 3, padded_h, padded_w), np.float32)  # 0 == the mean colour
            if reuse:
                if len(self._buffers) >= MAX_BUFFERS:
                    self._buffers.clear()
                self._buffers[(new_h, new_w)] = image
        self.normalization.into_chw(resized, image[0, :, :new_h, :new_w])
        return {
            "image": image,
            # the padded size: the model decodes its normalised anchors against im_shape, so the
            # unpadded size would shrink and shift every box by the padding's share
            "im_shape": np.array([[padded_h, padded_w]], np.float32),
            "scale_factor": np.array([[new_h / height, new_w / width]], np.float32),
        }

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> boxes [K, 5] (x1, y1, x2, y2, score), best first."""
        height, width = rgb.shape[:2]
        found = []
        for feeds in self.pass_feeds(rgb):
            rows = self.predictor.run(feeds)[0]
            rows = rows[(rows[:, 0] > -1) & (rows[:, 1] >= self.threshold)]
            found.append(np.concatenate([rows[:, 2:6], rows[:, 1:2]], axis=1))
        boxes = np.concatenate(found).astype(np.float32)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        return boxes[nms(boxes)] if len(boxes) else boxes.reshape(0, 5)
