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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from serve_support import decode_png_data_url, png_bytes, trained_run

from cnnlab.deploy.predict import Predictor
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.evaluate.featuremaps import feature_maps
from cnnlab.evaluate.grids import feature_map_grid
from cnnlab.evaluate.scores import split_images
from cnnlab.i18n import translate
from cnnlab.model.cnn import build_model
from cnnlab.run.folder import Run
from cnnlab.server.app import STATIC_DIR, create_app
from cnnlab.server.limits import DEFAULT_LIMITS, Limits
from cnnlab.server.maps import MAX_VALUES, layer_grid
from cnnlab.server.page_text import PAGE_TEXT, dictionary, script
from cnnlab.server.serve import bind_socket, uvicorn_config
from cnnlab.spec.summary import summary_json


class ThreadServer:
    """uvicorn serving `app` in a background thread on a free loopback port."""

    def __init__(self, app, limits: Limits = DEFAULT_LIMITS):
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # the settings `cnnlab serve` runs with (the header timeout among them)
        self.server = uvicorn.Server(uvicorn_config(app, limits))
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
    for ref in re.findall(r'(?:src|href)="(/(?:static|api)/[^"]+)"', page.text):
        assert httpx.get(f"{server.url}{ref}").status_code == 200, ref


def test_the_pages_words_come_from_the_gettext_catalogue(server, run_dir):
    """/api/i18n.js (loaded before i18n.js) and its JSON twin: the catalogue's Korean, no paths."""
    served = httpx.get(f"{server.url}/api/i18n.js")
    assert served.status_code == 200 and served.text == script()
    assert served.headers["content-type"].startswith("text/javascript")
    assert served.headers["cache-control"] == "no-cache"  # as the pages: a new catalogue shows
    assert served.text.startswith("// ") and "const DICTIONARIES_FROM_SERVER = {" in served.text
    assert str(run_dir) not in served.text and str(STATIC_DIR) not in served.text
    korean = httpx.get(f"{server.url}/api/i18n", params={"lang": "ko"}).json()
    assert korean["language"] == "ko" and korean["messages"] == dictionary("ko")
    assert korean["messages"]["Prediction"] == translate("Prediction", "ko") == "예측"
    assert set(korean["messages"]) == set(PAGE_TEXT)  # every page text has its Korean
    assert httpx.get(f"{server.url}/api/i18n?lang=en").json()["messages"] == {}
    assert httpx.get(f"{server.url}/api/i18n?lang=fr").status_code == 422


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
    """A POST that announces 1000 body bytes and sends 8: its body never arrives."""
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


# --- abuse: slow clients, abandoned work, HEAD, bad numbers -------------------------------------


class GatedPredictor:
    """The real predictor whose decode waits for `gate`: work that holds a worker, on demand.

    Records how many decodes ran at once, which is what the worker bound is about.
    """

    def __init__(self, run_dir: Path):
        self.predictor = Predictor(Run.open(run_dir), "eager")
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0
        decode = self.predictor.prepare

        def gated(*args, **kwargs):
            with self.lock:
                self.calls += 1
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                assert self.gate.wait(60), "the test never opened the gate"
                return decode(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        self.predictor.prepare = gated


def _post_png(url: str, png: bytes) -> httpx.Response:
    return httpx.post(
        f"{url}/api/predict", content=png, headers={"content-type": "image/png"}, timeout=60
    )


def _wait_ready(url: str, key: str, value: int) -> dict:
    deadline = time.monotonic() + 30
    while True:
        ready = httpx.get(f"{url}/readyz").json()
        if ready[key] == value:
            return ready
        assert time.monotonic() < deadline, ready
        time.sleep(0.02)


def test_slow_uploads_do_not_hold_inference_slots_and_get_408(predictor, sample):
    """Clients dribbling their body wait outside the in-flight count; normal requests go through."""
    limits = Limits(max_in_flight=2, timeout_s=30.0, body_timeout_s=2.0)
    srv = ThreadServer(create_app(predictor, limits), limits)
    slow = [_open_slow_request(srv.port) for _ in range(6)]
    try:
        answer = _post_png(srv.url, sample[1])
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{srv.url}/readyz").status_code == 200
        for sock in slow:  # their bodies never arrive: 408, and the connection is closed
            status, headers, body = _read_response(sock)
            assert status == 408 and headers["content-type"] == "application/json"
            assert (
                "did not arrive within 2 s" in body["error"] and "8 of 1,000 bytes" in body["error"]
            )
    finally:
        for sock in slow:
            sock.close()
        srv.stop()


def test_a_client_dribbling_its_headers_is_disconnected(predictor):
    limits = Limits(header_timeout_s=1.0)
    srv = ThreadServer(create_app(predictor, limits), limits)
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        closed = False
        for _ in range(300):  # a header byte every 0.1 s, at most 30 s
            try:
                sock.sendall(b"X")
                sock.settimeout(0.1)
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                closed = True
            if closed:
                break
        assert closed, "the server kept a connection open whose headers never ended"
    finally:
        sock.close()
        srv.stop()


def test_too_many_in_flight_gets_503_and_slow_work_504(run_dir, sample):
    gated = GatedPredictor(run_dir)
    limits = Limits(max_in_flight=2, timeout_s=30.0, workers=1)
    srv = ThreadServer(create_app(gated.predictor, limits), limits)
    try:
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(_post_png, srv.url, sample[1]) for _ in range(2)]
            ready = _wait_in_flight(srv.url, 2)
            assert ready.status_code == 503 and ready.json()["status"] == "busy"
            assert httpx.get(f"{srv.url}/healthz").status_code == 200  # exempt
            third = _post_png(srv.url, sample[1])
            assert third.status_code == 503 and third.headers["retry-after"] == "1"
            assert "busy" in third.json()["error"]
            gated.gate.set()
            assert [f.result().status_code for f in held] == [200, 200]
        assert gated.most == 1  # one worker: one decode at a time
    finally:
        gated.gate.set()
        srv.stop()


def test_timed_out_work_keeps_its_worker_until_it_stops(run_dir, sample):
    """A 504 answers at once, but the abandoned decode holds its worker: no pile-up of decodes."""
    gated = GatedPredictor(run_dir)
    limits = Limits(timeout_s=1.0, workers=1)
    srv = ThreadServer(create_app(gated.predictor, limits), limits)
    try:
        first = _post_png(srv.url, sample[1])
        assert first.status_code == 504 and "longer than 1 s" in first.json()["error"]
        second = _post_png(srv.url, sample[1])  # waits for the worker, which is still decoding
        assert second.status_code == 504
        assert gated.calls == 1 and gated.most == 1
        assert _wait_ready(srv.url, "workers_busy", 1)["in_flight"] == 0
        gated.gate.set()
        _wait_ready(srv.url, "workers_busy", 0)
        assert _post_png(srv.url, sample[1]).status_code == 200
        assert gated.most == 1
    finally:
        gated.gate.set()
        srv.stop()


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/api/model", "/api/i18n.js"])
def test_head_answers_like_get(server, path):
    got, head = httpx.get(f"{server.url}{path}"), httpx.head(f"{server.url}{path}")
    assert head.status_code == got.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.content == b""


@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-body-mb", "nan"),
        ("--max-body-mb", "inf"),
        ("--max-body-mb", "0"),
        ("--max-body-mb", "1e-12"),
        ("--max-body-mb", "1e9"),
        ("--timeout", "nan"),
        ("--timeout", "-inf"),
        ("--timeout", "0"),
        ("--timeout", "1e9"),
        ("--max-in-flight", "0"),
        ("--max-in-flight", "10000000"),
        ("--body-timeout", "nan"),
        ("--header-timeout", "inf"),
    ],
)
def test_serve_refuses_numbers_that_are_not_finite_or_out_of_range(run_dir, cli, option, value):
    result = cli("serve", str(run_dir), "--port", "0", f"{option}={value}")
    assert result.code == 2 and result.err.startswith("error: "), result.err
    assert f"{option} must be a number from " in result.err, result.err


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_body_bytes", 0),
        ("max_in_flight", 0),
        ("timeout_s", float("nan")),
        ("timeout_s", float("inf")),
        ("body_timeout_s", -1.0),
        ("header_timeout_s", float("nan")),
        ("workers", 0),
    ],
)
def test_limits_refuse_numbers_out_of_range(field, value):
    with pytest.raises(ConfigError, match=field):
        Limits(**{field: value})


def test_uploads_arriving_at_once_are_bounded(predictor, sample):
    """Bodies being read are not in flight, but their number (and so their memory) has a limit."""
    limits = Limits(max_uploading=2, body_timeout_s=30.0)
    srv = ThreadServer(create_app(predictor, limits), limits)
    slow = [_open_slow_request(srv.port) for _ in range(2)]
    try:
        _wait_ready(srv.url, "uploading", 2)
        third = _post_png(srv.url, sample[1])
        assert third.status_code == 503 and "2 uploads arriving" in third.json()["error"]
    finally:
        for sock in slow:
            sock.close()
        _wait_ready(srv.url, "uploading", 0)
        srv.stop()


def test_bodies_held_in_memory_have_a_byte_budget(predictor, sample):
    """Many uploads each under the body limit may not add up past the memory budget (503)."""
    png = sample[1]
    limits = Limits(max_buffered_bytes=len(png) - 1)
    srv = ThreadServer(create_app(predictor, limits), limits)
    try:
        refused = _post_png(srv.url, png)
        assert refused.status_code == 503
        assert "bytes of request bodies in memory" in refused.json()["error"]
        _wait_ready(srv.url, "buffered_bytes", 0)  # what a refused body held is let go
    finally:
        srv.stop()
    limits = Limits(max_buffered_bytes=len(png))
    srv = ThreadServer(create_app(predictor, limits), limits)
    try:
        assert _post_png(srv.url, png).status_code == 200
        _wait_ready(srv.url, "buffered_bytes", 0)
    finally:
        srv.stop()
