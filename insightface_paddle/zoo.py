"""Model zoo: published model names -> verified local folders, downloading on first use.

Cache: `$INSIGHTFACE_PADDLE_HOME/<archive>/` (default `~/.insightface_paddle`). Files are checked
against pinned sha256 sums; a model whose sums were never published (ArcFace) is pinned on first
download in `SHA256SUMS` beside it, which catches later corruption but not a tampered download.
Mirrors: `INSIGHTFACE_PADDLE_MODEL_URL` replaces the URL template (`{}` = archive name).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .errors import InsightFaceError
from .fileio import atomic_path, sha256_file
from .folders import make_folder, remove_empty

HOME_ENV = "INSIGHTFACE_PADDLE_HOME"
URL_ENV = "INSIGHTFACE_PADDLE_MODEL_URL"
DEFAULT_URL = "https://paddle-model-ecology.bj.bcebos.com/model/insight-face/{}.tar"
DOWNLOAD_TIMEOUT_S = 30.0
SUMS_FILE = "SHA256SUMS"


class DownloadError(InsightFaceError):
    """A download the network refused (offline, no such host, timed out). `what` is the message
    without the hint on where a local copy goes, for callers that give their own hint."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(f"{what}. {hint}" if hint else what)
        self.what = what


@dataclass(frozen=True)
class ZooModel:
    name: str
    archive: str
    task: str
    #: file name -> sha256 of the published file; empty when never published
    sha256: dict[str, str] = field(default_factory=dict)
    #: files that must exist besides the sums (the rest of the archive is optional)
    required: tuple[str, ...] = ("inference.pdmodel", "inference.pdiparams")
    #: the command that makes the folder, for models not downloaded but converted locally
    made_by: str = ""


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel(
            "BlazeFace",
            "blazeface_fpn_ssh_1000e_v1.0_infer",
            "detection",
            {
                "inference.pdmodel": (
                    "3d913ffefc77e20f671633cc04a0204d56fabf7249129864b3dd8024f79d7ea7"
                ),
                "inference.pdiparams": (
                    "d8f3fb8f72c6b96a7aee64ec298bf5a0e512134f1912cb3cb98a4ea9ef2dfd37"
                ),
            },
        ),
        ZooModel(
            "MobileFace",
            "mobileface_v1.0_infer",
            "recognition",
            {
                "inference.pdmodel": (
                    "11086ed73a8108021a677f0721fb1cc3796407abf22098905e327cba5830362b"
                ),
                "inference.pdiparams": (
                    "a7f078fd47776656b86cd03c3b9a9c69e6bc3f89c23335a8278632d9faa5e44a"
                ),
            },
        ),
        ZooModel("ArcFace", "arcface_iresnet50_v1.0_infer", "recognition"),
        ZooModel("BlazeFaceKeypoints", "blazeface_keypoints_mediapipe_0.10.14", "keypoints",
                 required=("inference.json", "inference.pdiparams", "model_meta.json"),
                 made_by="python tools/convert_mediapipe_face.py --output {folder}"),
    )
}


def model_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".insightface_paddle").expanduser()


def _pinned_sums(model: ZooModel, folder: Path) -> dict[str, str]:
    if model.sha256:
        return dict(model.sha256)
    sums_path = folder / SUMS_FILE
    if not sums_path.is_file():
        return {}
    pairs = (line.split() for line in sums_path.read_text().splitlines() if line.strip())
    return {name: digest for digest, name in pairs}


def _verify(model: ZooModel, folder: Path) -> str | None:
    """None when `folder` holds a complete, unmodified copy of `model`; else why not."""
    for name in model.required:
        if not (folder / name).is_file():
            return f"{folder / name} is missing"
    for name, expected in _pinned_sums(model, folder).items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        if sha256_file(path) != expected:
            return f"{path} does not match its sha256 (corrupt or modified)"
    return None


def resolve(name_or_dir: str | os.PathLike[str], task: str | None = None) -> Path:
    """A zoo name (`BlazeFace`, `MobileFace`, `ArcFace`, `BlazeFaceKeypoints`) or a model folder
    -> a folder to load.

    Zoo models are verified on every call and downloaded when absent (a converted model, which
    cannot be downloaded, says how to make it); folders are returned as they are (the predictor
    checks their files).
    """
    text = str(name_or_dir)
    model = ZOO.get(text)
    if model is None:
        folder = Path(text).expanduser()
        if folder.is_dir():
            return folder
        choices = ", ".join(n for n, m in ZOO.items() if task in (None, m.task))
        raise InsightFaceError(f"model {text!r} is neither a folder nor a zoo name ({choices})")
    if task is not None and model.task != task:
        raise InsightFaceError(f"{model.name} is a {model.task} model, not a {task} model")
    folder = model_home() / model.archive
    if folder.is_dir() and _verify(model, folder) is None:
        return folder
    if model.made_by:
        problem = _verify(model, folder) if folder.is_dir() else f"{folder} does not exist"
        raise InsightFaceError(f"{model.name}: {problem}; make it with "
                               f"`{model.made_by.format(folder=folder)}`")
    return download(model)


def download(model: ZooModel) -> Path:
    """Fetch, extract and verify `model` into the cache; the final folder appears atomically."""
    home = model_home()
    url = os.environ.get(URL_ENV, DEFAULT_URL).format(model.archive)
    try:
        created = make_folder(home, "the model cache")
    except InsightFaceError as exc:
        raise InsightFaceError(f"{exc}; set {HOME_ENV} to a writable folder") from None
    try:
        return _download_into(model, home, url)
    finally:
        remove_empty(created)  # a failed download leaves no empty cache folder behind


def _download_into(model: ZooModel, home: Path, url: str) -> Path:
    folder = home / model.archive
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{model.archive}.", dir=home))
    except OSError as exc:
        raise InsightFaceError(f"cannot write the model cache {home} ({exc.strerror}); "
                               f"set {HOME_ENV} to a writable folder") from None
    try:
        archive = staging / "archive.tar"
        fetch(url, archive, model.name,
              f"Offline? Put the extracted model folder at {model_home() / model.archive} "
              "or pass a local model folder")
        extracted = staging / model.archive
        _extract(archive, extracted, url)
        if not model.sha256:  # never published: pin what we got so later corruption shows
            lines = [f"{sha256_file(p)}  {p.name}" for p in sorted(extracted.iterdir())]
            (extracted / SUMS_FILE).write_text("\n".join(lines) + "\n")
        problem = _verify(model, extracted)
        if problem is not None:
            raise InsightFaceError(f"download of {model.name} from {url} is bad: "
                                   f"{problem.replace(str(extracted), model.archive)}")
        if folder.is_dir() and _verify(model, folder) is None:
            return folder  # another process finished the same download first
        try:
            if folder.exists():  # a stale or corrupt copy
                shutil.rmtree(folder)
            os.replace(extracted, folder)
        except OSError:
            if _verify(model, folder) is None:  # lost a race to another process
                return folder
            raise
        return folder
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(url: str, target: Path, name: str, hint: str, sha256: str | None = None) -> None:
    """Download `url` to `target` atomically: the file appears complete (and, with `sha256`,
    verified) or not at all. Errors are one InsightFaceError naming `name` and the URL; `hint`
    ends the message of a network failure (where a local copy goes)."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {name}", leave=False,
                disable=None,  # no bar when stderr is not a terminal
            ) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
            size = tmp.stat().st_size
            if total is not None and size != total:
                raise InsightFaceError(f"download of {name} from {url} stopped early "
                                       f"({size} of {total} bytes)")
            if sha256 is not None and sha256_file(tmp) != sha256:
                raise InsightFaceError(f"download of {name} from {url} does not match its "
                                       "sha256 (corrupt or modified); nothing was kept")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {name} from {url} ({reason})", hint) from None


def folder_problem(name: str, folder: Path) -> str | None:
    """None when `folder` holds a complete, unmodified copy of zoo model `name` (in the cache
    or kept outside it, such as one the demo converts); else why not. Downloads nothing."""
    return _verify(ZOO[name], folder) if folder.is_dir() else f"{folder} is missing"


def _extract(archive: Path, target: Path, url: str) -> None:
    """Extract the regular files of `archive` flat into `target` (no paths, no links)."""
    target.mkdir()
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = Path(member.name).name
                if name.startswith("."):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with contextlib.closing(source), open(target / name, "wb") as out:
                    shutil.copyfileobj(source, out)
    except tarfile.TarError as exc:
        raise InsightFaceError(f"{url} is not a readable tar archive ({exc})") from None
