"""`insightfacepaddle`: detect and recognise faces, or build an index, from the command line.

Only argument parsing and output live here; the work is done by `api.InsightFace`. Any problem a
user can cause is reported as one line on stderr with exit status 1 (argparse's usage errors: 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .api import REC_THRESH, InsightFace
from .checks import DEFAULT_MAX_PIXELS, check_options, check_range
from .errors import InsightFaceError
from .face_crops import ALIGN_CHOICES, KEYPOINT_MODEL
from .fileio import exclusive_lock
from .folders import folder_for_output
from .gallery import scan_gallery
from .index import FaceIndex, merge_files
from .legacy import load_legacy_index
from .media import InputSource, Unreadable
from .native_stderr import silence_native_stderr
from .outputs import OutputFolder
from .report import RunReport, results_json, results_table
from .runner import predict_source


def str2bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes", "y", "on"):
        return True
    if value in ("0", "false", "f", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def shard_arg(text: str) -> tuple[int, int]:
    number, _, count = text.partition("/")
    try:
        shard = int(number), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"expected 1 <= I <= N, got {text!r}")
    return shard


def mode_arg(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected octal permissions (e.g. 600), "
                                         f"got {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"expected permissions 000..777, got {text!r}")
    return mode


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (the usage itself is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="insightfacepaddle",
        description="Face detection (BlazeFace) and recognition against an index.",
        epilog="examples:\n"
               "  insightfacepaddle --build_index friends.npz --img_dir gallery/\n"
               "  insightfacepaddle --det --rec --index friends.npz --input photo.jpg "
               "--output out/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    task = p.add_argument_group("what to do")
    task.add_argument("--det", action="store_true", help="detect faces")
    task.add_argument("--rec", action="store_true", help="recognise faces (needs --index)")
    task.add_argument("--input", help="an image, a folder of images or a video file")
    task.add_argument("--output", help="folder for drawn images / video (default: none)")
    task.add_argument("--json", action="store_true",
                      help="print results as JSON on stdout instead of a table")
    task.add_argument("--draw_landmarks", action="store_true",
                      help="with --output: also draw each face's keypoints")
    idx = p.add_argument_group("index")
    idx.add_argument("--index", help="index file (.npz); with --build_index, the one to extend")
    idx.add_argument("--build_index", metavar="OUT", help="write an index (.npz) and exit")
    idx.add_argument("--img_dir", help="gallery: one sub-folder per identity, or see --label")
    idx.add_argument("--label", help="gallery label file: 'path<TAB>identity' per line")
    idx.add_argument("--detect_gallery", action="store_true",
                     help="embed the largest detected face of each gallery photo, "
                          "not the whole photo")
    idx.add_argument("--remove", nargs="+", metavar="NAME", default=[],
                     help="with --build_index: identities to drop from --index")
    idx.add_argument("--legacy_index", metavar="BIN",
                     help="with --build_index: import the old tool's pickled index.bin "
                          "(embedded by --rec_model)")
    idx.add_argument("--merge", nargs="+", metavar="NPZ", default=[],
                     help="with --build_index: merge these indexes (same model and crop "
                          "policy) in order, e.g. shards built in parallel")
    idx.add_argument("--shard", type=shard_arg, metavar="I/N",
                     help="with --img_dir: embed only the I-th of N equal parts of the gallery "
                          "(merge the N shards in order with --merge)")
    idx.add_argument("--index_mode", type=mode_arg, metavar="OCTAL",
                     help="permissions of the written index (default: those of the file it "
                          "replaces, else 600: it holds biometric data)")
    mod = p.add_argument_group("models and runtime")
    mod.add_argument("--det_model", default="BlazeFace", help="zoo name or model folder")
    mod.add_argument("--rec_model", default="MobileFace",
                     help="zoo name (MobileFace, ArcFace) or model folder")
    mod.add_argument("--align", choices=ALIGN_CHOICES, default=None,
                     help="crop of each face for recognition: 'keypoints' warps it onto the "
                          "ArcFace template by its landmarks, 'none' takes the face square "
                          "(default: keypoints when --landmark_model is available)")
    mod.add_argument("--landmark_model", default=KEYPOINT_MODEL,
                     help="keypoint model: zoo name or model folder (default %(default)s)")
    mod.add_argument("--use_gpu", type=str2bool, nargs="?", const=True, default=False)
    mod.add_argument("--cpu_threads", type=int, default=None)
    mod.add_argument("--enable_mkldnn", type=str2bool, nargs="?", const=True, default=True,
                     help="oneDNN on CPU (default true)")
    mod.add_argument("--det_thresh", type=float, default=0.5)
    mod.add_argument("--det_max_side", type=int, default=640,
                     help="long side of the first detection pass; raise it for small faces in "
                          "very large photos (default 640)")
    mod.add_argument("--rec_thresh", type=float, default=REC_THRESH,
                     help="below this cosine similarity a face is 'unknown' (default %(default)s)")
    mod.add_argument("--cdd_num", type=int, default=5, help="candidates reported per face")
    mod.add_argument("--max_batch_size", type=int, default=8, help="faces per predictor call")
    mod.add_argument("--approximate", action="store_true",
                     help="approximate search with faiss (large galleries); with "
                          "--build_index: train its structure and store it in the index")
    mod.add_argument("--max_megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                     help="larger images are refused before decoding (default %(default)g)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; `argv` None means this process's own arguments (then native
    libraries' stray messages are kept off stderr, see `native_stderr`)."""
    if argv is None:
        silence_native_stderr()
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        return run(args)
    except InsightFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `insightfacepaddle ... | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 1
    except OSError as exc:  # disk full, permission denied, ... while writing results
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory (lower --max_megapixels or --max_batch_size)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    check_cli_options(args)
    if args.build_index:
        return build_index(args)
    if not (args.det or args.rec):
        raise InsightFaceError("nothing to do: pass --det and/or --rec, or --build_index")
    if args.input is None:
        raise InsightFaceError("--input is required (an image, a folder or a video)")
    if args.rec and args.index is None:
        raise InsightFaceError("--rec needs --index (make one with --build_index)")
    # check every input before loading any model
    index = FaceIndex.load(args.index) if args.rec else None
    source = InputSource(args.input, max_pixels(args))
    identities = index.identities if index is not None else []
    output = (OutputFolder(Path(args.output), source, identities, landmarks=args.draw_landmarks)
              if args.output else None)
    try:
        app = make_app(args, det=args.det, rec=args.rec, index=index)
        return predict(app, source, output, args)
    finally:
        if output is not None:
            output.close()


def max_pixels(args: argparse.Namespace) -> int:
    return max(1, round(args.max_megapixels * 1e6))


def check_cli_options(args: argparse.Namespace) -> None:
    """The numeric flags, before any file is read or model loaded."""
    check_range("--max_megapixels", args.max_megapixels, 1e-6)
    check_options(det_thresh=args.det_thresh, rec_thresh=args.rec_thresh, cdd_num=args.cdd_num,
                  max_batch_size=args.max_batch_size, det_max_side=args.det_max_side,
                  cpu_threads=args.cpu_threads, max_pixels=max_pixels(args))


def make_app(args: argparse.Namespace, det: bool, rec: bool,
             index: FaceIndex | None = None) -> InsightFace:
    return InsightFace(
        det_model=args.det_model if det else None, rec_model=args.rec_model if rec else None,
        index=index, det_thresh=args.det_thresh, rec_thresh=args.rec_thresh,
        cdd_num=args.cdd_num, max_batch_size=args.max_batch_size,
        det_max_side=args.det_max_side, approximate_search=args.approximate, use_gpu=args.use_gpu,
        cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn, align=args.align,
        landmark_model=args.landmark_model, max_pixels=max_pixels(args))


def build_index(args: argparse.Namespace) -> int:
    out = Path(args.build_index)
    if out.suffix != ".npz":
        raise InsightFaceError(f"--build_index {out}: index files end in .npz")
    if not (args.img_dir or args.remove or args.legacy_index or args.merge):
        raise InsightFaceError("--build_index needs --img_dir, --remove, --legacy_index or "
                               "--merge")
    if out.is_dir():
        raise InsightFaceError(f"--build_index {out}: is a folder")
    if args.remove and not args.index:
        raise InsightFaceError("--remove needs --index (the index to remove from)")
    if args.merge and (args.img_dir or args.legacy_index or args.index):
        raise InsightFaceError("--merge takes only the indexes to merge (no --img_dir, "
                               "--legacy_index or --index)")
    if args.shard and not args.img_dir:
        raise InsightFaceError("--shard needs --img_dir (the gallery to split)")
    with folder_for_output(out.parent, "--build_index"):
        check_build_inputs(args)
        app = None if args.merge else make_app(args, det=args.detect_gallery, rec=True)
        # one writer at a time from reading the old index to renaming the new one into place
        with exclusive_lock(out):
            index = edited_index(args, app)
            index.save(out, mode=args.index_mode, with_ann=True if args.approximate else None)
    print(f"wrote {out}: {len(index)} entries, {len(index.identities)} identities, "
          f"model {index.model.describe()}", file=sys.stderr)
    return 0


def check_build_inputs(args: argparse.Namespace) -> None:
    """Everything --build_index reads that needs no model, checked before one loads."""
    base = FaceIndex.load(args.index) if args.index else None
    unknown = [name for name in args.remove if base is not None and name not in base.identities]
    if unknown:
        raise InsightFaceError(f"--remove: {', '.join(map(repr, unknown))} not in {args.index}")
    if args.legacy_index:
        load_legacy_index(args.legacy_index)
    if args.img_dir:
        scan_gallery(args.img_dir, args.label)


def edited_index(args: argparse.Namespace, app: InsightFace | None) -> FaceIndex:
    """The index --build_index writes: merged, imported or --index, edited."""
    if args.merge:
        return merge_files(args.merge)
    assert app is not None and app.embedder is not None
    base = FaceIndex.load(args.index) if args.index else None  # again: under the lock
    if args.legacy_index:
        index = FaceIndex.from_legacy(args.legacy_index, app.embedder.signature)
        logging.warning("the old tool embedded its gallery photos as BGR while faces are now "
                        "embedded as RGB: matches will be weaker than with an index rebuilt "
                        "from the gallery (--img_dir)")
    elif base is not None:
        index = base
        index.check_model(app.embedder.signature)
    else:
        index = None
    for name in args.remove:
        assert index is not None
        print(f"removed {index.remove(name)} entries of {name!r}", file=sys.stderr)
    if args.img_dir:
        index = app.build_index(args.img_dir, args.label, args.detect_gallery, base=index,
                                shard=args.shard)
    assert index is not None
    return index


def predict(app: InsightFace, source: InputSource, output: OutputFolder | None,
            args: argparse.Namespace) -> int:
    """Report every input that could be done, even when a later one stops the run."""
    report = RunReport()

    def on_failure(item: Unreadable) -> None:
        print(f"error: {item.message}", file=sys.stderr, flush=True)

    try:
        predict_source(app, source, report, output, on_failure)
    finally:
        if args.json:
            print(results_json(report))
        elif report.results:
            print(results_table(report))
        if output is not None and output.wrote_any:
            print(f"drawn results in {output.folder}", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
