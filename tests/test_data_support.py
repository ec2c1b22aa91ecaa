"""Helpers for the data tests (no tests here): a loopback file server, an isolated cache, the CLI.

Kept in a test_data_* module rather than conftest.py so the data branch merges without
touching shared files; the data test modules import what they use.
"""

from __future__ import annotations

import http.server
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cnnlab.data.paths import SYSTEM_ROOT

IN_CI = os.environ.get("CI", "").lower() == "true"
FASHION_DIR = SYSTEM_ROOT / "fashion-mnist"
FASHION_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def require_fashion_mnist() -> Path:
    """The Debian Fashion-MNIST folder; skip when absent, but fail under CI=true."""
    if all((FASHION_DIR / f).is_file() for f in FASHION_FILES):
        return FASHION_DIR
    how = "apt-get install dataset-fashion-mnist"
    if IN_CI:
        pytest.fail(f"Fashion-MNIST files are missing under {FASHION_DIR} in CI: {how}")
    pytest.skip(f"Fashion-MNIST is not installed under {FASHION_DIR} ({how})")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A fresh user cache (XDG_CACHE_HOME) and no CNNLAB_DATA, so tests see only what they make."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    return cache / "cnnlab"


@dataclass
class FileServer:
    """Serves `files` on loopback with HTTP Range support; `cut[path] = n` drops the first reply after n bytes."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


def _handler(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start, status = 0, 200
            spec = self.headers.get("Range")
            if spec and spec.startswith("bytes=") and spec.endswith("-"):
                start = int(spec[6:-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            part = body[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(part)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            limit = state.cut.pop(self.path, None)
            if limit is not None:  # promise everything, send some, hang up
                self.wfile.write(part[:limit])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(part)

    return Handler


@pytest.fixture
def file_server():
    """A real HTTP server on 127.0.0.1 (random port) in a thread, serving FileServer.files."""
    state = FileServer()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
