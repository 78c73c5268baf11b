"""Throughput of rec -> images: copying the encoded bytes (1 and 2 workers) against the old way,
decoding every image and encoding it again, measured side by side in one run.

    python benchmarks/bench_recordio_to_images.py --num_images 20000

It writes a `.rec` of generated 112x112 JPEG faces into a temporary folder, converts it with
`recordio_to_images` and with a decode + re-encode baseline (OpenCV, JPEG quality 95, one
process, the same atomic file writes), and prints images/s and the ratios. The machine is shared,
so compare the ratios, not the absolute figures; `--repeats` keeps the best of several rounds.
`--workdir /dev/shm` (tmpfs) measures the conversion itself; the default temporary folder on
disk adds the file system's cost of creating 20,000 files, which dominates on a shared VM.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from prettytable import PrettyTable  # noqa: E402
from tqdm import tqdm  # noqa: E402

from arcface_paddle.data.convert_recordio import recordio_to_images  # noqa: E402
from arcface_paddle.data.label_file import write_label_file  # noqa: E402
from arcface_paddle.data.recordio import RecFaceReader, write_rec_dataset  # noqa: E402
from insightface_paddle.fileio import write_bytes_atomic  # noqa: E402


def generated_faces(count: int, size: int, seed: int = 0):
    """Face-like JPEGs: a smooth per-identity pattern plus per-image noise and shift."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in tqdm(range(count), desc="generating JPEGs", unit="img"):
        identity = np.random.default_rng(i // 20)
        centre = identity.uniform(0.3, 0.7, size=2)
        base = identity.uniform(60, 200, size=3)
        blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.05)
        image = base[None, None, :] * (0.5 + blob[..., None]) + rng.normal(0, 12, (size, size, 3))
        image = np.roll(image, int(rng.integers(-4, 5)), axis=1)
        yield cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def decode_reencode(root_dir: Path, output_dir: Path) -> int:
    """The old tool's way: decode each record's image and write a new JPEG of it."""
    reader = RecFaceReader(root_dir)
    (output_dir / "images").mkdir(parents=True)
    entries = []
    for i in range(len(reader)):
        payload, label, key = reader.read_image(i)
        image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        name = f"images/{key:08d}.jpg"
        write_bytes_atomic(output_dir / name, encoded)
        entries.append((name, label))
    write_label_file(output_dir / "label.txt", entries)
    return len(entries)


def timed(run: Callable[[Path], int], scratch: Path) -> tuple[float, int]:
    output_dir = scratch / "out"
    shutil.rmtree(output_dir, ignore_errors=True)
    start = time.perf_counter()
    count = run(output_dir)
    elapsed = time.perf_counter() - start
    shutil.rmtree(output_dir, ignore_errors=True)
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the best time counts")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        scratch = Path(tmp)
        root = scratch / "faces"
        labels = np.arange(args.num_images) // 20
        write_rec_dataset(root, labels, generated_faces(args.num_images, args.size),
                          image_size=(args.size, args.size))
        rec_mib = (root / "train.rec").stat().st_size / 2**20
        print(f"{args.num_images} JPEGs, {labels[-1] + 1} identities, train.rec {rec_mib:.1f} MiB, "
              f"in {scratch} ({args.repeats} rounds, best time counts)")

        methods: dict[str, Callable[[Path], int]] = {
            "decode + re-encode (baseline)": lambda out: decode_reencode(root, out),
            "copy bytes, 1 worker": lambda out: recordio_to_images(
                root, out, num_workers=1, progress=False).written,
            "copy bytes, 2 workers": lambda out: recordio_to_images(
                root, out, num_workers=2, progress=False).written,
        }
        best = {name: float("inf") for name in methods}
        names = list(methods)
        for round_ in range(args.repeats):
            # interleaved, and each round starts with another method: file creation speed on
            # a shared disk drifts within seconds, and deleting the previous output slows it
            for name in names[round_ % 3:] + names[:round_ % 3]:
                elapsed, count = timed(methods[name], scratch)
                if count != args.num_images:
                    raise SystemExit(f"{name}: converted {count} of {args.num_images} images")
                best[name] = min(best[name], elapsed)

    baseline = best["decode + re-encode (baseline)"]
    table = PrettyTable(["method", "seconds", "images/s", "speed vs baseline"], align="r")
    table.align["method"] = "l"
    for name, seconds in best.items():
        table.add_row([name, f"{seconds:.2f}", f"{args.num_images / seconds:.0f}",
                       f"{baseline / seconds:.2f}x"])
    print(table)
    one, two = best["copy bytes, 1 worker"], best["copy bytes, 2 workers"]
    print(f"2 workers vs 1 worker: {one / two:.2f}x")


if __name__ == "__main__":
    main()
