"""Validation overhead: `tools/validation.py`'s work on lfw.bin with MobileFace against the bare
embedding of the same 24,000 forward passes (12,000 faces and their mirrors), side by side.

Each phase runs in its own process, so its peak RSS is its own:
  bare          the published model's predictor on prepared random batches, no decoding, in
                the embedder's calls of 8 faces as validation makes them (measured: 206-218
                img/s at 8 to 128 per call, but peak RSS 574 MB at 8 and 3.3 GB at 128; the
                in-memory export of a checkpoint slows from ~150 to 70 img/s at 128)
  validation    run_validation(--model_dir mobileface): decode, preprocess, flip, 10-fold
  checkpoint    run_validation(--checkpoint_dir) on the published weights imported into
                MobileFaceNet_128: exported in memory, run through paddle.inference (oneDNN)
  engines       img/s of that network at batch 32: eager, to_static, paddle.inference
Goal: validation / bare <= 1.2, peak RSS <= 1.5 GB.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_validation.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64  # faces per batch; each batch runs as 128 images with the mirrors


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_bare(model_dir: Path, faces: int) -> dict:
    from insightface_paddle.recognition import FaceEmbedder

    embedder = FaceEmbedder.from_folder(model_dir)
    batch = np.random.default_rng(0).uniform(-1, 1, (2 * BATCH, 3, 112, 112)).astype(np.float32)
    embedder.run(batch)  # warm-up: oneDNN kernels for this shape
    start = time.perf_counter()
    done = 0
    while done < faces:  # in the embedder's own calls (max_batch_size faces), as validation
        n = min(BATCH, faces - done)
        embedder.run(batch[:2 * n])
        done += n
    return {"seconds": time.perf_counter() - start, "passes": 2 * faces}


def phase_validation(data_dir: Path, **model: str) -> dict:
    from arcface_paddle.evaluation.validate import run_validation

    start = time.perf_counter()
    run = run_validation(["lfw"], str(data_dir), batch_size=BATCH, **model)
    report = run.reports[0]
    return {"seconds": time.perf_counter() - start, "accuracy": report.accuracy,
            "passes": 4 * report.pairs}


def phase_engines(weights: str, batch_size: int = 32, repeats: int = 3) -> dict:
    from arcface_paddle.evaluation.engines import checkpoint_embedder

    batch = np.random.default_rng(0).uniform(-1, 1, (batch_size, 3, 112, 112)).astype(
        np.float32)
    speeds = {}
    for engine in ("eager", "to_static", "inference"):
        embedder = checkpoint_embedder(weights, engine=engine)
        embedder.run(batch)
        start = time.perf_counter()
        for _ in range(repeats):
            embedder.run(batch)
        speeds[engine] = repeats * batch_size / (time.perf_counter() - start)
    return {"img_per_s": speeds}


def child(phase: str, args: dict) -> dict:
    """Run one phase in a fresh process -> its figures plus its peak RSS."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from benchmarks import bench_validation as b; "
            "out = getattr(b, 'phase_' + sys.argv[2])(**json.loads(sys.argv[3])); "
            "out['peak_rss_mb'] = b.peak_rss_mb(); print('RESULT ' + json.dumps(out))")
    repo = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", code, repo, phase, json.dumps(args)],
                            capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"phase {phase} failed:\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--skip_checkpoint", action="store_true",
                        help="measure only bare and validation")
    args = parser.parse_args()
    shared = Path(args.shared).resolve()
    model_dir = shared / "models" / "mobileface_v1.0_infer"
    data_dir = shared / "data"

    rows = {"bare (24,000 forward passes)": child("bare", {"model_dir": str(model_dir),
                                                           "faces": 12000})}
    rows["validation --model_dir"] = child("validation", {"data_dir": str(data_dir),
                                                          "model_dir": str(model_dir)})
    engines = None
    if not args.skip_checkpoint:
        from arcface_paddle.published_mobileface import import_published_mobileface
        from arcface_paddle.weights import layer_arrays, save_weights

        with tempfile.TemporaryDirectory() as tmp:
            weights = str(Path(tmp) / "mobileface.npz")
            save_weights(weights, layer_arrays(import_published_mobileface(model_dir)),
                         "MobileFaceNet_128", 128)
            rows["validation --checkpoint_dir"] = child("validation", {
                "data_dir": str(data_dir), "checkpoint_dir": weights})
            engines = child("engines", {"weights": weights})

    bare = rows["bare (24,000 forward passes)"]["seconds"]
    table = PrettyTable(["run", "forward passes", "wall s", "ratio to bare", "peak RSS MB",
                         "LFW accuracy"])
    for name, row in rows.items():
        accuracy = f"{row['accuracy']:.5f}" if "accuracy" in row else "-"
        table.add_row([name, row["passes"], f"{row['seconds']:.1f}",
                       f"{row['seconds'] / bare:.2f}", f"{row['peak_rss_mb']:.0f}", accuracy])
    print(table)
    if engines:
        speeds = engines["img_per_s"]
        print("MobileFaceNet_128 at batch 32, img/s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in speeds.items()) +
            f"; inference / eager {speeds['inference'] / speeds['eager']:.1f}x")


if __name__ == "__main__":
    main()
