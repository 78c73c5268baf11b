"""Export a training checkpoint as a model folder the runtime loads as it is:

    python tools/export.py --checkpoint_dir output/tiny_cpu/checkpoints/step_00000120 \
        --export_type all --output_dir exported/tiny --check_data ../shared/data/lfw.bin

writes inference.json + inference.pdiparams (paddle), model.onnx (onnx) or both (all), and
model_meta.json (docs/model_metadata.md). Before anything is put in place the export embeds
real faces (--check_data: a verification .bin or a folder of aligned faces) with the checkpoint
and with every exported model, and fails if they differ (cosine below 0.99999).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import add_checkpoint_arguments, run_main
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.export import EXPORT_TYPES, convert_model_folder, export_checkpoint


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    parser.add_argument("--export_type", choices=EXPORT_TYPES, default="paddle")
    parser.add_argument("--model_dir", default=None,
                        help="instead of a checkpoint: a Paddle inference folder (e.g. the "
                             "published MobileFace) to convert to ONNX (--export_type onnx)")
    parser.add_argument("--output_dir", required=True, help="model folder to write")
    parser.add_argument("--check_data", default=None,
                        help="real faces for the self-check: a verification .bin or a folder "
                             "of aligned 112x112 faces (default: noise images, with a warning)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if bool(args.checkpoint_dir) == bool(args.model_dir):
        raise ArcFaceError("give exactly one of --checkpoint_dir and --model_dir")
    if args.model_dir:
        if args.export_type != "onnx":
            raise ArcFaceError("--model_dir is already a Paddle model: use --export_type onnx")
        report, checked = convert_model_folder(args.model_dir, args.output_dir, args.check_data)
    else:
        report, checked = export_checkpoint(args.checkpoint_dir, args.output_dir,
                                            args.export_type, args.backbone,
                                            args.embedding_size, args.check_data)
    if args.check_data is None:
        print("warning: self-check on noise images; pass --check_data for real faces",
              file=sys.stderr)
    print(f"exported to {args.output_dir}; self-check on {checked}: {report.describe()}")
    return 0


if __name__ == "__main__":
    run_main(main)
