"""The pages' language switch: every text a page shows comes from the one gettext catalogue
(cnnlab/server/page_text.py lists them, the .po translates them, GET /api/i18n.js serves them),
and in headless Chromium the switch, ?lang=ko and the remembered choice show Korean on the
drawing page and on /run."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from serve_support import ServerProcess, trained_run
from test_page import WAIT_S, browser  # noqa: F401  (the page tests' Chromium, and their skip)

from cnnlab.server.app import STATIC_DIR
from cnnlab.server.page_text import PAGE_TEXT, script

HANGUL = re.compile("[\uac00-\ud7a3]")
PAGES = ("index.html", "run.html")
SCRIPTS = ("app.js", "cell.js", "run.js")  # i18n.js defines tr; these call it
# The first argument of tr("..."), trf('...', {...}) or N_("...") when it is a string literal.
MARKED = re.compile(r"""\b(?:tr|trf|N_)\(\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')""")
# ... and when it is not: a variable must hold an N_-marked constant (these do).
UNMARKED = re.compile(r"""\btrf?\(\s*(?![\s"'])([^,)]*)""")
READS_MARKED_CONSTANTS = {
    "POOL_NAMES[p.mode]",
    "GLOBAL_POOL_HEADINGS[p.mode]",
    "label",
    "chart.title",
}


def served_dictionaries() -> dict[str, dict[str, str]]:
    """What GET /api/i18n.js defines (DICTIONARIES_FROM_SERVER), read as the browser reads it."""
    text = script()
    return json.loads(text[text.index("= ") + 2 : text.rindex(";")])


def korean_dictionary() -> dict[str, str]:
    """The Korean the pages get: the served dictionary, made from the gettext catalogue."""
    return served_dictionaries()["ko"]


class MarkedText(HTMLParser):
    """The text of each data-i18n element (and the <title>), white space squeezed as i18n.js
    squeezes it, and each data-i18n-title tooltip."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._open: list[list[str]] = []  # one buffer per open marked element

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "data-i18n" in attributes or tag == "title":
            self._open.append([])
        if "data-i18n-title" in attributes:
            self.texts.append(" ".join(attributes["title"].split()))

    def handle_endtag(self, tag):
        marked = ("p", "span", "h2", "button", "u", "a", "figcaption", "option", "title")
        if self._open and tag in marked:
            self.texts.append(" ".join("".join(self._open.pop()).split()))

    def handle_data(self, data):
        for buffer in self._open:
            buffer.append(data)


def marked_texts(page: str) -> list[str]:
    parser = MarkedText()
    parser.feed((STATIC_DIR / page).read_text(encoding="utf-8"))
    return parser.texts


def _literal(token: str) -> str:
    """A JS string literal's text (either quote; \\u escapes decoded as the browser does)."""
    inner = token[1:-1]
    if token[0] == "'":
        inner = inner.replace("\\'", "'").replace('"', '\\"')
    return json.loads(f'"{inner}"')


def script_texts(name: str) -> list[str]:
    return [_literal(t) for t in MARKED.findall((STATIC_DIR / name).read_text(encoding="utf-8"))]


def all_page_texts() -> set[str]:
    return {t for page in PAGES for t in marked_texts(page)} | {
        t for name in SCRIPTS for t in script_texts(name)
    }


@pytest.mark.parametrize("page", PAGES)
def test_every_marked_label_has_a_korean_translation(page):
    korean = korean_dictionary()
    texts = marked_texts(page)
    assert len(texts) >= 8
    for text in texts:
        assert text in PAGE_TEXT, f"{page}: {text!r} is not in cnnlab/server/page_text.py"
        assert text in korean, f"{page}: no Korean for {text!r} in the catalogue"
        assert HANGUL.search(korean[text]), text


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_text_a_script_translates_has_a_korean_translation(name):
    korean = korean_dictionary()
    texts = script_texts(name)
    assert len(texts) >= 8
    for text in texts:
        assert text in PAGE_TEXT, f"{name}: {text!r} is not in cnnlab/server/page_text.py"
        assert text in korean, f"{name}: no Korean for {text!r} in the catalogue"
        assert HANGUL.search(korean[text]), text
    # tr(x) of a variable: x holds a constant marked N_("...") (so the test above sees it)
    unmarked = set(UNMARKED.findall((STATIC_DIR / name).read_text(encoding="utf-8")))
    assert unmarked <= READS_MARKED_CONSTANTS, name


def test_the_list_holds_only_what_the_pages_show():
    """page_text.py is the pages' list, not a second catalogue: no entry a page does not use."""
    assert set(PAGE_TEXT) == all_page_texts()


def test_the_pages_keep_no_dictionary_of_their_own():
    """The Korean is in the catalogue only: i18n.js reads the server's DICTIONARIES_FROM_SERVER."""
    source = (STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    assert not HANGUL.search(source) and "DICTIONARIES_FROM_SERVER" in source
    served = served_dictionaries()
    assert set(served) == {"ko"} and len(served["ko"]) == len(PAGE_TEXT)


@pytest.mark.parametrize("page", PAGES)
def test_each_page_has_the_switch_and_loads_the_dictionary_first(page):
    html = (STATIC_DIR / page).read_text(encoding="utf-8")
    assert '<select id="lang"' in html and 'value="ko"' in html
    # the dictionary, then i18n.js, then the page's scripts: each there when the next runs
    assert html.index('<script src="/api/i18n.js">') < html.index('<script src="/static/i18n.js">')
    assert html.index("/static/i18n.js") < html.index(
        '<script src="/static/', html.index("/static/i18n.js") + 1
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
    assert "손실" in _text(browser, "#curves") and "에포크" in _text(browser, "#curves")
    # and back: ?lang=en wins over the remembered choice
    browser.get(f"{server.url}/run?lang=en")
    assert _text(browser, "#confusion-panel h2") == "Confusion matrix"
    assert not HANGUL.search(_text(browser, "#filters-panel"))


@pytest.mark.browser
@pytest.mark.slow
def test_the_korean_drawing_page_after_drawing_shows_the_scripts_text_in_korean(
    server,
    browser,  # noqa: F811
    tmp_path,
):
    """What app.js writes after a drawing (status, Grad-CAM note, map headings, the invert
    choices) in Korean, and in English again after the switch; the server's own phrases aside."""
    from test_page import _css, _open, _settled, _shot, _stroke

    _open(browser, f"{server.url}/?lang=ko")
    _stroke(browser)
    _wait(browser, lambda d: _settled(d) and len(_css(d, "#maps .layer img")) > 2)
    _wait(browser, lambda d: _text(d, "#cam-note"))
    assert "서버에서" in _text(browser, "#status") and "on the server" not in _text(
        browser, "#status"
    )
    assert "에 대한 Grad-CAM" in _text(browser, "#cam-note")
    assert "blue no evidence" not in _text(browser, "#cam-note")
    choices = browser.execute_script(
        "return [...document.querySelectorAll('#invert option')].map(o => [o.value, o.text])"
    )
    assert choices == [["no", "아니오"], ["auto", "자동"], ["yes", "예"]]
    assert browser.execute_script("return document.getElementById('invert').value") == "no"
    headings = _text(browser, "#maps")
    assert (
        "channels)" not in headings
    )  # (first 16 channels) where a layer has more: (처음 16개 채널)
    _shot(browser, tmp_path, "draw-ko.png")
    browser.execute_script(
        "const s = document.getElementById('lang'); s.value = 'en'; s.dispatchEvent(new Event('change'));"
    )
    assert "ms on the server" in _text(browser, "#status")
    assert "blue no evidence, red the most." in _text(browser, "#cam-note")
    assert not HANGUL.search(_text(browser, "#maps")) and not HANGUL.search(
        _text(browser, "#invert")
    )
    if "처음" in headings:
        assert "channels)" in _text(browser, "#maps")
    # and the run report in Korean: the lines run.js writes from the answers
    browser.get(f"{server.url}/run?lang=ko")
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('#scores-panel').dataset.state"),
    )
    assert "균형 정확도" in _text(browser, "#scores-line")
    assert "정확도" in _text(browser, "#confusion-line")
    _wait(
        browser,
        lambda d: d.execute_script("return document.querySelector('#filters-panel').dataset.state"),
    )
    assert "가중치" in _text(browser, "#filters-line")
    _shot(browser, tmp_path, "run-ko.png")


@pytest.mark.browser
@pytest.mark.slow
def test_the_korean_page_shows_the_servers_error_for_a_bad_upload_in_korean(
    server,
    browser,  # noqa: F811
    tmp_path,
):
    """The page asks every API call in its language (?lang=), so what the server says about
    an upload it cannot read is Korean on the Korean page, and English again after a switch
    (the page asks again)."""
    from test_page import _css, _open, _settled

    notes = tmp_path / "notes.png"
    notes.write_bytes(b"these are my notes, not pixels\n" * 4)
    _open(browser, f"{server.url}/?lang=ko")
    _css(browser, "#file-input")[0].send_keys(str(notes))
    _wait(browser, lambda d: _settled(d) and _css(d, "#status.error"))
    status = _text(browser, "#status")
    assert "notes.png" in status and HANGUL.search(status), status
    assert "not an image" not in status and "cannot read" not in status, status
    browser.execute_script(
        "const s = document.getElementById('lang'); s.value = 'en'; s.dispatchEvent(new Event('change'));"
    )
    _wait(browser, lambda d: "not an image" in _text(d, "#status"))
    assert not HANGUL.search(_text(browser, "#status"))
