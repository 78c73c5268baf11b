"""A local HTTP server for the download tests: no network needed, and it records each request so
a test can tell a cache hit from a download."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator


class LocalServer(http.server.ThreadingHTTPServer):
    """Serves `files[path] = bytes` (paths without the leading slash); 404 for the rest."""

    files: dict[str, bytes]
    requests: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: LocalServer

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        self.server.requests.append(path)
        data = self.server.files.get(path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve() -> Iterator[LocalServer]:
    """A running server on a free port of 127.0.0.1, shut down (thread joined) on exit."""
    httpd = LocalServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
