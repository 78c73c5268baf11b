"""Folder throughput: images per second of the CLI's loop against the bare predictor calls it
makes, measured side by side in one run.

The photos are shared ones (the demo queries, then raw LFW portraits), in folders of `--chunk`.
"Bare" replays exactly the predictor calls the pipeline made for these images (recorded on a
first pass, so whatever passes the detector chooses are the ones replayed), on already prepared
inputs, side by side where the pipeline made them side by side.
"CLI" is `insightfacepaddle --det --rec --index ... --input FOLDER`'s loop, in process
(`cli.predict`: decoding, reading ahead, detection, recognition, search, the table), without
the one-off model and index loading. The ratio bare time / CLI time is the share of the
predictors' speed the CLI reaches (1.00 = all of it); the row without read-ahead shows what the
prefetch thread adds.
Run: INSIGHTFACE_PADDLE_SHARED=../shared python benchmarks/bench_folder_throughput.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_home import use_shared_models
from insightface_paddle import InsightFace, cli
from insightface_paddle.media import IMAGE_SUFFIXES, InputSource
from insightface_paddle.report import RunReport, results_table
from insightface_paddle.runner import predict_source
from insightface_paddle.workers import executor


class RecordingPredictor:
    """Passes calls through to a predictor and keeps a copy of every feed, and whether the call
    came from the runtime's worker threads (made side by side with others) or the main one."""

    def __init__(self, inner, calls: list) -> None:
        self.inner = inner
        self.calls = calls
        self.input_names = inner.input_names
        self.fingerprint = inner.fingerprint
        self.concurrent_runs = inner.concurrent_runs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        side_by_side = threading.current_thread() is not threading.main_thread()
        self.calls.append((self.inner, {k: np.array(v, copy=True) for k, v in feeds.items()},
                           side_by_side))
        return self.inner.run(feeds)


def replay(calls: list) -> None:
    """Run recorded calls as they were made: in order, and each run of calls made side by side
    on the worker threads (a photo's faces split for the keypoint model) side by side again."""
    i = 0
    while i < len(calls):
        j = i + 1
        if calls[i][2]:
            while j < len(calls) and calls[j][2]:
                j += 1
            list(executor().map(lambda call: call[0].run(call[1]), calls[i:j]))
        else:
            calls[i][0].run(calls[i][1])
        i = j


def make_folders(shared: Path, count: int, chunk: int, target: Path) -> list[Path]:
    """`count` shared photos (the demo queries, then raw LFW photos) linked into sub-folders of
    `chunk` photos each under `target`."""
    queries = sorted((shared / "demo/friends/query").iterdir())
    lfw = sorted((shared / "data/lfw_raw/images").rglob("*"))
    photos = [p for p in queries + lfw if p.suffix.lower() in IMAGE_SUFFIXES][:count]
    folders = []
    for number, photo in enumerate(photos):
        folder = target / f"part{number // chunk:02d}"
        if not folder.is_dir():
            folder.mkdir()
            folders.append(folder)
        (folder / f"{number:03d}_{photo.name}").symlink_to(photo.resolve())
    return folders


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared",
                        default=os.environ.get("INSIGHTFACE_PADDLE_SHARED", "../shared"))
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--chunk", type=int, default=6,
                        help="photos per folder run (the ways alternate folder by folder)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shared = Path(args.shared)
    use_shared_models(shared)

    with tempfile.TemporaryDirectory() as tmp:
        folders = make_folders(shared, args.images, args.chunk, Path(tmp))
        app = InsightFace()
        index = app.build_index(shared / "demo/friends/gallery", progress=False)
        index_path = Path(tmp) / "friends.npz"
        index.save(index_path)
        app.set_index(index)
        detector, embedder = app.detector, app.embedder
        assert detector is not None and embedder is not None

        # record the predictor calls of one pass over each folder (also the warm-up)
        calls: dict[Path, list] = {folder: [] for folder in folders}
        faces = 0
        # every model the CLI runs: the detector, the recogniser and, when faces are aligned,
        # the keypoint model
        models = [detector, embedder]
        if app.cropper.keypoints is not None:
            models.append(app.cropper.keypoints)
        real = [model.predictor for model in models]
        for folder in folders:
            for model, predictor in zip(models, real, strict=True):
                model.predictor = RecordingPredictor(predictor, calls[folder])
            warm = predict_source(app, InputSource(folder), RunReport())
            assert not warm.failures, warm.failures
            faces += sum(len(f) for _, f in warm.results)
        for model, predictor in zip(models, real, strict=True):
            model.predictor = predictor

        def bare(folder: Path) -> None:
            replay(calls[folder])

        cli_args = {folder: cli.build_parser().parse_args(
            ["--det", "--rec", "--index", str(index_path), "--input", str(folder)])
            for folder in folders}

        def through_cli(folder: Path) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.predict(app, InputSource(folder), None, cli_args[folder]) == 0

        def without_read_ahead(folder: Path) -> None:
            report = predict_source(app, InputSource(folder), RunReport(), read_ahead=False)
            str(results_table(report))

        # The machine is shared: the three ways alternate folder by folder (a few seconds
        # each) and each folder's fastest of the repeats counts, the run least disturbed by
        # other processes; the sums over the folders are compared.
        ways = (bare, through_cli, without_read_ahead)
        best = np.full((len(folders), len(ways)), np.inf)
        for _ in range(args.repeats):
            for i, folder in enumerate(folders):
                for j, way in enumerate(ways):
                    best[i, j] = min(best[i, j], timed(lambda: way(folder)))  # noqa: B023
    bare_s, cli_s, plain_s = best.sum(axis=0)
    n = args.images
    table = PrettyTable([f"{n} shared photos ({faces} faces)", "images/s", "s per photo set"])
    table.add_row([f"bare predictor calls ({sum(map(len, calls.values()))})", f"{n / bare_s:.2f}",
                   f"{bare_s:.2f}"])
    table.add_row(["CLI loop (read-ahead thread)", f"{n / cli_s:.2f}", f"{cli_s:.2f}"])
    table.add_row(["CLI loop without read-ahead", f"{n / plain_s:.2f}", f"{plain_s:.2f}"])
    print(table)
    print(f"CLI images/s / bare predictor images/s = {bare_s / cli_s:.3f} "
          f"(without read-ahead {bare_s / plain_s:.3f})")


if __name__ == "__main__":
    main()
