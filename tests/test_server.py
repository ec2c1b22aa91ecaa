"""The server's API, in-process (uvicorn in a thread on a free loopback port): answers and limits.

The same image must get the same probabilities whether it arrives as multipart, raw bytes
or a JSON pixel array, and they must equal `cnnlab predict`'s (the same Predictor path).
Limits are exercised for real with raw sockets: a body that never finishes holds a request
in flight, which is how the 503 (too many in flight) and 504 (too slow) answers are reached.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from serve_support import decode_png_data_url, png_bytes, trained_run

from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError
from cnnlab.evaluate.featuremaps import feature_maps
from cnnlab.evaluate.grids import feature_map_grid
from cnnlab.evaluate.scores import split_images
from cnnlab.model.cnn import build_model
from cnnlab.run.folder import Run
from cnnlab.server.app import STATIC_DIR, create_app
from cnnlab.server.limits import Limits
from cnnlab.server.maps import MAX_VALUES, layer_grid
from cnnlab.server.serve import bind_socket
from cnnlab.spec.summary import summary_json


class ThreadServer:
    """uvicorn serving `app` in a background thread on a free loopback port."""

    def __init__(self, app):
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(run_dir) -> Predictor:
    return Predictor(Run.open(run_dir), "eager")


@pytest.fixture(scope="module")
def server(predictor):
    srv = ThreadServer(create_app(predictor))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sample(run_dir) -> tuple[np.ndarray, bytes]:
    """One test image as a (28, 28) uint8 array and as PNG bytes."""
    images, _, _ = split_images(Run.open(run_dir))
    array = images[3, 0].numpy()
    return array, png_bytes(array)


# --- the model and the health endpoints -------------------------------------------------------


def test_model_endpoint_describes_the_run(server, run_dir):
    data = httpx.get(f"{server.url}/api/model").json()
    run = Run.open(run_dir)
    assert data["classes"] == run.classes
    assert data["input_shape"] == [1, 28, 28]
    assert data["summary"] == json.loads(json.dumps(summary_json(build_model(run.spec).report)))
    assert data["metrics"]["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    assert data["drawing"] == {"background": "black", "ink": "white"}  # shapes: white on black
    assert data["engine"] == "eager"


def test_health_docs_and_openapi(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/api/predict", "/api/featuremaps"):
        body = spec["paths"][path]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json", "image/png"} <= set(body)
    assert "/api/model" in spec["paths"] and "/healthz" in spec["paths"]


def test_the_page_needs_nothing_from_outside(server):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "<canvas" in page.text
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC_DIR / name).read_text()
        # no CDN, no remote font or script: every URL is local to the server
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), name
        assert "@import" not in text and "cdn" not in text.lower(), name
    for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert httpx.get(f"{server.url}{ref}").status_code == 200, ref


# --- predictions ----------------------------------------------------------------------------


def test_every_way_of_sending_an_image_gives_the_cli_probabilities(server, predictor, sample):
    array, png = sample
    answers = [
        httpx.post(f"{server.url}/api/predict", files={"file": ("x.png", png, "image/png")}),
        httpx.post(f"{server.url}/api/predict", content=png, headers={"content-type": "image/png"}),
        httpx.post(f"{server.url}/api/predict", json={"pixels": array.tolist()}),
        httpx.post(f"{server.url}/api/predict", json={"pixels": [array.tolist()]}),  # 1xHxW
    ]
    expected = predictor.probabilities(predictor.prepare(png)[None])[0]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        data = answer.json()
        got = torch.tensor([data["probabilities"][c] for c in predictor.classes])
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
        assert data["prediction"] == predictor.classes[int(expected.argmax())]
        assert len(data["top_k"]) == 5 and data["top_k"][0]["class"] == data["prediction"]
        assert data["input_shape"] == [1, 28, 28]


def test_top_k_parameter_and_its_validation(server, sample):
    _, png = sample
    ok = httpx.post(
        f"{server.url}/api/predict?top_k=3", content=png, headers={"content-type": "image/png"}
    )
    assert [len(ok.json()["top_k"])] == [3]
    for query in ("top_k=0", "top_k=abc", "invert=sideways", "center=perhaps"):
        bad = httpx.post(
            f"{server.url}/api/predict?{query}", content=png, headers={"content-type": "image/png"}
        )
        assert bad.status_code == 422, query
        assert bad.json()["error"].startswith("invalid request: ")


def test_featuremaps_of_every_layer(server, predictor, sample):
    _, png = sample
    answer = httpx.post(
        f"{server.url}/api/featuremaps", files={"file": ("x.png", png, "image/png")}
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    x = predictor.prepare(png)
    maps = feature_maps(predictor.model, predictor.normalized(x[None]))
    assert [layer["name"] for layer in data["layers"]] == [m.name for m in maps]
    assert [layer["layer"] for layer in data["layers"]] == [m.layer for m in maps]
    for layer, fmap in zip(data["layers"], maps, strict=True):
        assert layer["shape"] == list(fmap.values.shape)
        if fmap.is_image:
            channels, height, width = fmap.values.shape
            grid = decode_png_data_url(layer["png"])
            assert layer["channels_shown"] == min(channels, 64)
            assert grid.shape == (layer["rows"] * (height + 1) - 1, layer["cols"] * (width + 1) - 1)
            assert layer["rows"] * layer["cols"] >= layer["channels_shown"]
            first = grid[:height, :width].astype(int)
            values = fmap.values[0]
            if values.max() > values.min():  # each channel stretched to 0..255 on its own
                assert first.min() == 0 and first.max() == 255
                scaled = (values - values.min()) / (values.max() - values.min()) * 255
                assert np.abs(first - scaled.numpy()).max() <= 1
        else:  # long vectors (a big flatten) are cut to their first MAX_VALUES numbers
            shown = fmap.values[:MAX_VALUES].tolist()
            assert layer["values_shown"] == len(shown) == min(fmap.values.numel(), MAX_VALUES)
            assert layer["values"] == pytest.approx(shown, abs=1e-4)
    assert np.array_equal(decode_png_data_url(data["input"]["png"]), x[0].numpy())
    logits = maps[-1].values
    assert data["prediction"]["class"] == predictor.classes[int(logits.argmax())]


def test_the_page_lays_out_each_layer_as_cnnlab_featuremaps_does(server, predictor, sample):
    """One tiling and scaling rule: the page's grid of a layer is the CLI's (evaluate/grids.py)."""
    _, png = sample
    every = {"max_channels": 1024}  # the whole layer, as the CLI draws it (the page's default: 64)
    data = httpx.post(
        f"{server.url}/api/featuremaps", params=every, files={"file": ("x.png", png)}
    ).json()
    maps = feature_maps(predictor.model, predictor.normalized(predictor.prepare(png)[None]))
    image_maps = [
        (layer, fmap) for layer, fmap in zip(data["layers"], maps, strict=True) if fmap.is_image
    ]
    assert image_maps
    for layer, fmap in image_maps:
        cli = feature_map_grid(fmap)  # what `cnnlab featuremaps` draws for this layer
        page = layer_grid(fmap, every["max_channels"])
        assert layer["channels_shown"] == page.count == cli.count == fmap.values.shape[0]
        assert (layer["rows"], layer["cols"]) == (cli.rows, cli.columns), layer["name"]
        assert (page.rows, page.columns, page.tile_shape) == (cli.rows, cli.columns, cli.tile_shape)
        assert np.array_equal(decode_png_data_url(layer["png"]), page.pixels)
        tiles = ~cli.separators()  # same pixels in every tile; only the separators' gray differs
        assert np.array_equal(page.pixels[tiles], cli.pixels[tiles]), layer["name"]


def test_unknown_paths_and_methods_answer_json(server):
    missing = httpx.get(f"{server.url}/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong = httpx.get(f"{server.url}/api/predict")
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_a_damaged_run_folder_while_serving_is_a_500_not_the_clients_fault(run_dir, sample):
    """A CheckpointError is a server-side fault: 500 JSON naming it, never a 4xx."""
    predictor = Predictor(Run.open(run_dir), "eager")

    def damaged(*args, **kwargs):
        raise CheckpointError("model.safetensors is damaged: run cnnlab train again")

    predictor.prepare = damaged  # the fault surfaces while a request is served
    srv = ThreadServer(create_app(predictor))
    try:
        answer = httpx.post(
            f"{srv.url}/api/predict", content=sample[1], headers={"content-type": "image/png"}
        )
    finally:
        srv.stop()
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "the server cannot use its model: "
        "model.safetensors is damaged: run cnnlab train again",
        "status": 500,
    }


# --- limits, for real -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight_server(predictor):
    srv = ThreadServer(
        create_app(predictor, Limits(max_body_bytes=50_000, max_in_flight=2, timeout_s=2.0))
    )
    yield srv
    srv.stop()


def _open_slow_request(port: int) -> socket.socket:
    """A POST that announces 1000 body bytes and sends 8: it stays in flight until the time limit."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        b"Content-Length: 1000\r\n\r\n\x89PNG\r\n\x1a\n"
    )
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one HTTP/1.1 response read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def _wait_in_flight(url: str, count: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        ready = httpx.get(f"{url}/readyz")
        if ready.json()["in_flight"] == count:
            return ready
        assert time.monotonic() < deadline, ready.json()
        time.sleep(0.02)


def test_too_many_in_flight_gets_503_then_slow_ones_get_504(tight_server):
    slow = [_open_slow_request(tight_server.port) for _ in range(2)]
    try:
        ready = _wait_in_flight(tight_server.url, 2)
        assert ready.status_code == 503 and ready.json()["status"] == "busy"
        assert httpx.get(f"{tight_server.url}/healthz").status_code == 200  # exempt
        third = httpx.post(
            f"{tight_server.url}/api/predict", content=b"x", headers={"content-type": "image/png"}
        )
        assert third.status_code == 503
        assert third.headers["retry-after"] == "1"
        assert "busy" in third.json()["error"]
        for sock in slow:  # the body never completes: the time limit answers
            status, headers, body = _read_response(sock)
            assert status == 504 and headers["content-type"] == "application/json"
            assert "longer than 2 s" in body["error"]
    finally:
        for sock in slow:
            sock.close()
    _wait_in_flight(tight_server.url, 0)
    assert httpx.get(f"{tight_server.url}/readyz").status_code == 200


def test_body_limit_with_and_without_content_length(tight_server):
    big = bytes(60_000)
    declared = httpx.post(
        f"{tight_server.url}/api/predict", content=big, headers={"content-type": "image/png"}
    )
    assert (
        declared.status_code == 413 and "over the limit of 50,000 bytes" in declared.json()["error"]
    )

    def chunks():
        for _ in range(15):
            yield bytes(5_000)

    chunked = httpx.post(
        f"{tight_server.url}/api/predict", content=chunks(), headers={"content-type": "image/png"}
    )
    assert chunked.status_code == 413 and chunked.json()["status"] == 413
    multipart = httpx.post(
        f"{tight_server.url}/api/predict", files={"file": ("big.png", big, "image/png")}
    )
    assert multipart.status_code == 413
    assert httpx.get(f"{tight_server.url}/healthz").status_code == 200


def test_serve_refuses_a_taken_port_and_bad_limits(run_dir, cli):
    taken = bind_socket("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        result = cli("serve", str(run_dir), "--port", port)
        assert result.code == 2 and f"cannot listen on 127.0.0.1:{port}" in result.err
        assert "--port 0" in result.err
    finally:
        taken.close()
    result = cli("serve", str(run_dir), "--max-in-flight", "0")
    assert result.code == 2 and "--max-in-flight" in result.err
