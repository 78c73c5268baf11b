"""Shared reading of `lfw_raw/`: the LFW `pairs.txt` layout and the five-point landmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_pairs(root: Path) -> tuple[list[tuple[str, str]], np.ndarray]:
    """-> ([(photo_a, photo_b)] relative to images/, issame [N]) in file order."""
    lines = (root / "pairs.txt").read_text().splitlines()[1:]
    pairs, same = [], []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3:
            name, a, b = parts
            pairs.append((_photo(name, a), _photo(name, b)))
            same.append(True)
        elif len(parts) == 4:
            pairs.append((_photo(parts[0], parts[1]), _photo(parts[2], parts[3])))
            same.append(False)
    return pairs, np.asarray(same)


def _photo(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_landmarks(root: Path) -> dict[str, np.ndarray]:
    """photo -> [5, 2] (left eye, right eye, nose, left and right mouth corner)."""
    out = {}
    for line in (root / "landmarks.txt").read_text().splitlines():
        name, *coords = line.split()
        out[name] = np.asarray(coords, np.float32).reshape(5, 2)
    return out
