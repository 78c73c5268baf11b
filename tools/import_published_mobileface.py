"""Import the published MobileFace weights into MobileFaceNet_128 and prove the import faithful.

    python tools/import_published_mobileface.py \
        --model_dir ../shared/models/mobileface_v1.0_infer --bin_path ../shared/data/lfw.bin \
        --output output/mobileface_v1.0.npz

Prints the embedding difference and both models' accuracy as a table (and JSON with --json);
exits non-zero when the embeddings differ by more than 1e-4 or the accuracies by more than 0.001.
The weights are written only after they passed. All 6000 LFW pairs take about 50 minutes on 2
CPU cores (the tool says its estimate first); `--pairs 600` checks a tenth of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arcface_paddle.command import run_main
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.published_mobileface import import_and_verify


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True,
                        help="legacy inference model folder (inference.pdmodel/.pdiparams)")
    parser.add_argument("--bin_path", required=True, help="verification set, e.g. lfw.bin")
    parser.add_argument("--output", default=None,
                        help="write the imported weights here once they passed (.npz, see "
                             "docs/backbones.md)")
    parser.add_argument("--compare_images", type=int, default=200,
                        help="faces (from the start of the set) whose embeddings are compared")
    parser.add_argument("--pairs", type=int, default=None,
                        help="score only the first N pairs (default: all; at least 10)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--no_flip", action="store_true",
                        help="score without adding the mirrored image's embedding")
    parser.add_argument("--mkldnn", action="store_true",
                        help="run the published model with oneDNN kernels (faster)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = import_and_verify(args.model_dir, args.bin_path, args.output, args.compare_images,
                               args.pairs, args.batch_size, not args.no_flip, args.mkldnn,
                               say=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.table(Path(args.bin_path).stem))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    if not report.passed:
        written = f"; {args.output} not written" if args.output else ""
        raise ArcFaceError(f"import is not faithful: max embedding diff {report.max_abs_diff:.3g}"
                           f" (limit 1e-4), accuracy diff {report.accuracy_diff:.4f} (limit 0.001)"
                           f"{written}")
    if args.output:
        print(f"weights written to {args.output}")
    return 0


if __name__ == "__main__":
    run_main(main)
