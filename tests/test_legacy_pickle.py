"""The restricted unpickler: reads the old files, refuses anything that would run code."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from insightface_paddle.errors import InsightFaceError
from insightface_paddle.legacy import (
    BYTES_GLOBALS,
    NUMPY_GLOBALS,
    load_legacy_index,
    restricted_loads,
)


class _RunsCode:
    """Unpickling this calls os.system: the classic pickle exploit."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"label": ["a"], "feature": [_RunsCode(str(marker))]})
    with pytest.raises(InsightFaceError, match=r"refused.*(posix|os)\.system"):
        restricted_loads(payload, NUMPY_GLOBALS, "evil.bin")
    assert not marker.exists()
    pickle.loads(payload)  # the same bytes do run code through plain pickle
    assert marker.exists()


def test_codec_other_than_latin1_is_refused():
    payload = pickle.dumps([b"\x00\xff"], protocol=2)
    assert restricted_loads(payload, BYTES_GLOBALS) == [b"\x00\xff"]
    tampered = payload.replace(b"latin1", b"rot_13")
    with pytest.raises(InsightFaceError, match="codec"):
        restricted_loads(tampered, BYTES_GLOBALS)


def test_truncated_pickle_names_the_source():
    payload = pickle.dumps([b"abc"] * 10, protocol=2)
    with pytest.raises(InsightFaceError, match=r"broken\.bin: not a readable pickle"):
        restricted_loads(payload[: len(payload) // 2], BYTES_GLOBALS, "broken.bin")


def test_legacy_index_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(3)]
    path = tmp_path / "index.bin"
    path.write_bytes(pickle.dumps({"label": ["x", "y", "x"], "feature": feats}))
    labels, matrix = load_legacy_index(path)
    assert labels == ["x", "y", "x"]
    np.testing.assert_array_equal(matrix, np.concatenate(feats))


@pytest.mark.parametrize(
    "obj, why",
    [
        ([1, 2], "expected dict"),
        ({"label": ["a"], "feature": []}, "1 labels but 0 features"),
        ({"label": [3], "feature": [np.zeros((1, 4), np.float32)]}, "labels must be strings"),
        ({"label": ["a"], "feature": [np.zeros((1, 4), np.int64)]}, "float arrays"),
        ({"label": ["a"], "other": []}, "keys"),
        ({"label": [], "feature": []}, "holds no entries"),
    ],
)
def test_legacy_index_rejects_other_structures(tmp_path, obj, why):
    path = tmp_path / "index.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(InsightFaceError, match=why):
        load_legacy_index(path)


def test_real_old_index_loads(shared):
    labels, matrix = load_legacy_index(shared("demo/friends/index.bin"))
    assert len(labels) == 245 and matrix.shape == (245, 128)
    assert set(labels) == {"Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross"}
