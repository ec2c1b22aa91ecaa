"""The pages' language switch: every marked label has its Korean, and in headless Chromium the
switch, ?lang=ko and the remembered choice show Korean on the drawing page and on /run."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from serve_support import ServerProcess, trained_run
from test_page import WAIT_S, browser  # noqa: F401  (the page tests' Chromium, and their skip)

from cnnlab.server.app import STATIC_DIR

HANGUL = re.compile("[\uac00-\ud7a3]")
PAGES = ("index.html", "run.html")
# One "English": "Korean" entry of i18n.js's KO (either string may use \u escapes).
ENTRY = re.compile(r'^\s*"((?:[^"\\]|\\.)*)":\s*"((?:[^"\\]|\\.)*)",?$', re.MULTILINE)


def korean_dictionary() -> dict[str, str]:
    """i18n.js's KO, read as the browser reads it (the string escapes decoded)."""
    script = (STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    body = script[script.index("const KO = {") : script.index("\n};")]
    one_line = re.sub(r":\s*\n\s*", ": ", body)  # long entries put the Korean on the next line
    return {json.loads(f'"{k}"'): json.loads(f'"{v}"') for k, v in ENTRY.findall(one_line)}


class MarkedText(HTMLParser):
    """The text of each data-i18n element, white space squeezed as i18n.js squeezes it."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._open: list[list[str]] = []  # one buffer per open marked element

    def handle_starttag(self, tag, attrs):
        if "data-i18n" in dict(attrs):
            self._open.append([])

    def handle_endtag(self, tag):
        if self._open and tag in ("p", "span", "h2", "button", "u", "a", "figcaption"):
            self.texts.append(" ".join("".join(self._open.pop()).split()))

    def handle_data(self, data):
        for buffer in self._open:
            buffer.append(data)


def marked_texts(page: str) -> list[str]:
    parser = MarkedText()
    parser.feed((STATIC_DIR / page).read_text(encoding="utf-8"))
    return parser.texts


@pytest.mark.parametrize("page", PAGES)
def test_every_marked_label_has_a_korean_translation(page):
    korean = korean_dictionary()
    texts = marked_texts(page)
    assert len(texts) >= 8
    for text in texts:
        assert text in korean, f"{page}: no Korean for {text!r} in i18n.js"
        assert HANGUL.search(korean[text]), text


@pytest.mark.parametrize("page", PAGES)
def test_each_page_has_the_switch_and_loads_the_dictionary_first(page):
    html = (STATIC_DIR / page).read_text(encoding="utf-8")
    assert '<select id="lang"' in html and 'value="ko"' in html
    assert html.index("/static/i18n.js") < html.index(
        '<script src="/static/', html.index("i18n.js") + 1
    )
    assert "http://" not in html and "https://" not in html  # offline: nothing from elsewhere


# --- in headless Chromium -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = trained_run(tmp_path_factory)
    srv = ServerProcess(run, run.parent / "serve-i18n.log")
    yield srv
    srv.stop()


def _wait(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(condition)


def _text(driver, selector: str) -> str:
    return driver.execute_script(f"return document.querySelector({selector!r}).textContent")


@pytest.mark.browser
@pytest.mark.slow
def test_switching_to_korean_shows_korean_on_the_drawing_page_and_on_run(server, browser):  # noqa: F811
    browser.get(f"{server.url}/?lang=en")  # the English page, whatever the browser's language
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelectorAll('#summary th').length") > 0,
    )
    assert _text(browser, "#output-panel h2") == "Prediction"
    assert _text(browser, "#summary th:nth-child(2)") == "layer"
    browser.execute_script(
        "const s = document.getElementById('lang'); s.value = 'ko';"
        "s.dispatchEvent(new Event('change'));"
    )
    assert _text(browser, "#output-panel h2") == "예측"
    assert _text(browser, "#clear") == "지우기"
    assert _text(browser, "#summary th:nth-child(2)") == "층"  # drawn by app.js, redrawn
    assert "입력" in _text(browser, "#model-line")  # the model line app.js wrote, in Korean
    assert browser.execute_script("return document.documentElement.lang") == "ko"
    assert "lang=ko" in browser.current_url  # the address says what is shown
    # remembered: /run (no ?lang) opens in Korean
    browser.get(f"{server.url}/run")
    assert _text(browser, "#confusion-panel h2") == "혼동 행렬"
    assert _text(browser, "#curves-panel h2") == "학습 곡선"
    assert browser.execute_script("return document.getElementById('lang').value") == "ko"
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelectorAll('#curves svg').length"),
    )
    assert "손실" in _text(browser, "#curves") and "에폭" in _text(browser, "#curves")
    # and back: ?lang=en wins over the remembered choice
    browser.get(f"{server.url}/run?lang=en")
    assert _text(browser, "#confusion-panel h2") == "Confusion matrix"
    assert not HANGUL.search(_text(browser, "#filters-panel"))
