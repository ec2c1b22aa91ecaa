"""The run report (GET /run and /api/run/*) and the drawing page's CAM overlay and class bars.

The API is checked in-process (FastAPI's TestClient over the app `cnnlab serve` builds)
against the library computing the same numbers: `evaluate_run` for the confusion matrix,
its cells and the scores, `top_patches`, `embed_features`, `class_activation_map`. The
pages are checked in headless Chromium against a real `cnnlab serve` process: every panel
is drawn, and a clicked confusion cell shows exactly that cell's images.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from serve_support import ServerProcess, decode_png_data_url, trained_run
from test_page import browser  # noqa: F401  (the page tests' Chromium, and their skip without it)

import cnnlab
from cnnlab.deploy.predict import Predictor
from cnnlab.evaluate.cam import class_activation_map
from cnnlab.evaluate.embed import embed_features
from cnnlab.evaluate.patches import top_patches
from cnnlab.evaluate.scores import evaluate_run
from cnnlab.model.inference import normalize
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.server.camview import heat_overlay
from cnnlab.server.errors import ApiError
from cnnlab.server.report import MAX_CELL_IMAGES
from cnnlab.server.report_api import STATIC_DIR, ReportJobs

REPORT_PANELS = ("curves", "confusion", "scores", "filters", "patches", "embedding")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)  # shapes, 10 classes, 400 test images


@pytest.fixture(scope="module")
def client(run_dir):
    app = create_app(Predictor(Run.open(run_dir), "eager"))
    with TestClient(app) as test_client:
        test_client.limits = app.fastapi.state.guard  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture(scope="module")
def evaluated(run_dir):
    """What `cnnlab eval` computes for the run: (Evaluation, uint8 test images)."""
    return evaluate_run(Run.open(run_dir))


def _nan_to_none(values):
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def _as_picture(image: torch.Tensor) -> np.ndarray:
    """A uint8 (C, H, W) tensor as a PNG decodes: (H, W) gray or (H, W, 3)."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


# --- the JSON twins ---------------------------------------------------------------------------


def test_curves_are_the_runs_metrics(client, run_dir):
    data = client.get("/api/run/curves").json()
    run = Run.open(run_dir)
    rows = run.epoch_metrics()
    assert data["epochs"] == len(rows) >= 1
    for column in ("epoch", "train_loss", "train_accuracy", "lr"):
        assert data["columns"][column] == _nan_to_none([row[column] for row in rows])
    assert data["columns"]["val_loss"] == [None] * len(rows)  # no validation split: null, not NaN
    assert data["test_accuracy"] == pytest.approx(run.metrics["test_accuracy"])


def test_confusion_and_scores_are_what_cnnlab_eval_computes(client, evaluated):
    evaluation, _ = evaluated
    confusion = client.get("/api/run/confusion").json()
    assert confusion["classes"] == evaluation.classes
    assert confusion["matrix"] == evaluation.confusion.tolist()
    assert sum(map(sum, confusion["matrix"])) == confusion["images"] == evaluation.size == 400
    assert confusion["cam"]["layer"]["name"]  # the cells come with Grad-CAM overlays
    scores = client.get("/api/run/scores").json()
    assert scores["accuracy"] == pytest.approx(evaluation.accuracy)
    assert scores["balanced_accuracy"] == pytest.approx(evaluation.balanced_accuracy)
    assert scores["majority_baseline"] == pytest.approx(evaluation.majority_baseline())
    for row, expected in zip(scores["per_class"], evaluation.per_class(), strict=True):
        assert row["class"] == expected["class"] and row["support"] == expected["support"]
        for score in ("precision", "recall", "f1"):
            assert row[score] == pytest.approx(expected[score])
    assert [row["support"] for row in scores["per_class"]] == [
        sum(row) for row in confusion["matrix"]
    ]


def test_each_cell_holds_exactly_its_images_highest_loss_first(client, evaluated):
    evaluation, images = evaluated
    classes = evaluation.classes
    for t, p in [(0, 0), *evaluation_pairs(evaluation, 3)]:
        data = client.get(f"/api/run/confusion/{t}/{p}", params={"limit": MAX_CELL_IMAGES}).json()
        members = torch.nonzero((evaluation.labels == t) & (evaluation.predictions == p))[:, 0]
        assert data["count"] == int(evaluation.confusion[t, p]) == len(members)
        indices = [image["index"] for image in data["images"]]
        assert sorted(indices) == members.tolist()
        losses = [image["loss"] for image in data["images"]]
        assert losses == sorted(losses, reverse=True)
        assert losses == pytest.approx(evaluation.losses[indices].tolist())
        for image in data["images"][:4]:
            i = image["index"]
            assert np.array_equal(decode_png_data_url(image["png"]), _as_picture(images[i]))
            assert decode_png_data_url(image["cam"]).shape == (28, 28, 3)
            assert image["probability"] == pytest.approx(float(evaluation.probabilities[i, p]))
        # by name the same cell; paging takes the same order
        by_name = client.get(f"/api/run/confusion/{classes[t]}/{classes[p]}").json()
        assert by_name["count"] == data["count"]
        page = client.get(f"/api/run/confusion/{t}/{p}", params={"offset": 1, "limit": 2}).json()
        assert [image["index"] for image in page["images"]] == indices[1:3]


def evaluation_pairs(evaluation, n: int) -> list[tuple[int, int]]:
    """The n most frequent off-diagonal (true, predicted) pairs as indices."""
    return [
        (evaluation.classes.index(c["true"]), evaluation.classes.index(c["predicted"]))
        for c in evaluation.most_confused(n)
    ]


def test_the_image_endpoint_serves_the_evaluated_pixels(client, evaluated):
    _, images = evaluated
    answer = client.get("/api/run/image/7")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert np.array_equal(_png(answer.content), _as_picture(images[7]))
    assert client.head("/api/run/image/7").status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/run/image/400", 404, "has 400 images"),
        ("/api/run/image/-1", 422, "greater than or equal to 0"),
        ("/api/run/image/seven", 422, "integer"),
        ("/api/run/image/99999999999999999999", 422, "index"),
        ("/api/run/confusion/circle/unicorn", 404, "no class 'unicorn'"),
        ("/api/run/confusion/10/0", 404, "index from 0 to 9"),
        ("/api/run/confusion/0/0?limit=0", 422, "limit"),
        (f"/api/run/confusion/0/0?limit={MAX_CELL_IMAGES + 1}", 422, "limit"),
        ("/api/run/confusion/0/0?offset=-3", 422, "offset"),
        ("/api/run/patches?layer=fc1", 404, "choose a layer with feature maps"),
        ("/api/run/patches?top=0", 422, "top"),
        ("/api/run/embedding?method=umap", 422, "method"),
    ],
)
def test_bad_indices_classes_and_options_are_json_errors(client, path, status, words):
    answer = client.get(path)
    assert answer.status_code == status
    body = answer.json()
    assert body["status"] == status and words in body["error"]
    assert "Traceback" not in answer.text


def test_filters_are_the_first_conv_layers_weights(client, run_dir):
    data = client.get("/api/run/filters").json()
    weight = Run.open(run_dir).load_model().conv1.weight.detach()
    assert data["layer"] == "conv1" and data["weight_shape"] == list(weight.shape)
    assert data["rgb"] is False  # gray shapes: one input channel
    assert np.allclose(data["weights"], weight.flatten(1).numpy(), atol=1e-5)
    assert data["max_abs"] == pytest.approx(weight.abs().max().item())


def test_patches_are_top_patches_with_their_crops(client, run_dir, evaluated):
    evaluation, images = evaluated
    run = Run.open(run_dir)
    data = client.get("/api/run/patches", params={"layer": "relu2", "top": 3, "channels": 2}).json()
    expected = top_patches(
        run.load_model(), images, evaluation.labels, run.classes, (run.mean, run.std), "relu2", 3, 2
    )
    assert data["layer"] == "relu2" and "conv1" in data["layers"]
    for row, patches in zip(data["channels"], expected.patches, strict=True):
        assert [p["index"] for p in row["top"]] == [p.index for p in patches]
        for entry, patch in zip(row["top"], patches, strict=True):
            assert entry["activation"] == pytest.approx(patch.activation)
            assert np.array_equal(decode_png_data_url(entry["png"]), _as_picture(patch.crop))
    default = client.get("/api/run/patches").json()
    last_conv = [r.name for r in run.load_model().report.layers if r.layer.kind == "conv"][-1]
    assert default["layer"] == last_conv and len(default["channels"]) == 16  # as `cnnlab patches`


@pytest.mark.slow
def test_the_projector_places_every_test_image_with_its_classes(client, run_dir, evaluated):
    evaluation, _ = evaluated
    data = client.get("/api/run/embedding").json()
    expected = embed_features(Run.open(run_dir), method="pca")
    assert data["shown"] == data["total"] == evaluation.size
    assert data["misclassified"] == int((evaluation.predictions != evaluation.labels).sum())
    points = np.array([[p["x"], p["y"]] for p in data["points"]])
    assert np.allclose(points, expected.points.numpy(), atol=1e-4)
    for point in data["points"][:50]:
        i = point["index"]
        assert point["label"] == evaluation.classes[int(evaluation.labels[i])]
        assert point["predicted"] == evaluation.classes[int(evaluation.predictions[i])]


def test_cam_of_a_posted_image_is_grad_cam_for_the_predicted_class(client, run_dir, evaluated):
    _, images = evaluated
    png = client.get("/api/run/image/11").content
    answer = client.post("/api/cam", content=png, headers={"content-type": "image/png"}).json()
    predicted = client.post("/api/predict", files={"file": ("a.png", png, "image/png")}).json()
    assert answer["class"] == predicted["prediction"]
    run = Run.open(run_dir)
    x = normalize(images[11][None], run.mean, run.std)
    expected = class_activation_map(run.load_model(), x, "gradcam", classes=run.classes)
    assert answer["layer"]["name"] == expected.layer.name
    overlay = decode_png_data_url(answer["overlay"])
    assert np.array_equal(overlay, heat_overlay(images[11], expected.heatmap))
    assert "each cell sees" in answer["layer_text"]


def test_report_routes_share_the_servers_limits(client):
    guard = client.limits
    guard.in_flight = guard.max_in_flight  # as if the server were full
    try:
        for path in ("/run", "/api/run/scores", "/api/run/image/0"):
            answer = client.get(path)
            assert answer.status_code == 503 and "busy" in answer.json()["error"]
        assert client.get("/healthz").status_code == 200
    finally:
        guard.in_flight = 0
    assert client.get("/api/run/scores").status_code == 200


def test_a_slow_computation_runs_once_and_outlives_a_request_that_gave_up():
    """What a 504 does to the first evaluation: the waiting stops, the computation goes on."""

    async def scenario() -> None:
        jobs = ReportJobs(workers=1, max_pending=1)
        release, calls = threading.Event(), []

        def slow(x: int) -> int:
            calls.append(x)
            release.wait(60)
            return 2 * x

        first = asyncio.ensure_future(jobs.once(("evaluation",), slow, 21))
        second = asyncio.ensure_future(jobs.once(("evaluation",), slow, 21))
        for _ in range(3):
            await asyncio.sleep(0)
        assert list(jobs.pending) == [("evaluation",)]
        first.cancel()  # as the Guard's time limit cancels a request
        with pytest.raises(ApiError) as refused:  # no second slow computation beside it
            await jobs.once(("embedding", "pca"), slow, 1)
        assert refused.value.status == 503
        release.set()
        assert await second == 42
        await asyncio.sleep(0)
        assert calls == [21] and jobs.pending == {}
        assert first.cancelled()

    asyncio.run(scenario())


def test_the_report_page_and_its_api_are_listed_and_local(client):
    page = client.get("/run")
    assert page.status_code == 200 and 'src="/static/run.js"' in page.text
    paths = client.get("/openapi.json").json()["paths"]
    for panel in REPORT_PANELS:
        assert f"/api/run/{panel}" in paths
    assert "/api/run/confusion/{true}/{predicted}" in paths and "/api/cam" in paths
    for name in ("run.html", "run.js", "run.css"):
        # no CDN, no remote font or script; the SVG namespace is a name, never fetched
        text = (STATIC_DIR / name).read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(?:https?:)?//[a-z0-9-]+\.[a-z0-9.-]+", text, re.I), name
        assert "@import" not in text and "cdn" not in text.lower(), name
    for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(ref).status_code == 200, ref


# --- a folder run: file names, RGB filters, and data gone missing ------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """Two classes of 16x16 colour noise (dark, light) in class folders, one epoch."""
    root = tmp_path_factory.mktemp("folder") / "data"
    rng = np.random.default_rng(0)
    for name, level in (("dark", 40), ("light", 200)):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(level - 30, level + 30, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}-{i:02d}.png")
    out = root.parent / "run"
    model = "conv(4, 3, padding=same) relu maxpool(2) flatten fc(2)"
    with pytest.MonkeyPatch.context() as patch:  # the folder's decoded cache: not the user's
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        cnnlab.train(model=model, data=str(root), epochs=1, batch_size=8, quiet=True, out=str(out))
    return out


@pytest.fixture(scope="module")
def folder_client(folder_run, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        with TestClient(create_app(Predictor(Run.open(folder_run), "eager"))) as test_client:
            yield test_client


def test_folder_data_cells_name_their_files_and_filters_are_rgb(folder_client, folder_run):
    evaluation, _ = evaluate_run(Run.open(folder_run))
    confusion = folder_client.get("/api/run/confusion").json()
    shown = []
    for t, row in enumerate(confusion["matrix"]):
        for p, count in enumerate(row):
            cell = folder_client.get(f"/api/run/confusion/{t}/{p}").json()
            assert len(cell["images"]) == count
            shown += [(image["index"], image["file"]) for image in cell["images"]]
    # named relative to the data set's folder: the server's own layout stays its own
    root = (folder_run.parent / "data").resolve()
    files = [Path(file).relative_to(root).as_posix() for file in evaluation.files]
    assert sorted(shown) == list(enumerate(files))
    assert all(Path(file).parent.name in ("dark", "light") for _, file in shown)
    filters = folder_client.get("/api/run/filters").json()
    assert filters["rgb"] is True and filters["weight_shape"] == [4, 3, 3, 3]


def test_a_run_whose_data_is_gone_still_shows_what_needs_no_data(folder_run, tmp_path):
    moved = tmp_path / "run"
    moved.mkdir()
    for file in folder_run.iterdir():
        (moved / file.name).write_bytes(file.read_bytes())
    config = (moved / "config.toml").read_text()
    gone = (tmp_path / "gone").as_posix()
    (moved / "config.toml").write_text(re.sub(r'(?m)^data = ".*"$', f'data = "{gone}"', config))
    record = json.loads((moved / "record.json").read_text())  # what later stages read
    record["source"]["name"] = gone
    (moved / "record.json").write_text(json.dumps(record))
    with TestClient(create_app(Predictor(Run.open(moved), "eager"))) as test_client:
        for path in ("/api/run/confusion", "/api/run/scores", "/api/run/embedding"):
            answer = test_client.get(path)
            assert answer.status_code == 404 and "cannot be loaded" in answer.json()["error"]
            assert _paths_in(answer, [str(tmp_path)]) == []
        # the failure is kept per language: a Korean page gets it in Korean, English stays
        korean = test_client.get("/api/run/scores?lang=ko").json()["error"]
        assert "불러올 수 없습니다" in korean and "cannot be loaded" not in korean, korean
        assert "데이터 세트" in korean and "unknown" not in korean, korean  # the loader's, too
        assert "cannot be loaded" in test_client.get("/api/run/confusion").json()["error"]
        assert test_client.get("/api/run/curves").status_code == 200
    # first asked in both languages at once: each request still gets its own language
    paths = [f"/api/run/{panel}?lang={lang}" for panel in ("confusion", "scores") for lang in ("ko", "en") * 2]  # fmt: skip
    fresh_app = create_app(Predictor(Run.open(moved), "eager"))
    with TestClient(fresh_app) as fresh, ThreadPoolExecutor(len(paths)) as pool:
        errors = list(pool.map(lambda path: fresh.get(path).json()["error"], paths))
    for path, error in zip(paths, errors, strict=True):
        assert ("불러올 수 없습니다" in error) == path.endswith("ko"), (path, error)
        assert ("cannot be loaded" in error) == path.endswith("en"), (path, error)
        assert test_client.get("/api/run/filters").status_code == 200


# An absolute path in a string: at its start or after a space, quote, '(', '=', ':' or ','.
ABSOLUTE_PATH = re.compile(r"""(?:^|[\s"'(=:,])(/[^\s"',;)]+)""")
OUR_URLS = ("/api/", "/static/", "/run", "/docs", "/openapi.json", "/healthz", "/readyz")


def _strings(value) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _paths_in(answer: httpx.Response, roots: list[str]) -> list[str]:
    """The file-system paths an answer names (our own URLs and data URLs are not paths)."""
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    found = [root for root in roots if root in answer.text]
    for text in _strings(answer.json()):
        if not text.startswith("data:"):
            found += [
                m.group(1)
                for m in ABSOLUTE_PATH.finditer(text)
                if not m.group(1).startswith(OUR_URLS)
            ]
    return found


def _folder_answers(client: TestClient) -> dict[str, httpx.Response]:
    """An answer of every JSON route, and of a few refused requests, on the two-class folder run."""
    gets = ["/api/model", "/healthz", "/readyz", "/openapi.json"]
    gets += [f"/api/run/{panel}" for panel in REPORT_PANELS]
    gets += [f"/api/run/confusion/{t}/{p}" for t in (0, 1) for p in (0, 1)]
    gets += ["/api/run/confusion/nope/0", "/api/run/image/999", "/api/run/patches?layer=nope"]
    answers = {path: client.get(path) for path in gets}
    png = client.get("/api/run/image/0").content
    for path in ("/api/predict", "/api/featuremaps", "/api/cam"):
        answers[path] = client.post(path, content=png, headers={"content-type": "image/png"})
    answers["not an image"] = client.post(
        "/api/predict", content=b"not an image", headers={"content-type": "image/png"}
    )
    return answers


def test_no_answer_names_a_path_of_the_server(folder_client, folder_run):
    roots = sorted({str(folder_run.parent), str(folder_run.parent.resolve()), str(Path.home())})
    answers = _folder_answers(folder_client)
    assert [path for path, answer in answers.items() if answer.status_code >= 500] == []
    for path, answer in answers.items():
        assert _paths_in(answer, roots) == [], path
    assert answers["/api/model"].json()["data"] == "folder:data"
    assert answers["/api/run/confusion"].json()["data"] == "folder:data"
    patch = answers["/api/run/patches"].json()["channels"][0]["top"][0]
    assert Path(patch["file"]).parent.name in ("dark", "light")
    points = answers["/api/run/embedding"].json()["points"]
    assert all(Path(p["file"]).parent.name in ("dark", "light") for p in points)


def test_errors_of_a_damaged_or_moved_run_name_no_path(folder_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(folder_run, run)
    with TestClient(create_app(Predictor(Run.open(run), "eager"))) as test_client:
        (run / "model.safetensors").write_bytes(b"damaged after the server started")
        answers = {path: test_client.get(path) for path in ("/api/run/filters", "/api/run/scores")}
    assert answers["/api/run/filters"].status_code == 500  # the server's fault: its run folder
    for path, answer in answers.items():
        assert _paths_in(answer, [str(tmp_path), str(tmp_path.resolve())]) == [], path
        assert "model.safetensors" in answer.json()["error"]  # still says which file


def test_a_model_without_conv_layers_has_no_filters_patches_or_cam(tmp_path_factory):
    run = trained_run(tmp_path_factory, model="flatten fc(16) relu fc(10)")
    with TestClient(create_app(Predictor(Run.open(run), "eager"))) as test_client:
        for path in ("/api/run/filters", "/api/run/patches"):
            answer = test_client.get(path)
            assert answer.status_code == 404 and "conv" in answer.json()["error"]
        png = test_client.get("/api/run/image/0").content
        cam = test_client.post("/api/cam", content=png, headers={"content-type": "image/png"})
        assert cam.status_code == 404 and "conv" in cam.json()["error"]
        cell = test_client.get("/api/run/confusion/0/0").json()
        assert all("cam" not in image for image in cell["images"])
        assert test_client.get("/api/run/embedding").status_code == 200


# --- the pages in headless Chromium -----------------------------------------------------------


@pytest.fixture(scope="module")
def server(run_dir):
    srv = ServerProcess(run_dir, run_dir.parent / "serve-report.log")
    yield srv
    srv.stop()


def _wait(driver, condition, seconds: float = 60):
    """Until `condition(driver)` holds; an element the page re-drew meanwhile (stale) is found
    again on the next try."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def _css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _panels_done(driver) -> bool:
    states = driver.execute_script(
        "return [...document.querySelectorAll('section[data-api]')].map(s => s.dataset.state)"
    )
    return all(states)


@pytest.mark.browser
@pytest.mark.slow
def test_run_page_draws_every_panel_and_a_clicked_cell_shows_its_images(server, browser):  # noqa: F811
    browser.get(f"{server.url}/run")
    _wait(browser, _panels_done)
    for panel in REPORT_PANELS:
        assert _css(browser, f"#{panel}-panel")[0].get_attribute("data-state") == "ready", panel
    api = {
        panel: httpx.get(f"{server.url}/api/run/{panel}", timeout=60).json()
        for panel in REPORT_PANELS
    }
    k = len(api["confusion"]["classes"])
    assert len(_css(browser, "#curves svg")) == 3
    assert len(_css(browser, "#confusion td.cell")) == k * k
    assert len(_css(browser, "#scores tbody tr")) == k
    assert len(_css(browser, "#filters canvas")) == 1
    assert len(_css(browser, "#patches .patch-row")) == len(api["patches"]["channels"])
    assert len(_css(browser, "#projector circle")) == api["embedding"]["shown"]
    counts = [int(cell.text) for cell in _css(browser, "#confusion td.cell")]
    assert counts == [n for row in api["confusion"]["matrix"] for n in row]
    # hovering a projector point shows that point's image
    from selenium.webdriver.common.action_chains import ActionChains

    # a point no other overlaps (where points lie depends on the CPU's floats: a point half
    # under another made the mouse land on either, as it did on AMD EPYC)
    points = _css(browser, "#projector circle")
    alone = browser.execute_script(
        "const boxes = arguments[0].map(c => c.getBoundingClientRect());"
        "const apart = (a, b) => a.right < b.left || b.right < a.left || a.bottom < b.top"
        "  || b.bottom < a.top;"
        "return boxes.findIndex((a, i) => boxes.every((b, j) => i === j || apart(a, b)));",
        points,
    )
    assert alone >= 0, "every projector point overlaps another"
    point = points[alone]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(browser).move_to_element(point).perform()
    hover = _wait(browser, lambda d: _css(d, "#hover:not([hidden])"))[0]
    index = api["embedding"]["points"][int(point.get_attribute("data-k"))]["index"]
    assert hover.get_attribute("data-index") == str(index)
    image = _css(browser, "#hover-image")[0]
    assert image.get_attribute("src").endswith(f"/api/run/image/{index}")
    _wait(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", image) == 28)
    # two cells in turn: each shows exactly its own images, each with its CAM overlay
    cells = [c for c in _css(browser, "#confusion td.cell") if 0 < int(c.text) <= 48]
    chosen = [cells[0], max(cells, key=lambda c: int(c.text))]
    for cell in chosen:
        t, p = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
        cell.click()
        expected = httpx.get(f"{server.url}/api/run/confusion/{t}/{p}").json()
        _wait(browser, lambda d, n=expected["count"]: _cell_shown(d) == n)
        shown = [int(f.get_attribute("data-index")) for f in _css(browser, "#cell-images figure")]
        assert shown == [image["index"] for image in expected["images"]]
        assert len(_css(browser, "#cell-images img.cam")) == expected["count"]


def _cell_shown(driver) -> int:
    panel = _css(driver, "#cell-panel")[0]
    if panel.get_attribute("data-state") != "ready":
        return -1
    return len(_css(driver, "#cell-images figure"))


@pytest.mark.browser
@pytest.mark.slow
def test_drawing_page_shows_cam_class_bars_and_maps_beside_the_drawing(server, browser, tmp_path):  # noqa: F811
    browser.set_window_size(1400, 1000)
    browser.get(server.url)
    _wait(browser, lambda d: len(_css(d, "#summary tbody tr")) > 0)
    picture = tmp_path / "test7.png"
    picture.write_bytes(httpx.get(f"{server.url}/api/run/image/7").content)
    _css(browser, "#file-input")[0].send_keys(str(picture))
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.busy") == "0"
          and len(_css(d, "#cam img")) == 1)  # fmt: skip
    cam = _css(browser, "#cam img")[0]
    assert browser.execute_script("return arguments[0].naturalWidth", cam) == 28
    expected = httpx.post(
        f"{server.url}/api/cam", files={"file": ("test7.png", picture.read_bytes(), "image/png")}
    ).json()
    shown = base64.b64decode(cam.get_attribute("src").split(",", 1)[1])
    assert np.array_equal(_png(shown), decode_png_data_url(expected["overlay"]))
    classes = httpx.get(f"{server.url}/api/model").json()["classes"]
    bars = _css(browser, "#maps canvas.class-bars")
    assert bars and all(name in bars[-1].get_attribute("aria-label") for name in classes)
    drawing = _css(browser, "#input-panel")[0].rect
    maps = _css(browser, "#maps-panel")[0].rect
    assert maps["x"] >= drawing["x"] + drawing["width"]  # side by side on a desktop-wide window


@pytest.mark.browser
@pytest.mark.slow
def test_f1_bars_leave_their_numbers_clear_and_a_cells_cam_lies_over_its_image(server, browser):  # noqa: F811
    browser.set_window_size(1200, 1600)
    browser.get(f"{server.url}/run")
    _wait(browser, _panels_done)
    f1_cells = _css(browser, "#scores td.f1")
    assert f1_cells
    for cell in f1_cells:  # each bar ends before its number starts
        bar = cell.find_element("css selector", ".track").rect
        number = cell.find_element("css selector", ".value").rect
        assert bar["width"] > 0 and bar["x"] + bar["width"] <= number["x"], cell.text
    cell = max(_css(browser, "#confusion td.cell"), key=lambda c: int(c.text))
    cell.click()
    _wait(browser, lambda d: _cell_shown(d) > 0)
    for figure in _css(browser, "#cell-images figure")[:4]:
        image, cam = figure.find_elements("css selector", "img")
        assert "cam" in cam.get_attribute("class")
        assert image.rect == cam.rect  # one place: the CAM over the image, not beside it
