"""`tools/validation.py`: score a checkpoint or an exported model on verification sets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insightface_paddle.predictor import PredictorOptions

from ..data.verification_bin import VerificationSet, load_verification_bin
from ..errors import ArcFaceError
from .bin_eval import Embedder, SetReport, evaluate_sets
from .engines import checkpoint_embedder, model_embedder
from .report import check_report_paths, plot_roc, report_table, reports_json, write_json

#: the insightface verification sets, found as <data_dir>/<name>.bin
KNOWN_TARGETS = ("lfw", "cfp_fp", "cfp_ff", "agedb_30", "calfw", "cplfw", "vgg2_fp")


def resolve_target(target: str, data_dir: str | os.PathLike[str] | None) -> Path:
    """A set name (`lfw`, ... or any NAME with NAME.bin in `data_dir`) or a path -> its file."""
    as_path = Path(target)
    if as_path.suffix == ".bin" or os.sep in target:
        if not as_path.is_file():
            why = "is a folder, expected a .bin file" if as_path.is_dir() else "no such file"
            raise ArcFaceError(f"--val_targets {target}: {why}")
        return as_path
    if data_dir is None:
        raise ArcFaceError(f"--val_targets {target}: give --data_dir, the folder holding "
                           f"{target}.bin")
    folder = Path(data_dir)
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "no such folder"
        raise ArcFaceError(f"--data_dir {folder}: {why}")
    path = folder / f"{target}.bin"
    if not path.is_file():
        present = sorted(p.stem for p in folder.glob("*.bin"))
        raise ArcFaceError(f"--val_targets {target}: {path} not found (sets in {folder}: "
                           f"{', '.join(present) or 'none'})")
    return path


def load_targets(targets: Sequence[str], data_dir: str | os.PathLike[str] | None
                 ) -> list[VerificationSet]:
    if not targets:
        raise ArcFaceError("--val_targets: name at least one set")
    paths = [resolve_target(t, data_dir) for t in targets]  # all checked before any is read
    return [load_verification_bin(p) for p in paths]


@dataclass(frozen=True)
class ValidationRun:
    reports: list[SetReport]
    model: dict[str, Any]

    def table(self) -> str:
        return report_table(self.reports)


def build_embedder(model_dir: str | None, checkpoint_dir: str | None, backbone: str | None,
                   embedding_size: int | None, engine: str, options: PredictorOptions
                   ) -> tuple[Embedder, dict[str, Any]]:
    if bool(model_dir) == bool(checkpoint_dir):
        raise ArcFaceError("give exactly one of --checkpoint_dir (a training checkpoint) and "
                           "--model_dir (an exported model folder or .onnx file)")
    if model_dir:
        embedder = model_embedder(model_dir, options)
        return embedder, {"model_dir": str(model_dir), "name": embedder.signature.name,
                          "embedding_size": embedder.signature.embedding_size,
                          "weights_sha256": embedder.signature.fingerprint}
    embedder = checkpoint_embedder(checkpoint_dir, backbone, embedding_size, engine, options)
    return embedder, {"checkpoint_dir": str(checkpoint_dir), "engine": engine}


def run_validation(targets: Sequence[str], data_dir: str | None = None,
                   model_dir: str | None = None, checkpoint_dir: str | None = None,
                   backbone: str | None = None, embedding_size: int | None = None,
                   batch_size: int = 64, engine: str = "inference", flip: bool = True,
                   json_path: str | None = None, plot_dir: str | None = None,
                   options: PredictorOptions | None = None) -> ValidationRun:
    """Load the sets (all of them checked first), the model, score, write JSON/plots; the
    JSON and plot paths are checked before anything is read."""
    if batch_size < 1:
        raise ArcFaceError(f"--batch_size must be positive, got {batch_size}")
    check_report_paths(json_path, plot_dir)
    sets = load_targets(targets, data_dir)
    embedder, model = build_embedder(model_dir, checkpoint_dir, backbone, embedding_size,
                                     engine, options or PredictorOptions())
    reports = evaluate_sets(embedder, sets, batch_size, flip)
    if json_path:
        write_json(json_path, reports_json(reports, model))
    if plot_dir:
        plot_roc(reports, plot_dir)
    return ValidationRun(reports, model)
