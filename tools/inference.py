"""Embed faces with an exported model:

    python tools/inference.py --export_type paddle --model_file exported/inference.json \
        --params_file exported/inference.pdiparams --image_path faces/
    python tools/inference.py --export_type onnx --onnx_file exported/model.onnx \
        --image_path photo.jpg --detect
    python tools/inference.py --model_dir exported --image_path faces/ --benchmark

--image_path is an image or a folder of aligned faces, or raw photos with --detect (BlazeFace,
as `insightfacepaddle` crops them). Writes <output>/embeddings.npy (unit rows) and
<output>/sources.txt (the source of each row). --benchmark prints latency percentiles for
--batch_sizes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prettytable import PrettyTable

from arcface_paddle.command import run_main
from arcface_paddle.errors import ArcFaceError, require_output_folder
from arcface_paddle.inference import (
    benchmark,
    embed_to_files,
    faces_of,
    image_files,
    load_model,
)
from insightface_paddle.cli import str2bool
from insightface_paddle.predictor import PredictorOptions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export_type", choices=("paddle", "onnx"), default="paddle")
    parser.add_argument("--model_file", default=None, help="Paddle graph (inference.json or "
                        "a legacy .pdmodel)")
    parser.add_argument("--params_file", default=None, help="its weights (.pdiparams)")
    parser.add_argument("--onnx_file", default=None, help="ONNX model (--export_type onnx)")
    parser.add_argument("--model_dir", default=None,
                        help="an exported model folder (instead of the files)")
    parser.add_argument("--image_path", default=None,
                        help="an image, or a folder of images (aligned faces unless --detect)")
    parser.add_argument("--detect", action="store_true",
                        help="detect faces in raw photos (BlazeFace) and embed each")
    parser.add_argument("--det_model", default="BlazeFace",
                        help="detection model: a zoo name or folder")
    parser.add_argument("--output", default="output/inference",
                        help="folder for embeddings.npy and sources.txt")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--benchmark", action="store_true",
                        help="print latency percentiles for --batch_sizes")
    parser.add_argument("--batch_sizes", default="1,32")
    parser.add_argument("--benchmark_runs", type=int, default=20)
    parser.add_argument("--cpu_threads", type=int, default=PredictorOptions().cpu_threads)
    parser.add_argument("--use_gpu", type=str2bool, default=False)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.image_path and not args.benchmark:
        raise ArcFaceError("give --image_path (faces to embed) or --benchmark")
    if args.batch_size < 1:
        raise ArcFaceError(f"--batch_size must be positive, got {args.batch_size}")
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        raise ArcFaceError(f"--batch_sizes {args.batch_sizes!r}: expected e.g. 1,32") from None
    files = image_files(args.image_path) if args.image_path else []
    if files:
        require_output_folder(args.output, "--output")
    options = PredictorOptions(use_gpu=args.use_gpu, cpu_threads=args.cpu_threads)
    embedder = load_model(args.export_type, args.model_dir, args.model_file, args.params_file,
                          args.onnx_file, options)
    code = 0
    if files:
        run = embed_to_files(embedder, faces_of(files, args.detect, args.det_model, options),
                             args.output, args.batch_size)
        print(f"{run.count} embeddings ({embedder.signature.describe()}) written to "
              f"{run.output}/embeddings.npy, sources in {run.output}/sources.txt")
        if run.failed:
            print(f"error: {run.failed} input file(s) could not be read", file=sys.stderr)
            code = 1
    if args.benchmark:
        table = PrettyTable(["batch", "p50 ms", "p90 ms", "p99 ms", "img/s"])
        for row in benchmark(embedder, batch_sizes, args.benchmark_runs):
            table.add_row([row["batch"], f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}",
                           f"{row['p99_ms']:.2f}", f"{row['img_per_s']:.1f}"])
        print(table)
    return code


if __name__ == "__main__":
    run_main(main)
