"""Bad input against a real `cnnlab serve` process: every one a JSON 4xx, and the server stays healthy.

Then the images that must work: RGBA, palette, 16-bit, CMYK, EXIF-rotated JPEG, 1x1, and
a 4000x3000 photo (slow).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_support import (
    ServerProcess,
    decode_png_data_url,
    image_bytes,
    png_bytes,
    trained_run,
)

from cnnlab.server.limits import Limits

MAX_BODY_MB = 8
LIMIT = MAX_BODY_MB * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = trained_run(tmp_path_factory)
    srv = ServerProcess(run, run.parent / "serve.log", "--max-body-mb", str(MAX_BODY_MB))
    yield srv
    srv.stop()
    assert "Traceback" not in srv.output(), srv.output()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png_header() -> bytes:
    """A valid PNG signature and IHDR claiming 100000x100000 pixels, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _good_png() -> bytes:
    picture = np.zeros((28, 28), dtype=np.uint8)
    picture[6:22, 12:16] = 255
    return png_bytes(picture)


def _upload(name: str, data: bytes, mime: str = "image/png") -> dict:
    return {"files": {"file": (name, data, mime)}}


def _chunked_body():
    for _ in range(MAX_BODY_MB + 1):
        yield bytes(1024 * 1024)


BAD = {
    "truncated PNG": (_upload("cut.png", _good_png()[:50]), 400, "truncated or damaged PNG"),
    "random bytes named .png": (
        _upload("noise.png", np.random.default_rng(1).bytes(2048)),
        400,
        "not an image",
    ),
    "100000x100000 PNG header": (
        _upload("huge.png", _huge_png_header()),
        400,
        "50,000,000 pixels",
    ),
    "TIFF named .png": (
        _upload("scan.png", image_bytes(Image.new("L", (16, 16)), "TIFF")),
        400,
        "a TIFF file",
    ),
    "EPS named .png": (
        _upload("figure.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        400,
        "PostScript/EPS",
    ),
    "empty upload": (_upload("empty.png", b""), 400, "empty"),
    "empty raw body": ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
    "over the limit with Content-Length": (
        {"content": bytes(LIMIT + 1), "headers": {"content-type": "image/png"}},
        413,
        "over the limit",
    ),
    "over the limit, chunked": (
        {"content": _chunked_body, "headers": {"content-type": "image/png"}},
        413,
        "over the limit",
    ),
    "wrong content type": (
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
        415,
        "is not accepted",
    ),
    "no content type": ({"content": b"hello"}, 415, "is not accepted"),
    "huge JSON": (
        {
            "content": json.dumps({"pixels": [[0] * 3000] * 1500}).encode(),
            "headers": {"content-type": "application/json"},
        },
        413,
        "over the limit",
    ),
    "deeply nested JSON": (
        {
            "content": b'{"pixels": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
            "headers": {"content-type": "application/json"},
        },
        None,  # 400 (the parser gives up) or 422 (the shape is wrong): a 4xx either way
        "",
    ),
    "JSON pixels of the wrong shape": (
        {"json": {"pixels": [[[0] * 28] * 28] * 2}},
        422,
        "send HxW",
    ),
    "JSON pixels ragged": ({"json": {"pixels": [[0, 1, 2], [3]]}}, 422, "rectangular"),
    "JSON pixels out of range": ({"json": {"pixels": [[0, 256]]}}, 422, "from 0 to 255"),
    "JSON without pixels": ({"json": {"image": [[0]]}}, 422, '"pixels"'),
    "invalid JSON": (
        {"content": b"{pixels: nope", "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    "JSON nested too deeply": (
        {
            "content": b"[" * 100_000 + b"]" * 100_000,
            "headers": {"content-type": "application/json"},
        },
        400,
        "nested too deeply",
    ),
    "multipart without a file field": (
        {"data": {"note": "hi"}, "files": {"other": ("a.txt", b"x")}},
        422,
        "'file'",
    ),
    "multipart without a boundary": (
        {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        400,
        "multipart",
    ),
    "bad query value": (
        {"params": {"invert": "sideways"}, **_upload("ok.png", _good_png())},
        422,
        "invert",
    ),
}


@pytest.mark.parametrize("case", BAD.keys())
def test_bad_input_gets_a_json_4xx_and_the_server_stays_healthy(server, case):
    request, status, message = BAD[case]
    for path in ("/api/predict", "/api/featuremaps"):
        # a generator function gives a fresh generator per request: sent chunked
        kwargs = {k: v() if callable(v) else v for k, v in request.items()}
        answer = httpx.post(f"{server.url}{path}", timeout=60, **kwargs)
        assert answer.headers["content-type"] == "application/json", answer.text[:200]
        body = answer.json()
        assert 400 <= answer.status_code < 500, (answer.status_code, body)
        if status is not None:
            assert answer.status_code == status, body
        assert body["status"] == answer.status_code
        assert message in body["error"], body
        assert "Traceback" not in answer.text
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200


# --- images that must work ---------------------------------------------------------------------


def _stroke(mode_size: tuple[int, int] = (64, 64)) -> np.ndarray:
    picture = np.zeros(mode_size, dtype=np.uint8)
    picture[10:54, 28:36] = 255
    return picture


def _rgba() -> bytes:
    picture = _stroke()
    rgba = np.stack([picture, picture, picture, np.where(picture > 0, 255, 0).astype(np.uint8)], -1)
    return png_bytes(rgba, "RGBA")


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(_stroke(), "L").convert("P")
    return image_bytes(image, "PNG", transparency=0)


def _cmyk_jpeg() -> bytes:
    return image_bytes(
        Image.fromarray(np.stack([_stroke()] * 3, -1), "RGB").convert("CMYK"), "JPEG"
    )


def _exif_rotated_jpeg() -> bytes:
    """A 40x80 landscape picture, its left quarter white, tagged 'rotate to display' (EXIF 8)."""
    picture = np.zeros((40, 80), dtype=np.uint8)
    picture[:, :20] = 255
    image = Image.fromarray(picture, "L")
    exif = image.getexif()
    exif[0x0112] = 8  # displayed turned 90 degrees counter-clockwise: the left edge at the bottom
    return image_bytes(image, "JPEG", exif=exif, quality=95)


GOOD = {
    "RGBA": lambda: _rgba(),
    "palette with transparency": lambda: _palette_with_transparency(),
    "palette": lambda: image_bytes(Image.fromarray(_stroke(), "L").convert("P"), "PNG"),
    "16-bit": lambda: png_bytes(_stroke().astype(np.uint16) * 257),
    "CMYK JPEG": lambda: _cmyk_jpeg(),
    "EXIF-rotated JPEG": lambda: _exif_rotated_jpeg(),
    "1x1": lambda: png_bytes(np.full((1, 1), 255, np.uint8)),
    "gray+alpha": lambda: image_bytes(Image.fromarray(_stroke(), "L").convert("LA"), "PNG"),
    "GIF": lambda: image_bytes(Image.fromarray(_stroke(), "L"), "GIF"),
    "WebP": lambda: image_bytes(Image.fromarray(_stroke(), "L"), "WEBP"),
    "BMP": lambda: image_bytes(Image.fromarray(_stroke(), "L"), "BMP"),
}


@pytest.mark.parametrize("case", GOOD.keys())
def test_images_of_every_kind_work(server, case):
    data = GOOD[case]()
    answer = httpx.post(f"{server.url}/api/predict", **_upload(f"x.{case}", data), timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["input_shape"] == [1, 28, 28]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    maps = httpx.post(f"{server.url}/api/featuremaps", **_upload("x", data), timeout=60)
    assert maps.status_code == 200 and maps.json()["prediction"]["class"] == body["prediction"]


def test_transparency_lands_on_white_and_exif_rotation_is_applied(server):
    # RGBA/palette strokes on transparent ground: composited onto white, as training folders are
    maps = httpx.post(f"{server.url}/api/featuremaps", **_upload("x.png", _rgba())).json()
    seen = decode_png_data_url(maps["input"]["png"])
    assert seen.min() >= 200  # white stroke on white ground
    answer = httpx.post(f"{server.url}/api/featuremaps", **_upload("r.jpg", _exif_rotated_jpeg()))
    rotated = decode_png_data_url(answer.json()["input"]["png"]).astype(int)
    # as displayed, the white quarter is the bottom rows; unrotated it would be the left columns
    assert rotated[-6:].mean() > 200 and rotated[:6].mean() < 30
    assert rotated[:14, :6].mean() < 30


@pytest.mark.slow
def test_a_4000x3000_photo(server, tmp_path):
    y, x = np.mgrid[0:3000, 0:4000]
    rng = np.random.default_rng(0)
    photo = np.stack([(x // 16) % 256, (y // 12) % 256, ((x + y) // 28) % 256], -1).astype(np.uint8)
    photo[1000:2000, 1500:2500] = 255
    photo = np.clip(photo.astype(int) + rng.integers(-4, 5, photo.shape), 0, 255).astype(np.uint8)
    data = image_bytes(Image.fromarray(photo, "RGB"), "JPEG", quality=80)
    assert len(data) < LIMIT
    answer = httpx.post(
        f"{server.url}/api/predict", **_upload("photo.jpg", data, "image/jpeg"), timeout=120
    )
    assert answer.status_code == 200, answer.text
    centred = httpx.post(
        f"{server.url}/api/predict",
        params={"center": "true", "invert": "auto"},
        timeout=120,
        **_upload("photo.jpg", data, "image/jpeg"),
    )
    assert centred.status_code == 200, centred.text
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_server_log_has_no_traceback_so_far(server):
    assert "Traceback" not in server.output()
    assert Path(server.log_path).is_file()


# --- clients that go away, and abandoned work -------------------------------------------------


def _log_lines_after(server, start: int, needle: str) -> list[str]:
    """The server log's new lines once one contains `needle` (waits for the log to say it)."""
    deadline = time.monotonic() + 30
    while True:
        lines = server.output()[start:].splitlines()
        if any(needle in line.lower() for line in lines):
            return lines
        assert time.monotonic() < deadline, server.output()[start:][-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize(
    "content_type", ["image/png", "multipart/form-data; boundary=x", "application/json"]
)
def test_a_client_leaving_mid_upload_is_one_log_line(server, content_type):
    """Headers announcing 1000 bytes, 3 bytes, close: one line in the log, no traceback."""
    start = len(server.output())
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: "
            + content_type.encode()
            + b"\r\nContent-Length: 1000\r\n\r\n--x"
        )
    lines = _log_lines_after(server, start, "disconnect")
    assert "Traceback" not in server.output()
    assert lines == [lines[0]] and "3 of 1,000 body bytes" in lines[0], lines
    assert httpx.get(f"{server.url}/readyz").json()["uploading"] == 0


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


@pytest.mark.slow
def test_abandoned_decodes_stay_bounded_by_the_workers(tmp_path_factory):
    """Waves of 5000x5000 RGBA PNGs with a 0.3 s time limit: 504s, and no pile-up of threads."""
    run = trained_run(tmp_path_factory)
    srv = ServerProcess(run, run.parent / "serve.log", "--timeout", "0.3")
    workers = Limits().workers  # the server's worker threads
    try:
        upload = _upload("huge.png", png_bytes(np.full((5000, 5000, 4), 200, np.uint8), "RGBA"))
        before = _threads(srv.process.pid)

        def post(_: int) -> int:
            return httpx.post(f"{srv.url}/api/predict", timeout=120, **upload).status_code

        statuses, most = [], before
        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):  # waves of 8
                wave = [pool.submit(post, i) for i in range(8)]
                while not all(f.done() for f in wave):  # the most threads seen during the wave
                    most = max(most, _threads(srv.process.pid))
                    time.sleep(0.05)
                statuses += [f.result() for f in wave]
        assert set(statuses) <= {200, 504} and 504 in statuses, statuses
        # the worker pool's threads at most: no thread per abandoned decode
        assert most <= before + workers, (before, most, workers)
        assert httpx.get(f"{srv.url}/healthz").status_code == 200
    finally:
        srv.stop()
    assert "Traceback" not in srv.output(), srv.output()
