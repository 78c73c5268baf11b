"""Folder throughput: images per second of the CLI's loop against the bare predictor calls it
makes, measured side by side in one run.

The folder holds shared photos (raw LFW portraits and the demo queries). "Bare" replays exactly
the predictor calls the pipeline made for these images (recorded on a first pass, so whatever
passes the detector chooses are the ones replayed), on already prepared inputs. "CLI" is
`insightfacepaddle --det --rec --index ... --input FOLDER`'s loop in process (`cli.predict`:
decoding, reading ahead, detection, recognition, search, the table), without the one-off model
and index loading. The ratio bare time / CLI time is the share of the predictors' speed the CLI
reaches (1.00 = all of it); the row without read-ahead shows what the prefetch thread adds.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_folder_throughput.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insightface_paddle import InsightFace, cli, zoo
from insightface_paddle.media import IMAGE_SUFFIXES, InputSource
from insightface_paddle.report import RunReport, results_table
from insightface_paddle.runner import predict_source


class RecordingPredictor:
    """Passes calls through to a predictor and keeps a copy of every feed."""

    def __init__(self, inner, calls: list) -> None:
        self.inner = inner
        self.calls = calls
        self.input_names = inner.input_names
        self.fingerprint = inner.fingerprint

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append((self.inner, {k: np.array(v, copy=True) for k, v in feeds.items()}))
        return self.inner.run(feeds)


def make_folder(shared: Path, count: int, target: Path) -> list[Path]:
    """`count` shared photos linked into `target`: the demo queries, then raw LFW photos."""
    queries = sorted((shared / "demo/friends/query").iterdir())
    lfw = sorted((shared / "data/lfw_raw/images").rglob("*"))
    photos = [p for p in queries + lfw if p.suffix.lower() in IMAGE_SUFFIXES][:count]
    for number, photo in enumerate(photos):
        (target / f"{number:03d}_{photo.name}").symlink_to(photo.resolve())
    return photos


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shared = Path(args.shared)
    os.environ.setdefault(zoo.HOME_ENV, str(shared / "models"))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        photos = make_folder(shared, args.images, folder)
        app = InsightFace()
        index = app.build_index(shared / "demo/friends/gallery", progress=False)
        index_path = Path(tmp) / "friends.npz"
        index.save(index_path)
        app.set_index(index)
        cli_args = cli.build_parser().parse_args(
            ["--det", "--rec", "--index", str(index_path), "--input", str(folder)])

        # record the predictor calls of one pass over the folder (also the warm-up)
        calls: list = []
        detector, embedder = app.detector, app.embedder
        assert detector is not None and embedder is not None
        real = detector.predictor, embedder.predictor
        detector.predictor = RecordingPredictor(real[0], calls)
        embedder.predictor = RecordingPredictor(real[1], calls)
        warm = predict_source(app, InputSource(folder), RunReport())
        detector.predictor, embedder.predictor = real
        assert not warm.failures, warm.failures
        faces = sum(len(f) for _, f in warm.results)

        def bare() -> None:
            for predictor, feeds in calls:
                predictor.run(feeds)

        def through_cli() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.predict(app, InputSource(folder), None, cli_args) == 0

        def without_read_ahead() -> None:
            report = predict_source(app, InputSource(folder), RunReport(), read_ahead=False)
            str(results_table(report))

        # alternate run by run so load on the machine hits each alike; the fastest of the
        # repeats is each one's time with the least interference from other processes
        runs = np.array([(timed(bare), timed(through_cli), timed(without_read_ahead))
                         for _ in range(args.repeats)])
    bare_s, cli_s, plain_s = runs.min(axis=0)
    n = len(photos)
    table = PrettyTable([f"{n} shared photos ({faces} faces)", "images/s", "s per folder"])
    table.add_row([f"bare predictor calls ({len(calls)})", f"{n / bare_s:.1f}", f"{bare_s:.2f}"])
    table.add_row(["CLI loop (read-ahead thread)", f"{n / cli_s:.1f}", f"{cli_s:.2f}"])
    table.add_row(["CLI loop without read-ahead", f"{n / plain_s:.1f}", f"{plain_s:.2f}"])
    print(table)
    print(f"CLI images/s / bare predictor images/s = {bare_s / cli_s:.3f} "
          f"(without read-ahead {bare_s / plain_s:.3f})")


if __name__ == "__main__":
    main()
