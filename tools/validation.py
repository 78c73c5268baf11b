"""Score a model on insightface verification sets (10-fold protocol with flip):

    python tools/validation.py --checkpoint_dir output/ms1mv3_r50/checkpoints/step_00002000 \
        --backbone FresResNet50 --embedding_size 512 --data_dir MS1M_v3 \
        --val_targets lfw,cfp_fp,agedb_30
    python tools/validation.py --model_dir ../shared/models/mobileface_v1.0_infer \
        --data_dir ../shared/data --val_targets lfw,cfp_fp

Prints per set: accuracy mean and std over the folds, the threshold (squared L2 distance and
cosine), TAR at FAR 1e-3 and 1e-4, ROC AUC and XNorm; --json FILE and --plot DIR save them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import add_checkpoint_arguments, run_main
from arcface_paddle.evaluation.engines import ENGINES
from arcface_paddle.evaluation.validate import run_validation
from insightface_paddle.cli import str2bool
from insightface_paddle.predictor import PredictorOptions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    parser.add_argument("--model_dir", default=None,
                        help="an exported model folder (inference.json or legacy "
                             "inference.pdmodel + inference.pdiparams, or model.onnx) or a "
                             ".onnx file")
    parser.add_argument("--data_dir", default=None, help="folder holding the <name>.bin sets")
    parser.add_argument("--val_targets", default="lfw,cfp_fp,agedb_30",
                        help="comma-separated set names (lfw, cfp_fp, cfp_ff, agedb_30, calfw, "
                             "cplfw, vgg2_fp or any NAME.bin in --data_dir) or .bin paths")
    parser.add_argument("--batch_size", type=int, default=64,
                        help="faces per forward pass (each with its mirror)")
    parser.add_argument("--engine", choices=ENGINES, default="inference",
                        help="how a checkpoint runs: paddle.inference with oneDNN (fastest), "
                             "to_static or eager")
    parser.add_argument("--no_flip", action="store_true",
                        help="embed each face alone, without adding its mirror's embedding")
    parser.add_argument("--cpu_threads", type=int, default=PredictorOptions().cpu_threads)
    parser.add_argument("--use_gpu", type=str2bool, default=False)
    parser.add_argument("--json", default=None, metavar="FILE", help="write the figures here")
    parser.add_argument("--plot", default=None, metavar="DIR",
                        help="write roc_<set>.png per set here (needs matplotlib)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = PredictorOptions(use_gpu=args.use_gpu, cpu_threads=args.cpu_threads)
    targets = [t.strip() for t in args.val_targets.split(",") if t.strip()]
    run = run_validation(targets, args.data_dir, args.model_dir, args.checkpoint_dir,
                         args.backbone, args.embedding_size, args.batch_size, args.engine,
                         not args.no_flip, args.json, args.plot, options)
    print(run.table())
    return 0


if __name__ == "__main__":
    run_main(main)
