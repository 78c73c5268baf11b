"""Convert an insightface dataset folder (train.rec/.idx, property, *.bin) into images/,
label.txt and summary.json, without MXNet. Re-run it to finish an interrupted conversion.

    python tools/mx_recordio_2_images.py --root_dir faces_emore --output_dir faces_emore_images
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
from arcface_paddle.data.convert_recordio import recordio_to_images  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root_dir", required=True,
                        help="folder with train.rec, train.idx (optional), property, *.bin")
    parser.add_argument("--output_dir", required=True, help="where images/ and label.txt go")
    parser.add_argument("--num_workers", type=int, default=1,
                        help="processes writing images in parallel (default 1)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    summary = recordio_to_images(args.root_dir, args.output_dir, num_workers=args.num_workers,
                                 progress=show_progress())
    table = PrettyTable(["", "count"], align="r")
    table.add_row(["images", summary.images])
    table.add_row(["identities (distinct labels)", summary.identities])
    table.add_row(["classes (property)", summary.num_classes])
    if summary.identity_records is not None:
        table.add_row(["identity records (header)", summary.identity_records])
    table.add_row(["written this run", summary.written])
    table.add_row(["already complete", summary.skipped])
    table.add_row(["verification sets", ", ".join(summary.verification_sets) or "none"])
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
