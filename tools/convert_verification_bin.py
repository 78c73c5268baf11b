"""Turn a verification set (lfw.bin, ...) into images + pairs.txt, or build one from them.

    python tools/convert_verification_bin.py --bin_path lfw.bin --image_path lfw --mode bin2image
    python tools/convert_verification_bin.py --bin_path mine.bin --image_path mine \
        --mode image2bin

pairs.txt holds one `image_a<TAB>image_b<TAB>1|0` line per pair (1 = same person), with paths
relative to --image_path; images should be aligned 112x112 face crops like the published sets.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from prettytable import PrettyTable  # noqa: E402

from arcface_paddle.command import run_main, show_progress  # noqa: E402
from arcface_paddle.data.convert_verification import (  # noqa: E402
    folder_to_verification_bin,
    verification_bin_to_folder,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin_path", required=True, help="the verification .bin file")
    parser.add_argument("--image_path", required=True, help="folder with pairs.txt and images")
    parser.add_argument("--mode", required=True, choices=("bin2image", "image2bin"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "bin2image":
        summary = verification_bin_to_folder(args.bin_path, args.image_path,
                                             progress=show_progress())
    else:
        summary = folder_to_verification_bin(args.image_path, args.bin_path,
                                             progress=show_progress())
    table = PrettyTable(["pairs", "same", "different"], align="r")
    table.add_row([summary.pairs, summary.same, summary.different])
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
