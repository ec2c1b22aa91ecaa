"""Shared by the predict/export/server/page tests: one small trained run per session, a real server.

`trained_run` trains a model once per session (per model and settings) and hands each
caller its own copy of the run folder, so tests that write exports into it stay apart.
`ServerProcess` starts `cnnlab serve RUN --port 0` as a real subprocess on loopback.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import cnnlab

# Adam, because one epoch of SGD on 1200 images can leave the default model at chance level,
# and a model that predicts one class for everything would make accuracy comparisons vacuous.
SMALL_RUN = dict(
    data="shapes", train_size=1200, test_size=400, epochs=1, batch_size=64, optimizer="adam"
)
_TRAINED: dict[tuple, Path] = {}


def trained_run(
    tmp_path_factory, model: str = "default", copy_to: Path | None = None, **settings
) -> Path:
    """A fresh copy of a run folder trained once per session for (model, settings)."""
    options = {**SMALL_RUN, **settings}
    key = (model, tuple(sorted(options.items())))
    if key not in _TRAINED:
        out = tmp_path_factory.mktemp("trained") / "run"
        cnnlab.train(model=model, quiet=True, out=str(out), **options)
        _TRAINED[key] = out
    target = copy_to or tmp_path_factory.mktemp("run") / "run"
    shutil.copytree(_TRAINED[key], target)
    return target


def png_bytes(array: np.ndarray, mode: str | None = None, **save) -> bytes:
    """A uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def image_bytes(image: Image.Image, fmt: str, **save) -> bytes:
    """A Pillow image encoded in `fmt`."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def decode_png_data_url(data_url: str) -> np.ndarray:
    """The pixels of a data:image/png;base64 URL, as the page would show them."""
    assert data_url.startswith("data:image/png;base64,"), data_url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


class ServerProcess:
    """`python -m cnnlab serve RUN --port 0 ...` in a subprocess; its URL read from its first line."""

    def __init__(self, run: Path, log: Path, *extra: str):
        self.log_path = log
        self.log = open(log, "w")  # noqa: SIM115 (a file, not a pipe: a full pipe would block the server)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "serve", str(run), "--port", "0", *extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text()
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", text)  # in any language
            if found:
                url = found.group(1)
                if self._healthy(url):
                    return url
            if self.process.poll() is not None:
                raise RuntimeError(f"cnnlab serve exited with {self.process.returncode}:\n{text}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"cnnlab serve did not start in {timeout:.0f}s:\n{self.log_path.read_text()}"
        )

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
