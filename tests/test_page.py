"""The served page in real headless Chromium: draw with mouse and touch, upload, see bars and maps.

Drives Debian's chromium through selenium against a real `cnnlab serve` process. Skips
(with the reason) where Chromium or chromedriver is missing, and fails in CI.
"""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import require_system_part
from PIL import Image
from serve_support import ServerProcess, png_bytes, trained_run

import cnnlab

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = trained_run(tmp_path_factory)
    srv = ServerProcess(run, run.parent / "serve.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def colour_server(tmp_path_factory):
    """A served run of a 3-channel model: two classes of 16x16 colour images in folders."""
    root = tmp_path_factory.mktemp("colour") / "data"
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / name).mkdir(parents=True)
        for i in range(12):
            noise = rng.integers(-30, 30, (16, 16, 3))
            Image.fromarray((np.array(colour) + noise).astype(np.uint8)).save(
                root / name / f"{i}.png"
            )
    run = root.parent / "run"
    with pytest.MonkeyPatch.context() as patch:  # the folder's decoded cache: not the user's
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
        model = "conv(4, 3, padding=same) relu maxpool(2) flatten fc(2)"
        cnnlab.train(model=model, data=str(root), epochs=1, batch_size=8, quiet=True, out=str(run))
    srv = ServerProcess(run, run.parent / "serve.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    require_system_part(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        "Chromium and chromedriver",
        "apt-get install chromium chromium-driver",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="cnnlab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition):
    """Until `condition(driver)` holds. The page re-draws panels it re-asks for (after a language
    switch, the cell panel): an element found just before that is stale, so try again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def _css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _settled(driver) -> bool:
    """The latest drawing or file has its answers on the page (no request pending)."""
    return driver.execute_script("return document.body.dataset.busy") == "0"


def _open(driver, url):
    driver.get(url)
    _wait(driver, lambda d: len(_css(d, "#summary tbody tr")) > 0)


def _stroke(driver, kind: str = "mouse"):
    """A diagonal stroke across the canvas with a mouse or a finger (pointer events)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    canvas = _css(driver, "#canvas")[0]
    pointer = PointerInput(
        interaction.POINTER_TOUCH if kind == "touch" else interaction.POINTER_MOUSE, kind
    )
    actions = ActionBuilder(driver, mouse=pointer)
    actions.pointer_action.move_to(canvas, -80, -60).pointer_down()
    for step in range(1, 13):
        actions.pointer_action.move_to(canvas, -80 + step * 12, -60 + step * 9)
    actions.pointer_action.pointer_up()
    actions.perform()


def _canvas_png(driver) -> bytes:
    data_url = driver.execute_script(
        "return document.getElementById('canvas').toDataURL('image/png')"
    )
    return base64.b64decode(data_url.split(",", 1)[1])


def _screenshot_is_not_blank(driver, path: Path) -> np.ndarray:
    driver.save_screenshot(str(path))
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(float)
    assert pixels.std() > 20, "the screenshot is (nearly) one colour"
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    assert colours > 50, f"only {colours} colours in the screenshot"
    return pixels


def test_draw_and_see_the_prediction_bars_and_every_layer(server, browser, tmp_path):
    _open(browser, server.url)
    model = httpx.get(f"{server.url}/api/model").json()
    assert len(_css(browser, "#summary tbody tr")) == len(model["summary"]["layers"])
    _stroke(browser, "mouse")
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#bars .bar")) == 5)
    _wait(browser, lambda d: len(_css(d, "#maps .layer")) == len(model["summary"]["layers"]))
    # what the page shows is what the API says for the same drawing
    drawn = _canvas_png(browser)
    canvas = np.asarray(Image.open(io.BytesIO(drawn)).convert("L"))
    assert canvas.max() == 255 and canvas.min() == 0  # white ink on a black ground
    answer = httpx.post(
        f"{server.url}/api/predict", files={"file": ("d.png", drawn, "image/png")}
    ).json()
    _wait(browser, lambda d: _css(d, "#prediction")[0].text.startswith(answer["prediction"]))
    labels = [bar.text.split("\n")[0] for bar in _css(browser, "#bars .bar")]
    assert labels == [c["class"] for c in answer["top_k"]]
    titles = [
        layer.find_element("css selector", "h3").text for layer in _css(browser, "#maps .layer")
    ]
    for title, row in zip(titles, model["summary"]["layers"], strict=True):
        assert row["name"] in title and row["layer"] in title
        assert "x".join(map(str, row["out_shape"])) in title
    images = _css(browser, "#maps .layer img")
    assert images and all(
        browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in images
    )
    # each map's click overlay lies over its map, adding nothing beside it: a layer is as wide
    # as its map, and the page as wide as the window (a stray 300x150 canvas widened both)
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#maps .map-wrap')].filter(w => w.querySelector('img'))"
        ".map(w =>"
        " [w.getBoundingClientRect().width, w.querySelector('img').getBoundingClientRect().width,"
        " w.querySelector('canvas.map-mark').getBoundingClientRect().width])"
    )
    assert widths and all(wrap == img and mark <= img for wrap, img, mark in widths), widths
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    _screenshot_is_not_blank(browser, tmp_path / "drawn.png")


def test_touch_drawing_and_clear(server, browser):
    _open(browser, server.url)
    _stroke(browser, "touch")
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#bars .bar")) == 5)
    assert np.asarray(Image.open(io.BytesIO(_canvas_png(browser))).convert("L")).max() == 255
    _css(browser, "#clear")[0].click()
    _wait(browser, lambda d: len(_css(d, "#bars .bar")) == 0)
    assert np.asarray(Image.open(io.BytesIO(_canvas_png(browser))).convert("L")).max() == 0


def test_upload_a_file_and_see_feature_maps(server, browser, tmp_path):
    _open(browser, server.url)
    picture = np.zeros((64, 64), dtype=np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    picture[np.abs(np.hypot(yy - 32, xx - 32) - 20) < 3] = 255  # a ring
    path = tmp_path / "ring.png"
    path.write_bytes(png_bytes(picture))
    _css(browser, "#file-input")[0].send_keys(str(path))
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#maps .layer img")) > 0)
    answer = httpx.post(
        f"{server.url}/api/predict", files={"file": ("ring.png", path.read_bytes(), "image/png")}
    ).json()
    _wait(browser, lambda d: _css(d, "#prediction")[0].text.startswith(answer["prediction"]))
    seen = _css(browser, "#seen img")[0]
    assert browser.execute_script("return arguments[0].naturalWidth", seen) == 28
    pixels = _screenshot_is_not_blank(browser, tmp_path / "uploaded.png")
    assert pixels.shape[0] > 500


def test_an_uploaded_file_is_captioned_as_the_file_at_its_own_size(server, browser, tmp_path):
    _open(browser, server.url)
    assert "Your drawing (280x280)" in _css(browser, "#resize-note")[0].text
    path = tmp_path / "small-digit.png"
    path.write_bytes(png_bytes(np.full((48, 48), 200, dtype=np.uint8)))
    _css(browser, "#file-input")[0].send_keys(str(path))
    _wait(browser, lambda d: _settled(d) and "48x48" in _css(d, "#resize-note")[0].text)
    note = _css(browser, "#resize-note")[0].text
    assert note == "The uploaded file small-digit.png (48x48) is resized to 28x28 on the server."
    browser.save_screenshot(str(tmp_path / "uploaded-caption.png"))
    _stroke(browser)  # drawing over the picture: the canvas is what is sent from then on
    _wait(browser, lambda d: "Your drawing (280x280)" in _css(d, "#resize-note")[0].text)


def test_mnist_controls_are_offered_for_a_gray_model_only(server, colour_server, browser):
    _open(browser, server.url)
    assert all(_css(browser, f"#{name}")[0].is_displayed() for name in ("center", "invert"))
    _open(browser, colour_server.url)
    assert httpx.get(f"{colour_server.url}/api/model").json()["input_shape"][0] == 3
    assert not any(_css(browser, f"#{name}")[0].is_displayed() for name in ("center", "invert"))
    assert _css(browser, "#ink")[0].is_displayed()  # the colour model's own control stays
    _stroke(browser)
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#bars .bar")) > 0)
    assert not _css(browser, "#status.error")


def _click_cell(driver, layer_index: int, channel: int, y: int, x: int) -> None:
    """A real mouse click on cell (channel, y, x) of layer `layer_index`'s map grid (or the input)."""
    from selenium.webdriver.common.action_chains import ActionChains

    selector = "#seen img" if layer_index == 0 else f'#maps .layer[data-index="{layer_index}"] img'
    img = _css(driver, selector)[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    # offsets from the element's centre, in CSS pixels: tile (col, row) of cols, 1-pixel gaps
    dx, dy = driver.execute_script(
        """const [img, layer, c, y, x] = arguments;
        const view = views.get(layer), [, h, w] = view.layer.shape, cols = view.layer.cols;
        const s = img.clientWidth / img.naturalWidth;
        const px = (c % cols) * (w + 1) + x + 0.5, py = Math.floor(c / cols) * (h + 1) + y + 0.5;
        return [px * s - img.clientWidth / 2, py * s - img.clientHeight / 2];""",
        img, layer_index, channel, y, x,
    )  # fmt: skip
    ActionChains(driver).move_to_element_with_offset(img, round(dx), round(dy)).click().perform()


def _text(driver, selector: str) -> str:
    """The text of the first element `selector` finds, read in one step (never stale)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", selector
    )


def _panel_settled(driver, title: str) -> bool:
    return driver.execute_script(
        "const p = document.getElementById('cell-panel');"
        "return !p.hidden && p.dataset.busy === '0' && "
        "document.getElementById('cell-title').textContent.startsWith(arguments[0])",
        title,
    )


def _shot(driver, tmp_path: Path, name: str) -> None:
    """A screenshot of the page with the panel (kept where CNNLAB_SCREENSHOTS points, if set)."""
    import os

    folder = Path(os.environ.get("CNNLAB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    _screenshot_is_not_blank(driver, folder / name)


def test_clicking_a_map_cell_shows_its_arithmetic_and_goes_one_layer_down(
    server, browser, tmp_path
):
    from cnnlab.explain.worked import fmt

    _open(browser, f"{server.url}/?lang=en")
    _stroke(browser)
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#maps .layer img")) > 2)
    drawn = _canvas_png(browser)
    layers = httpx.get(f"{server.url}/api/model").json()["summary"]["layers"]
    pool = next(i for i, row in enumerate(layers, start=1) if row["kind"] == "maxpool")
    conv = pool - 1  # the default model: conv1 then maxpool1

    def api(layer, channel, y, x):
        params = {"layer": layer, "channel": channel, "y": y, "x": x}
        files = {"file": ("d.png", drawn, "image/png")}
        return httpx.post(f"{server.url}/api/explain/cell", params=params, files=files).json()

    _click_cell(browser, pool, 2, 7, 6)
    _wait(browser, lambda d: _panel_settled(d, f"{layers[pool - 1]['name']}[2][7][6]"))
    answer = api(pool, 2, 7, 6)
    total = _css(browser, "#cell-body .cell-total")[0].text
    assert f"total: {fmt(answer['total'])}" in total and "(agrees with torch)" in total
    assert _css(browser, "#cell-body td.chosen")  # the kept value of the max pooling window
    _shot(browser, tmp_path, "cell-pool-en.png")
    # one layer down: a window cell of the pooling opens that conv cell, its own window on the input
    source = answer["steps"][0]["sources"][1][0]
    link = _css(browser, "#cell-body .cell-step.pool td.link")[2]  # row 1, column 0 of 2x2
    link.click()
    name = f"{layers[conv - 1]['name']}[{source['channel']}][{source['y']}][{source['x']}]"
    _wait(browser, lambda d: _panel_settled(d, name))
    below = api(conv, source["channel"], source["y"], source["x"])
    assert f"total: {fmt(below['total'])}" in _css(browser, "#cell-body .cell-total")[0].text
    assert len(_css(browser, "#cell-body .cell-step.window td")) == 27  # window, kernel, products
    assert _css(browser, "#cell-back")[0].is_displayed()
    _shot(browser, tmp_path, "cell-conv-en.png")
    browser.execute_script(
        "const s = document.getElementById('lang'); s.value = 'ko'; s.dispatchEvent(new Event('change'));"
    )
    # the page asks for the cell again in Korean: wait until that answer is drawn and nothing
    # more is pending (the panel is drawn anew from it)
    _wait(
        browser,
        lambda d: (
            _settled(d)
            and _panel_settled(d, name)
            and "torch와 일치" in _text(d, "#cell-body .cell-total")
        ),
    )
    assert "채널" in _text(browser, "#cell-body .cell-step h4")
    _shot(browser, tmp_path, "cell-conv-ko.png")
    _css(browser, "#cell-back")[0].click()
    _wait(browser, lambda d: _panel_settled(d, f"{layers[pool - 1]['name']}[2][7][6]"))
    _shot(browser, tmp_path, "cell-pool-ko.png")
    browser.execute_script(
        "const s = document.getElementById('lang'); s.value = 'en'; s.dispatchEvent(new Event('change'));"
    )
    _css(browser, "#cell-close")[0].click()
    assert not _css(browser, "#cell-panel")[0].is_displayed()
