"""Paddle inference against ONNX Runtime: MobileFace latency at batch 1 and 32, side by side.

The published weights are imported into MobileFaceNet_128 and exported once as both
(`arcface_paddle.export`, checked to agree), then each backend runs the same random batches.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_backends.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--batch_sizes", default="1,32")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    from arcface_paddle.export import export_weights, exported_embedders
    from arcface_paddle.inference import benchmark
    from arcface_paddle.published_mobileface import import_published_mobileface
    from arcface_paddle.weights import layer_arrays

    shared = Path(args.shared)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    arrays = layer_arrays(import_published_mobileface(shared / "models/mobileface_v1.0_infer"))
    faces = np.random.default_rng(0).uniform(-1, 1, (8, 3, 112, 112)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        parity = export_weights(arrays, "MobileFaceNet_128", 128, tmp, faces, "all")
        embedders = exported_embedders(Path(tmp))
        results = {name: benchmark(e, batch_sizes, args.runs) for name, e in embedders.items()}
    print(f"export parity: {parity.describe()}")
    table = PrettyTable(["batch", "paddle p50 ms", "onnx p50 ms", "paddle p90", "onnx p90",
                         "onnx / paddle (p50)"])
    for paddle_row, onnx_row in zip(results["paddle"], results["onnx"], strict=True):
        table.add_row([paddle_row["batch"], f"{paddle_row['p50_ms']:.2f}",
                       f"{onnx_row['p50_ms']:.2f}", f"{paddle_row['p90_ms']:.2f}",
                       f"{onnx_row['p90_ms']:.2f}",
                       f"{onnx_row['p50_ms'] / paddle_row['p50_ms']:.2f}"])
    print(table)


if __name__ == "__main__":
    main()
