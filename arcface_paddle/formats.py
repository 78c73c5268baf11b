"""Versioned JSON metadata of the training library's on-disk formats (checkpoints, packed
folders): one reader, so each refuses files of another kind or version the same way."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import ArcFaceError


def read_format_meta(path: str | os.PathLike[str], format_name: str, version: int,
                     missing: str) -> dict[str, Any]:
    """The JSON object at `path`, checked to be `format_name` at `version`; `missing` says what
    an absent file means for this format."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArcFaceError(f"{path}: missing; {missing}") from None
    except (OSError, ValueError) as exc:
        raise ArcFaceError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name:
        raise ArcFaceError(f"{path}: not an {format_name} file")
    if meta.get("format_version") != version:
        raise ArcFaceError(f"{path}: format_version {meta.get('format_version')!r}; this "
                           f"version reads {version}")
    return meta
