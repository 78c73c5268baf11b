"""The Python API apps call: prepare the models once, then `predict(image)` -> faces.

    from insightface_paddle import InsightFace
    app = InsightFace(index="friends.npz")
    for face in app.predict(cv2.imread("photo.jpg")):      # ndarrays are BGR unless told
        print(face.label, face.similarity, face.box)

Paths are read by the library (any format OpenCV decodes); ndarrays are uint8 [H, W, 3] in
`channel_order` ("bgr" by default, as OpenCV gives them; "rgb" for PIL/imageio). Nothing is
written to disk unless asked (`build_index(...).save(path)`).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from . import __version__, zoo
from .checks import DEFAULT_MAX_PIXELS, check_boxes, check_options
from .detection import FaceDetector
from .errors import InsightFaceError
from .face_crops import KEYPOINT_MODEL, WHOLE_IMAGE, FaceCrop, FaceCropper, make_cropper
from .fileio import sha256_file
from .gallery import scan_gallery
from .index import UNKNOWN, Candidate, FaceIndex
from .media import Frame, as_rgb, read_image
from .predictor import PredictorOptions
from .recognition import FaceEmbedder, l2_normalize

log = logging.getLogger(__name__)

ImageLike = str | os.PathLike | np.ndarray

#: Default cosine threshold for naming a face. On the raw LFW pairs through this pipeline
#: (MobileFace, no flip) no impostor pair reaches 0.36 (the highest of 300 is 0.357 with face
#: squares, 0.283 aligned by keypoints); 0.40 keeps a margin above that and rejects fewer genuine
#: single-photo pairs than the old tool's 0.45 (25% against 35%, face squares). Galleries with
#: several photos per person do better.
REC_THRESH = 0.40
#: the index's "faces" value for galleries of detected faces
DETECTED_FACES = "largest detected face"


@dataclass
class Face:
    #: x1, y1, x2, y2 in pixels of the input image
    box: tuple[float, float, float, float]
    #: detector confidence (1.0 when the whole image was taken as the face)
    score: float
    #: best identity, "unknown" below the recognition threshold, None without an index
    label: str | None = None
    #: cosine similarity of the best identity
    similarity: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    #: unit-length embedding, None when recognition is off
    embedding: np.ndarray | None = None
    #: keypoints [P, 2] in input pixels (MediaPipe's order: right eye, left eye, nose tip,
    #: mouth centre, right and left ear tragion), None without the landmark stage or when it
    #: found none
    landmarks: np.ndarray | None = None
    #: what the recognizer saw: "aligned", "face square", "face square (no keypoints found)"
    #: or "whole image" (see face_crops.py); None when nothing was cropped
    crop: str | None = None

    def to_dict(self, with_embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "candidates": [{"label": c.label, "similarity": round(c.similarity, 4)}
                           for c in self.candidates],
            "landmarks": None if self.landmarks is None else
            [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "crop": self.crop,
        }
        if with_embedding and self.embedding is not None:
            out["embedding"] = [float(v) for v in self.embedding]
        return out


class InsightFace:
    """Detection (BlazeFace) and recognition (MobileFace, ArcFace or an exported model).

    `det_model` / `rec_model`: a zoo name or a model folder; pass None to switch a stage off
    (no detector: each image is one face). `index`: an index file or a `FaceIndex`.
    `align`: the crop policy (face_crops.py), "keypoints" or "none"; None picks keypoints when
    `landmark_model` (a zoo name or a model folder) is available.
    """

    def __init__(self, det_model: str | os.PathLike | None = "BlazeFace",
                 rec_model: str | os.PathLike | None = "MobileFace",
                 index: str | os.PathLike | FaceIndex | None = None, *,
                 det_thresh: float = 0.5, rec_thresh: float = REC_THRESH, cdd_num: int = 5,
                 max_batch_size: int = 8, det_max_side: int = 640,
                 approximate_search: bool = False, use_gpu: bool = False,
                 cpu_threads: int | None = None, enable_mkldnn: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 align: str | None = None,
                 landmark_model: str | os.PathLike = KEYPOINT_MODEL) -> None:
        if det_model is None and rec_model is None:
            raise InsightFaceError("nothing to do: enable detection, recognition or both")
        check_options(det_thresh=det_thresh, rec_thresh=rec_thresh, cdd_num=cdd_num,
                      max_batch_size=max_batch_size, det_max_side=det_max_side,
                      cpu_threads=cpu_threads, max_pixels=max_pixels)
        if index is not None and not isinstance(index, (str, os.PathLike, FaceIndex)):
            raise InsightFaceError(f"index must be a path or a FaceIndex, got "
                                   f"{type(index).__name__}")
        #: images from paths larger than this are refused before decoding
        self.max_pixels = max_pixels
        options = PredictorOptions(use_gpu=use_gpu, enable_mkldnn=enable_mkldnn,
                                   **({"cpu_threads": cpu_threads} if cpu_threads else {}))
        if use_gpu:
            _require_cuda()
        self.rec_thresh = rec_thresh
        self.cdd_num = cdd_num
        self.approximate_search = approximate_search
        self.detector = self.embedder = None
        self.cropper = FaceCropper("none")
        if det_model is not None:
            self.detector = FaceDetector.from_folder(
                zoo.resolve(det_model, "detection"), options, threshold=det_thresh,
                max_side=det_max_side)
            self.cropper = make_cropper(align, landmark_model, options)
        elif align == "keypoints":
            raise InsightFaceError("--align keypoints needs a detection model")
        if rec_model is not None:
            folder = zoo.resolve(rec_model, "recognition")
            name = str(rec_model) if str(rec_model) in zoo.ZOO else None
            self.embedder = FaceEmbedder.from_folder(folder, name, options,
                                                     max_batch_size=max_batch_size)
        self.index = None
        if index is not None:
            self.set_index(index)

    # -- index ----------------------------------------------------------------------------
    def set_index(self, index: str | os.PathLike | FaceIndex) -> None:
        embedder = self._need_embedder("an index")
        if not isinstance(index, (str, os.PathLike, FaceIndex)):
            raise InsightFaceError(f"index must be a path or a FaceIndex, got "
                                   f"{type(index).__name__}")
        loaded = index if isinstance(index, FaceIndex) else FaceIndex.load(index)
        loaded.check_model(embedder.signature)
        built = loaded.info.get("align", "none")
        if loaded.info.get("faces") == DETECTED_FACES and built != self.cropper.align:
            raise InsightFaceError(
                f"the index was built from faces cropped with --align {built} but faces are now "
                f"cropped with --align {self.cropper.align}: pass --align {built} or rebuild the "
                "index")
        order = loaded.info.get("channel_order", embedder.normalization.channel_order)
        if order != embedder.normalization.channel_order:
            log.warning("the index was embedded from %s photos (%s) but faces are embedded as "
                        "%s: expect weaker matches; rebuild it from the gallery", order,
                        loaded.info.get("imported_from", "an import"),
                        embedder.normalization.channel_order)
        self.index = loaded

    def build_index(self, img_dir: str | os.PathLike, label_file: str | os.PathLike | None = None,
                    detect_faces: bool = False, base: FaceIndex | None = None,
                    progress: bool = True, shard: tuple[int, int] | None = None) -> FaceIndex:
        """Embed a gallery (sub-folder per identity, or `label_file`) into a new or `base` index.

        With `detect_faces`, the largest detected face of each photo is cropped by the crop
        policy and embedded, as query faces are (photos without a face are an error); otherwise
        the whole photo is, as the old tool did (in RGB here). Photos whose file content is
        already in the index are skipped (with a warning). `shard=(i, n)` embeds only the i-th of n
        equal consecutive parts of the gallery (1-based): merging the n shards in order
        (`index.merge_files`) gives the index one build would.
        """
        embedder = self._need_embedder("building an index")
        for name, value, optional in (("img_dir", img_dir, False),
                                      ("label_file", label_file, True)):
            if not isinstance(value, (str, os.PathLike)) and not (optional and value is None):
                raise InsightFaceError(f"{name} must be a path, got {type(value).__name__}")
        if base is not None and not isinstance(base, FaceIndex):
            raise InsightFaceError(f"base must be a FaceIndex, got {type(base).__name__}")
        if detect_faces and self.detector is None:
            raise InsightFaceError("detecting gallery faces needs a detection model")
        entries = scan_gallery(img_dir, label_file)
        if shard is not None:
            entries = shard_of(entries, *shard)
        policy = {"channel_order": embedder.normalization.channel_order,
                  "faces": DETECTED_FACES if detect_faces else "whole photo"}
        if detect_faces:
            policy["align"] = self.cropper.align
        index = base if base is not None else FaceIndex(embedder.signature)
        index.check_model(embedder.signature)
        if len(index):
            built = dict(index.info)
            if built.get("faces") == DETECTED_FACES:
                built.setdefault("align", "none")  # indexes made before alignment existed
            for key, value in policy.items():
                if built.get(key, value) != value:
                    raise InsightFaceError(
                        f"the index holds {key} '{built[key]}' embeddings; adding "
                        f"'{value}' ones would mix two kinds (use --detect_gallery and --align "
                        "as when it was built, or rebuild it)")
        entries, hashes = skip_known_photos(entries, index)
        chunk = embedder.max_batch_size
        parts = []
        # disable=None: a bar on a terminal only, not in a pipe or a log
        bar = tqdm(total=len(entries), desc="index", unit="photo",
                   disable=None if progress else True, file=sys.stderr)
        with bar:
            for start in range(0, len(entries), chunk):
                part = entries[start:start + chunk]
                crops = [self._gallery_face(read_image(p, self.max_pixels), p, detect_faces).image
                         for p, _ in part]
                parts.append(embedder.run(embedder.preprocess_images(crops)))
                bar.update(len(part))
        if entries:
            index.add([label for _, label in entries], np.concatenate(parts),
                      [str(path) for path, _ in entries], hashes)
        index.info.update({
            **policy, "built_from": str(img_dir), "built_with": f"insightface_paddle {__version__}",
            "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        })
        return index

    def _gallery_face(self, rgb: np.ndarray, path: Path, detect_faces: bool) -> FaceCrop:
        if not detect_faces:
            return FaceCrop(rgb, WHOLE_IMAGE)
        assert self.detector is not None
        boxes = self.detector.detect(rgb)
        if not len(boxes):
            raise InsightFaceError(f"{path}: no face found (lower --det_thresh or drop the photo)")
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return self.cropper.crop(rgb, boxes[int(np.argmax(areas))][None])[0]

    # -- prediction -----------------------------------------------------------------------
    def detect(self, image: ImageLike, channel_order: str = "bgr") -> np.ndarray:
        """-> boxes [K, 5] (x1, y1, x2, y2, score) in input pixels, best first."""
        if self.detector is None:
            raise InsightFaceError("no detection model loaded")
        return self.detector.detect(self._to_rgb(image, channel_order))

    def embed(self, image: ImageLike, boxes: np.ndarray | None = None,
              channel_order: str = "bgr") -> np.ndarray:
        """Unit embeddings [K, D] of the faces in `boxes` ([K, >=4]), cropped by the crop
        policy, or of the whole image."""
        embedder = self._need_embedder("embedding")
        rgb = self._to_rgb(image, channel_order)
        if boxes is None:
            crops = [rgb]
        else:
            crops = [c.image for c in self.cropper.crop(rgb, check_boxes(boxes, rgb.shape))]
        return l2_normalize(embedder.run(embedder.preprocess_images(crops)))

    def predict(self, image: ImageLike, channel_order: str = "bgr") -> list[Face]:
        return self.predict_rgb(self._to_rgb(image, channel_order))

    def predict_rgb(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        if self.detector is not None:
            boxes = self.detector.detect(rgb)
        else:
            boxes = np.array([[0, 0, width, height, 1.0]], np.float32)
        faces = [Face(tuple(float(v) for v in b[:4]), float(b[4])) for b in boxes]
        if not faces or (self.embedder is None and self.cropper.keypoints is None):
            return faces
        crops = self.cropper.crop(rgb, boxes) if self.detector is not None else [
            FaceCrop(rgb, WHOLE_IMAGE)]
        for face, crop in zip(faces, crops, strict=True):
            face.landmarks, face.crop = crop.landmarks, crop.crop
        if self.embedder is None:
            return faces
        raw = self.embedder.run(self.embedder.preprocess_images([c.image for c in crops]))
        embeddings = l2_normalize(raw)
        for face, embedding in zip(faces, embeddings, strict=True):
            face.embedding = embedding
        if self.index is not None:
            results = self.index.search(embeddings, self.embedder.signature, self.cdd_num,
                                        approximate=self.approximate_search)
            for face, candidates in zip(faces, results, strict=True):
                face.candidates = candidates
                if candidates:
                    best = candidates[0]
                    face.similarity = best.similarity
                    face.label = best.label if best.similarity >= self.rec_thresh else UNKNOWN
                else:
                    face.label = UNKNOWN
        return faces

    def predict_frames(self, frames: Sequence[Frame] | Iterator[Frame]
                       ) -> Iterator[tuple[Frame, list[Face]]]:
        for frame in frames:
            yield frame, self.predict_rgb(frame.rgb)

    def _need_embedder(self, what: str) -> FaceEmbedder:
        if self.embedder is None:
            raise InsightFaceError(f"{what} needs a recognition model")
        return self.embedder

    def _to_rgb(self, image: ImageLike, channel_order: str) -> np.ndarray:
        if isinstance(image, np.ndarray):
            return as_rgb(image, channel_order)
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, self.max_pixels)
        raise InsightFaceError(f"image must be a path or a uint8 ndarray [H, W, 3], got "
                               f"{type(image).__name__}")


def shard_of(entries: list[tuple[Path, str]], number: int, count: int,
             ) -> list[tuple[Path, str]]:
    """The `number`-th (1-based) of `count` equal consecutive parts of the gallery."""
    if not 1 <= number <= count:
        raise InsightFaceError(f"shard {number}/{count}: expected 1 <= shard <= {count}")
    return entries[len(entries) * (number - 1) // count:len(entries) * number // count]


def skip_known_photos(entries: list[tuple[Path, str]], index: FaceIndex,
                      ) -> tuple[list[tuple[Path, str]], list[str]]:
    """Drop photos whose file content is already in `index` (or earlier in `entries`), saying
    so -> the rest and their sha256."""
    known = index.known_hashes()
    kept, hashes, skipped = [], [], []
    for path, label in entries:
        digest = sha256_file(path)
        if bytes.fromhex(digest) in known:
            skipped.append(path)
            continue
        known.add(bytes.fromhex(digest))
        kept.append((path, label))
        hashes.append(digest)
    if skipped:
        log.warning("%d of %d gallery photos are already in the index (same file content, "
                    "e.g. %s): skipped", len(skipped), len(entries), skipped[0])
    return kept, hashes


def _require_cuda() -> None:
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        raise InsightFaceError("--use_gpu: this PaddlePaddle build has no CUDA support "
                               "(install paddlepaddle-gpu)")
