"""The model zoo: verified cache hits, atomic verified downloads, clear failures."""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
from pathlib import Path

import pytest

from insightface_paddle import zoo
from insightface_paddle.errors import InsightFaceError
from insightface_paddle.fileio import sha256_file
from local_server import serve


def _tar_of(folder: Path, archive: str, tamper: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            data = path.read_bytes()
            if path.name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(f"{archive}/{path.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server():
    """A local HTTP server: `server.files[name] = bytes`; `server.url` is the URL template."""
    with serve() as httpd:
        httpd.url = f"{httpd.base}{{}}.tar"
        yield httpd


def test_cache_hit_is_verified(model_home, tmp_path, monkeypatch):
    assert zoo.resolve("MobileFace") == model_home / "mobileface_v1.0_infer"
    copy = tmp_path / "mobileface_v1.0_infer"
    shutil.copytree(model_home / "mobileface_v1.0_infer", copy)
    params = copy / "inference.pdiparams"
    params.chmod(0o644)
    params.write_bytes(params.read_bytes()[:-10])  # corrupt the cached copy
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, "http://127.0.0.1:9/{}.tar")  # nothing listens there
    with pytest.raises(InsightFaceError, match="cannot download MobileFace"):
        zoo.resolve("MobileFace")


def test_download_extracts_and_verifies(server, shared, tmp_path, monkeypatch):
    source = shared("models/blazeface_fpn_ssh_1000e_v1.0_infer")
    server.files["blazeface_fpn_ssh_1000e_v1.0_infer.tar"] = _tar_of(
        source, "blazeface_fpn_ssh_1000e_v1.0_infer")
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, server.url)
    folder = zoo.resolve("BlazeFace", "detection")
    assert folder == tmp_path / "blazeface_fpn_ssh_1000e_v1.0_infer"
    for name in ("inference.pdmodel", "inference.pdiparams", "infer_cfg.yml"):
        assert (folder / name).read_bytes() == (source / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no staging left
    server.files.clear()  # a second call is a verified cache hit: no request
    assert zoo.resolve("BlazeFace") == folder


def test_tampered_download_is_rejected_and_not_cached(server, shared, tmp_path, monkeypatch):
    source = shared("models/mobileface_v1.0_infer")
    server.files["mobileface_v1.0_infer.tar"] = _tar_of(
        source, "mobileface_v1.0_infer", tamper="inference.pdiparams")
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, server.url)
    with pytest.raises(InsightFaceError, match="does not match its sha256"):
        zoo.resolve("MobileFace")
    assert list(tmp_path.iterdir()) == []


def test_unpublished_sums_are_pinned_on_first_download(server, shared, tmp_path, monkeypatch):
    source = shared("models/mobileface_v1.0_infer")  # stands in for the ArcFace archive
    server.files["arcface_iresnet50_v1.0_infer.tar"] = _tar_of(
        source, "arcface_iresnet50_v1.0_infer")
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, server.url)
    folder = zoo.resolve("ArcFace")
    sums = (folder / zoo.SUMS_FILE).read_text()
    assert sha256_file(source / "inference.pdiparams") in sums
    with open(folder / "inference.pdiparams", "r+b") as handle:
        handle.write(b"\xff\xff\xff\xff")  # params files start with zero bytes
    server.files.clear()
    with pytest.raises(InsightFaceError, match="cannot download ArcFace"):
        zoo.resolve("ArcFace")  # the corrupt copy is not used; re-download fails (404)


def test_unknown_names_and_wrong_tasks():
    with pytest.raises(InsightFaceError, match="BlazeFace"):
        zoo.resolve("NoSuchNet", "detection")
    with pytest.raises(InsightFaceError, match="is a recognition model"):
        zoo.resolve("MobileFace", "detection")


def test_download_times_out(tmp_path, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, f"http://127.0.0.1:{port}/{{}}.tar")
    monkeypatch.setattr(zoo, "DOWNLOAD_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(InsightFaceError, match="timed out"):
            zoo.resolve("BlazeFace")
    finally:
        listener.close()
    assert list(tmp_path.iterdir()) == []


def test_a_finished_concurrent_download_is_reused(server, shared, tmp_path, monkeypatch):
    """Two processes fetching the same model on first use: the second keeps the first's copy."""
    source = shared("models/mobileface_v1.0_infer")
    server.files["mobileface_v1.0_infer.tar"] = _tar_of(source, "mobileface_v1.0_infer")
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.URL_ENV, server.url)
    first = zoo.download(zoo.ZOO["MobileFace"])
    marker = first / "kept"
    marker.write_text("the first process's copy")
    assert zoo.download(zoo.ZOO["MobileFace"]) == first and marker.exists()
