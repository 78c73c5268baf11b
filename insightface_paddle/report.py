"""What the CLI prints on stdout: a table or JSON of the faces of each input, read left to right.

The detector returns faces best score first; a person reading the table against the photo looks
for face 1 on the left, so reports list faces by their box's left edge (top edge on ties).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prettytable import PrettyTable

from .media import Unreadable

if TYPE_CHECKING:
    from .api import Face


@dataclass
class RunReport:
    """The faces of each input done, and the inputs that failed, in input order."""

    results: list[tuple[str, list[Face]]] = field(default_factory=list)
    failures: list[Unreadable] = field(default_factory=list)


def reading_order(faces: Sequence[Face]) -> list[Face]:
    return sorted(faces, key=lambda face: (face.box[0], face.box[1]))


def results_table(report: RunReport) -> PrettyTable:
    table = PrettyTable(["file", "face", "box (x1, y1, x2, y2)", "det score", "label",
                         "similarity"])
    for name, faces in report.results:
        if not faces:
            table.add_row([name, "-", "no face", "", "", ""])
        for number, face in enumerate(reading_order(faces), start=1):
            box = ", ".join(f"{v:.0f}" for v in face.box)
            similarity = "" if face.similarity is None else f"{face.similarity:.3f}"
            table.add_row([name, number, box, f"{face.score:.3f}", face.label or "", similarity])
    table.align = "l"
    return table


def results_json(report: RunReport) -> str:
    payload = {
        "results": [{"file": name, "faces": [f.to_dict() for f in reading_order(faces)]}
                    for name, faces in report.results],
        "failed": [{"file": item.name, "error": item.message} for item in report.failures],
    }
    return json.dumps(payload, indent=2)
