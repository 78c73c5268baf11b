"""`tools/inference.py`: embed faces with an exported model, and time it.

Faces are whole images (aligned 112x112 crops, any size is resized) or, with `detect`, the
face squares BlazeFace finds in raw photos: the runtime's own detector, crop and preprocessing,
so the embeddings are those `insightfacepaddle` would compute.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.fileio import atomic_open, atomic_path
from insightface_paddle.media import list_images, read_image
from insightface_paddle.predictor import PredictorOptions
from insightface_paddle.recognition import FaceEmbedder, crop_face, l2_normalize

from .errors import ArcFaceError
from .evaluation.engines import model_embedder

EMBEDDINGS_FILE = "embeddings.npy"
SOURCES_FILE = "sources.txt"


def load_model(export_type: str, model_dir: str | None = None, model_file: str | None = None,
               params_file: str | None = None, onnx_file: str | None = None,
               options: PredictorOptions | None = None) -> FaceEmbedder:
    """The model named by the original tool's flags -> the runtime's embedder."""
    options = options or PredictorOptions()
    if export_type not in ("paddle", "onnx"):
        raise ArcFaceError(f"--export_type {export_type!r}: expected paddle or onnx")
    if model_dir:
        from dataclasses import replace

        return model_embedder(model_dir, replace(options, backend=export_type))
    if export_type == "onnx":
        if not onnx_file:
            raise ArcFaceError("--export_type onnx: give --onnx_file or --model_dir")
        return model_embedder(onnx_file, options)
    if not model_file:
        raise ArcFaceError("--export_type paddle: give --model_file (and --params_file) or "
                           "--model_dir")
    return model_embedder(model_file, options, params=params_file)


def image_files(image_path: str) -> list[Path]:
    """The images of `--image_path`, checked before any model loads: a folder must hold
    images (a bad one among them is reported and skipped later), a single file must decode."""
    path = Path(image_path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise ArcFaceError(f"--image_path {path}: no images in the folder")
        return files
    if not path.is_file():
        raise ArcFaceError(f"--image_path {path}: no such file or folder")
    try:
        read_image(path)
    except InsightFaceError as exc:
        raise ArcFaceError(f"--image_path {exc}") from None
    return [path]


def faces_of(files: Sequence[Path], detect: bool, det_model: str = "BlazeFace",
             options: PredictorOptions | None = None
             ) -> Iterator[tuple[str, np.ndarray | None]]:
    """(source, uint8 RGB face) per face; (source, None) for a file that could not be read
    (its error printed on stderr), so one bad file does not end the run."""
    detector = None
    if detect:
        from insightface_paddle import zoo
        from insightface_paddle.detection import FaceDetector

        detector = FaceDetector.from_folder(zoo.resolve(det_model, "detection"), options)
    for path in files:
        try:
            rgb = read_image(path)
        except InsightFaceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            yield str(path), None
            continue
        if detector is None:
            yield str(path), rgb
            continue
        boxes = detector.detect(rgb)
        if not len(boxes):
            print(f"warning: {path}: no face found", file=sys.stderr)
        for k, box in enumerate(boxes):
            yield f"{path}#{k} box {','.join(f'{v:.0f}' for v in box[:4])}", crop_face(rgb, box)


@dataclass(frozen=True)
class EmbeddingRun:
    count: int
    failed: int
    output: Path


def embed_to_files(embedder: FaceEmbedder, faces: Iterator[tuple[str, np.ndarray | None]],
                   output: str, batch_size: int = 32) -> EmbeddingRun:
    """Unit embeddings [N, D] -> output/embeddings.npy, the source of each row ->
    output/sources.txt (both written atomically)."""
    folder = Path(output)
    rows, sources, pending, failed = [], [], [], 0

    def flush() -> None:
        if pending:
            batch = embedder.preprocess_images([face for _, face in pending])
            rows.append(l2_normalize(embedder.run(batch)))
            sources.extend(source for source, _ in pending)
            pending.clear()

    for source, face in faces:
        if face is None:
            failed += 1
            continue
        pending.append((source, face))
        if len(pending) >= batch_size:
            flush()
    flush()
    if not rows:
        raise ArcFaceError("no face was embedded")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / EMBEDDINGS_FILE) as tmp:
            np.save(tmp, np.concatenate(rows))
        with atomic_open(folder / SOURCES_FILE, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{s}\n" for s in sources))
    except OSError as exc:
        raise ArcFaceError(f"--output {folder}: cannot write ({exc.strerror})") from None
    return EmbeddingRun(len(sources), failed, folder)


def benchmark(embedder: FaceEmbedder, batch_sizes: Sequence[int], runs: int = 20,
              warmup: int = 3) -> list[dict[str, float]]:
    """Latency of `embedder.run` per batch size -> rows of batch, p50/p90/p99 ms, img/s."""
    width, height = embedder.input_size
    rng = np.random.default_rng(0)
    rows = []
    for batch_size in batch_sizes:
        if batch_size < 1:
            raise ArcFaceError(f"--batch_sizes: {batch_size} is not a positive batch size")
        batch = rng.uniform(-1, 1, (batch_size, 3, height, width)).astype(np.float32)
        for _ in range(warmup):
            embedder.predictor.run({embedder.predictor.input_names[0]: batch})
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            embedder.predictor.run({embedder.predictor.input_names[0]: batch})
            times.append(time.perf_counter() - start)
        ms = np.asarray(times) * 1000
        rows.append({"batch": batch_size, "p50_ms": float(np.percentile(ms, 50)),
                     "p90_ms": float(np.percentile(ms, 90)),
                     "p99_ms": float(np.percentile(ms, 99)),
                     "img_per_s": batch_size / float(np.median(times))})
    return rows
