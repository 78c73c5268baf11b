"""Where each friend's face is in the demo queries (a point inside the face, in image pixels),
read off the old tool's drawings in demo/friends/output (friends1: left to right Ross, Rachel,
Monica, Chandler, Phoebe, Joey)."""

FACE_POINTS = {
    "friends1.jpg": {"Ross": (200, 200), "Rachel": (342, 280), "Monica": (603, 262),
                     "Chandler": (833, 222), "Phoebe": (1088, 242), "Joey": (1311, 242)},
    "friends2.jpg": {"Joey": (560, 247), "Phoebe": (787, 200), "Ross": (1130, 188),
                     "Chandler": (1407, 332), "Monica": (895, 655), "Rachel": (1152, 600)},
}


def match_truth(file_name: str, boxes) -> dict[str, int]:
    """name -> index of the one box containing that friend's point (asserts it is unique)."""
    found = {}
    for name, (x, y) in FACE_POINTS[file_name].items():
        inside = [i for i, b in enumerate(boxes) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
        assert len(inside) == 1, f"{file_name}: {name} is in boxes {inside} of {len(boxes)}"
        found[name] = inside[0]
    return found
