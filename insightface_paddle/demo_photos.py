"""The demo photos of `scripts/demo.sh`: the `demo/friends` folder of the old insight-face-paddle
project (a gallery of 6 people and 3 query photos), fetched from its public repository.

A local copy is used as it is: the folder `INSIGHTFACE_PADDLE_DEMO` names, else the first of the
caller's candidates that holds a demo. Otherwise the files come one by one from the repository
at a pinned commit, each checked against its sha256 in `demo_photos.sha256` and written
atomically (the model zoo's `fetch`), into `<model home>/demo/friends`; a complete cache is
reused without a request. `INSIGHTFACE_PADDLE_DEMO_URL` replaces the base URL (a mirror).

    python -m insightface_paddle.demo_photos [--local DIR ...]    # prints the demo folder
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from . import zoo
from .errors import InsightFaceError, describe_os_error
from .fileio import remove_temporaries, sha256_file
from .folders import make_folder, remove_empty

REPOSITORY = "littletomatodonkey/insight-face-paddle"
COMMIT = "1088e9781bf74ceea75a96f4fb0270b3b4950bd0"
DEFAULT_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/demo/friends/"
URL_ENV = "INSIGHTFACE_PADDLE_DEMO_URL"
DEMO_ENV = "INSIGHTFACE_PADDLE_DEMO"
MANIFEST = Path(__file__).with_name("demo_photos.sha256")
#: what a demo folder holds, for the messages
LAYOUT = "gallery/ with label.txt, query/"


def manifest() -> dict[str, str]:
    """Relative path (under demo/friends) -> sha256 of the published file."""
    sums = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            digest, path = line.split(maxsplit=1)
            sums[path] = digest
    return sums


def cache_folder() -> Path:
    """Where downloaded demo photos live: beside the models, so one variable moves both."""
    return zoo.model_home() / "demo" / "friends"


def stale_files(folder: Path) -> list[str]:
    """The files of the manifest that `folder` lacks or holds modified (relative paths)."""
    return [path for path, digest in manifest().items()
            if not (folder / path).is_file() or sha256_file(folder / path) != digest]


def local_copy_problem(folder: Path) -> str | None:
    """Why `folder` cannot serve as the demo (a user's copy may hold other photos: only the
    layout is checked), or None."""
    if not (folder / "gallery" / "label.txt").is_file():
        return f"{folder} has no gallery/label.txt (a demo folder holds {LAYOUT})"
    query = folder / "query"
    if not query.is_dir() or not any(p.is_file() for p in query.iterdir()):
        return f"{folder} has no photos in query/ (a demo folder holds {LAYOUT})"
    return None


def fetch_demo_photos(folder: Path | None = None) -> Path:
    """Complete the cached demo (default `cache_folder()`), downloading only what is missing or
    modified -> the folder. A failure keeps the verified files and leaves no empty folder."""
    folder = cache_folder() if folder is None else folder
    todo = stale_files(folder)
    if not todo:
        return folder
    base = os.environ.get(URL_ENV) or DEFAULT_URL
    base = base if base.endswith("/") else base + "/"
    try:
        created = make_folder(folder, "the demo photo cache")
    except InsightFaceError as exc:
        raise InsightFaceError(f"{exc}; set {zoo.HOME_ENV} to a writable folder or "
                               f"{DEMO_ENV} to a copy of the demo ({LAYOUT})") from None
    digests = manifest()
    try:
        for parent in {(folder / path).parent for path in todo}:
            remove_temporaries(parent)  # what a killed download left
        for path in todo:
            zoo.fetch(base + urllib.parse.quote(path), folder / path, f"the demo photo {path}",
                      f"Offline? Point {DEMO_ENV} at a copy of the demo ({LAYOUT})",
                      sha256=digests[path])
    finally:
        _remove_empty_below(folder)
        remove_empty(created)
    return folder


def _remove_empty_below(folder: Path) -> None:
    """Remove the empty folders under `folder` (deepest first), left by a failed download."""
    if folder.is_dir():
        for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()


def find_or_fetch(candidates: Sequence[Path] = ()) -> Path:
    """The demo folder: `$INSIGHTFACE_PADDLE_DEMO` (which must hold a demo), else the first
    candidate that holds one, else the cache, downloaded when incomplete."""
    named = os.environ.get(DEMO_ENV)
    if named:
        problem = local_copy_problem(Path(named).expanduser())
        if problem is not None:
            raise InsightFaceError(f"{DEMO_ENV}: {problem}")
        return Path(named).expanduser()
    for folder in candidates:
        if local_copy_problem(folder) is None:
            return folder
    return fetch_demo_photos()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m insightface_paddle.demo_photos",
        description="Print the demo photo folder, downloading the photos on first use.")
    parser.add_argument("--local", action="append", default=[], type=Path, metavar="DIR",
                        help="a folder to use when it holds the demo (repeatable, in order)")
    args = parser.parse_args(argv)
    try:
        print(find_or_fetch(args.local))
    except InsightFaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unreadable copy or cache: the machine's answer to a path
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
