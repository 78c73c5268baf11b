"""`insightfacepaddle`: detect and recognise faces, or build an index, from the command line.

Only argument parsing and output live here; the work is done by `api.InsightFace`. Any problem a
user can cause is reported as one line on stderr with exit status 1 (argparse's usage errors: 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
from prettytable import PrettyTable
from tqdm import tqdm

from .api import REC_THRESH, Face, InsightFace
from .draw import draw_faces
from .errors import InsightFaceError
from .fileio import atomic_open, atomic_path, exclusive_lock
from .index import FaceIndex, merge_files
from .media import InputSource


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        return run(args)
    except InsightFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied, ... while writing results
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
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
    source = InputSource(args.input)
    if args.output:
        check_output_folder(Path(args.output), source)
    app = make_app(args, det=args.det, rec=args.rec, index=index)
    return predict(app, source, args)


def make_app(args: argparse.Namespace, det: bool, rec: bool,
             index: FaceIndex | None = None) -> InsightFace:
    return InsightFace(
        det_model=args.det_model if det else None, rec_model=args.rec_model if rec else None,
        index=index, det_thresh=args.det_thresh, rec_thresh=args.rec_thresh,
        cdd_num=args.cdd_num, max_batch_size=args.max_batch_size,
        det_max_side=args.det_max_side, approximate_search=args.approximate, use_gpu=args.use_gpu,
        cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn)


def build_index(args: argparse.Namespace) -> int:
    out = Path(args.build_index)
    if out.suffix != ".npz":
        raise InsightFaceError(f"--build_index {out}: index files end in .npz")
    if not (args.img_dir or args.remove or args.legacy_index or args.merge):
        raise InsightFaceError("--build_index needs --img_dir, --remove, --legacy_index or "
                               "--merge")
    if args.remove and not args.index:
        raise InsightFaceError("--remove needs --index (the index to remove from)")
    if args.merge and (args.img_dir or args.legacy_index or args.index):
        raise InsightFaceError("--merge takes only the indexes to merge (no --img_dir, "
                               "--legacy_index or --index)")
    if args.shard and not args.img_dir:
        raise InsightFaceError("--shard needs --img_dir (the gallery to split)")
    check_writable(out)
    app = None if args.merge else make_app(args, det=args.detect_gallery, rec=True)
    # one writer at a time from reading the old index to renaming the new one into place
    with exclusive_lock(out):
        index = edited_index(args, app)
        index.save(out, mode=args.index_mode, with_ann=True if args.approximate else None)
    print(f"wrote {out}: {len(index)} entries, {len(index.identities)} identities, "
          f"model {index.model.describe()}", file=sys.stderr)
    return 0


def edited_index(args: argparse.Namespace, app: InsightFace | None) -> FaceIndex:
    """The index --build_index writes: merged, imported or --index, edited."""
    if args.merge:
        return merge_files(args.merge)
    assert app is not None and app.embedder is not None
    if args.legacy_index:
        index = FaceIndex.from_legacy(args.legacy_index, app.embedder.signature)
        logging.warning("the old tool embedded its gallery photos as BGR while faces are now "
                        "embedded as RGB: matches will be weaker than with an index rebuilt "
                        "from the gallery (--img_dir)")
    elif args.index:
        index = FaceIndex.load(args.index)
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


def check_output_folder(output: Path, source: InputSource) -> None:
    """Refuse an --output that is a file or would overwrite the inputs with drawings."""
    if output.exists() and not output.is_dir():
        raise InsightFaceError(f"--output {output}: exists and is not a folder")
    inputs = source.path if source.kind == "folder" else source.path.parent
    if output.resolve() == inputs.resolve():
        raise InsightFaceError(f"--output {output}: is where the inputs are; the drawings would "
                               "replace them")
    check_writable(output / "probe")


def check_writable(path: Path) -> None:
    """Fail before hours of work if `path`'s folder cannot be created or written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InsightFaceError(f"{path.parent}: cannot create folder ({exc.strerror})") from None
    if not os.access(path.parent, os.W_OK):
        raise InsightFaceError(f"{path.parent}: not writable")


def predict(app: InsightFace, source: InputSource, args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    identities = app.index.identities if app.index is not None else []
    results: list[tuple[str, list[Face]]] = []
    unit = "frame" if source.kind == "video" else "image"
    frames = tqdm(iter(source), total=len(source), desc="predict", unit=unit, file=sys.stderr,
                  disable=len(source) < 2)
    if output is not None and source.kind == "video":
        pairs = write_video(app.predict_frames(frames), source, output, identities)
    else:
        pairs = app.predict_frames(frames)
    for frame, faces in pairs:
        if output is not None and source.kind != "video":
            write_image(output / frame.name, draw_faces(frame.rgb, faces, identities))
        results.append((frame.name, faces))
    if args.json:
        payload = {"results": [{"file": name, "faces": [f.to_dict() for f in faces]}
                               for name, faces in results]}
        print(json.dumps(payload, indent=2))
    else:
        print(results_table(results))
    if output is not None:
        print(f"drawn results in {output}", file=sys.stderr)
    return 0


def results_table(results: list[tuple[str, list[Face]]]) -> PrettyTable:
    table = PrettyTable(["file", "face", "box (x1, y1, x2, y2)", "det score", "label",
                         "similarity"])
    for name, faces in results:
        if not faces:
            table.add_row([name, "-", "no face", "", "", ""])
        for number, face in enumerate(faces, start=1):
            box = ", ".join(f"{v:.0f}" for v in face.box)
            similarity = "" if face.similarity is None else f"{face.similarity:.3f}"
            table.add_row([name, number, box, f"{face.score:.3f}", face.label or "", similarity])
    table.align = "l"
    return table


def write_image(path: Path, rgb) -> None:
    suffix = path.suffix if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png"
    ok, data = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InsightFaceError(f"{path}: cannot encode the drawn image")
    with atomic_open(path.with_suffix(suffix), "wb") as handle:
        handle.write(data.tobytes())


def write_video(pairs, source: InputSource, output: Path, identities: list[str]):
    """Pass (frame, faces) through while drawing them into `output/<video name>` atomically."""
    target = output / source.path.with_suffix(".mp4").name
    writer = None
    with atomic_path(target) as tmp:
        try:
            for frame, faces in pairs:
                if writer is None:
                    height, width = frame.rgb.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"),
                                             source.fps, (width, height))
                    if not writer.isOpened():
                        raise InsightFaceError(f"{target}: cannot write video")
                writer.write(cv2.cvtColor(draw_faces(frame.rgb, faces, identities),
                                          cv2.COLOR_RGB2BGR))
                yield frame, faces
        finally:
            if writer is not None:
                writer.release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
