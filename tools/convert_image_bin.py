"""Pack an image folder (label.txt + images) into shard files for training, or unpack it.

    python tools/convert_image_bin.py --image_path faces_images --bin_path faces_packed \
        --mode image2bin
    python tools/convert_image_bin.py --image_path restored --bin_path faces_packed \
        --mode bin2image
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
from arcface_paddle.data.convert_packed import images_to_packed, packed_to_images  # noqa: E402
from arcface_paddle.errors import ArcFaceError  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_path", required=True,
                        help="folder holding label.txt and the images it lists")
    parser.add_argument("--bin_path", required=True, help="packed folder (meta.json, shards)")
    parser.add_argument("--mode", required=True, choices=("image2bin", "bin2image"))
    parser.add_argument("--max_shard_mb", type=int, default=1024,
                        help="largest shard file in MiB (image2bin; default 1024)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.max_shard_mb < 1:
        raise ArcFaceError(f"--max_shard_mb must be at least 1, got {args.max_shard_mb}")
    if args.mode == "image2bin":
        summary = images_to_packed(args.image_path, args.bin_path, args.max_shard_mb << 20,
                                   progress=show_progress())
    else:
        summary = packed_to_images(args.bin_path, args.image_path, progress=show_progress())
    table = PrettyTable(["images", "classes", "identities", "shards", "MiB",
                         "verification sets"], align="r")
    table.add_row([summary.images, summary.num_classes, summary.identities, summary.shards,
                   f"{summary.total_bytes / 2**20:.1f}",
                   ", ".join(summary.verification_sets) or "none"])
    print(table)
    return 0


if __name__ == "__main__":
    run_main(main)
