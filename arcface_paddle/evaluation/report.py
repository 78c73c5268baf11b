"""Verification reports as a table, as JSON and as ROC curve images."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prettytable import PrettyTable

from insightface_paddle.fileio import atomic_open

from ..errors import ArcFaceError, require_output_file, require_output_folder
from .bin_eval import SetReport
from .verification import FARS, roc_curve

REPORT_FORMAT = "arcface_paddle.validation"
REPORT_FORMAT_VERSION = 1


def report_table(reports: Sequence[SetReport]) -> str:
    table = PrettyTable(["set", "pairs", "accuracy", "std", "threshold (dist)",
                         "threshold (cos)", *[f"TAR@FAR={far:g}" for far in FARS], "AUC",
                         "XNorm"])
    for r in reports:
        res = r.result
        table.add_row([r.name, r.pairs, f"{res.accuracy:.5f}", f"{res.accuracy_std:.5f}",
                       f"{res.distance_threshold:.2f}", f"{res.cosine_threshold:.3f}",
                       *[f"{tar:.5f}" for _, tar in res.tar_at_far], f"{res.auc:.5f}",
                       f"{r.xnorm:.3f}"])
    return table.get_string()


def reports_json(reports: Sequence[SetReport], model: dict[str, Any]) -> dict[str, Any]:
    return {"format": REPORT_FORMAT, "format_version": REPORT_FORMAT_VERSION, "model": model,
            "sets": {r.name: r.as_dict() for r in reports}}


def write_json(path: str | os.PathLike[str], document: dict[str, Any]) -> None:
    try:
        with atomic_open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
    except OSError as exc:
        raise ArcFaceError(f"--json {path}: cannot write ({exc.strerror})") from None


def check_report_paths(json_path: str | os.PathLike[str] | None,
                       plot_dir: str | os.PathLike[str] | None) -> None:
    """Refuse a `--json` file or `--plot` folder that cannot be written (or plots without
    matplotlib) before any set is read or model loaded, not after the evaluation."""
    if json_path:
        require_output_file(json_path, "--json")
    if plot_dir:
        require_output_folder(plot_dir, "--plot")
        _pyplot()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ArcFaceError("--plot needs matplotlib (pip install matplotlib==3.11.2)") from None
    return plt


def plot_roc(reports: Sequence[SetReport], folder: str | os.PathLike[str]) -> list[Path]:
    """One `roc_<set>.png` per set in `folder` (FAR on a log axis) -> the files written."""
    plt = _pyplot()
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArcFaceError(f"--plot {folder}: cannot create ({exc.strerror})") from None
    written = []
    for r in reports:
        fpr, tpr = roc_curve(r.cosine, r.issame)
        figure, axis = plt.subplots(figsize=(5, 4), dpi=100)
        keep = fpr > 0
        axis.plot(fpr[keep], tpr[keep], label=f"{r.name} (AUC {r.result.auc:.4f})")
        axis.set_xscale("log")
        axis.set_xlabel("false accept rate")
        axis.set_ylabel("true accept rate")
        axis.set_title(f"{r.name}: accuracy {r.accuracy:.4f}, {r.pairs} pairs")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(loc="lower right")
        target = folder / f"roc_{r.name}.png"
        with atomic_open(target, "wb") as handle:
            figure.savefig(handle, format="png", bbox_inches="tight")
        plt.close(figure)
        written.append(target)
    return written
