"""The HTTP API speaks each request's language: `?lang=`, else Accept-Language, else English.

Against real servers on loopback (uvicorn in a thread as `cnnlab serve` runs it, and `cnnlab
serve` itself in a subprocess for the server's own LANG), with real uploads and no mocks:
an English answer holds no Hangul, a Korean one no untranslated English sentence, and
requests in the two languages served at the same time each get their own.
"""

from __future__ import annotations

import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_support import ServerProcess, png_bytes, trained_run
from test_i18n_every_command import _untranslated

from cnnlab.deploy.predict import Predictor
from cnnlab.i18n import _, current_language
from cnnlab.run.folder import Run
from cnnlab.server.app import create_app
from cnnlab.server.language import accepted_language, request_language
from cnnlab.server.limits import Limits

HANGUL = re.compile("[\uac00-\ud7a3]")
MAX_BODY = 50_000
NOT_AN_IMAGE = b"these are my notes, not pixels\n" * 4
KOREAN_BROWSER = {"Accept-Language": "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"}
# Names a Korean message keeps as they are, beyond the command-line check's: file formats and
# other acronyms (PNG, JPEG, JSON, HxW) and media types (multipart/form-data, image/png).
NAMES = re.compile(r"\b[A-Z][A-Za-z]*[A-Z]\b|\b[\w.+-]+/[\w.*+-]+")


def _english_in(message: str) -> list[str]:
    """The untranslated English of a Korean message (the command line's scanner, names aside)."""
    return _untranslated(NAMES.sub(" ", message))


@pytest.mark.parametrize(
    ("query", "header", "language"),
    [
        ("", "", "en"),  # nothing asked: English, the source
        ("lang=ko", "", "ko"),
        ("lang=en", "ko-KR,ko;q=0.9", "en"),  # the query wins
        ("lang=fr", "ko", "ko"),  # a language without a catalogue is passed over
        ("top_k=3&lang=ko_KR", "", "ko"),
        ("", "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("", "en-US,en;q=0.9,ko;q=0.8", "en"),
        ("", "fr-CH, fr;q=0.9, ko;q=0.5, *;q=0.1", "ko"),  # the first one cnnlab speaks
        ("", "en;q=0.2, ko;q=0.8", "ko"),  # by q-value, not by place
        ("", "ko;q=0, en", "en"),  # q=0: not acceptable
        ("", "ko;q=abc", "en"),
        ("", "*", "en"),
        ("", "de", "en"),
    ],
)
def test_a_requests_language(query, header, language):
    assert request_language(query.encode(), header) == language


def test_an_accept_language_naming_no_catalogue_gives_none():
    assert accepted_language("fr, de;q=0.5") is None
    assert accepted_language("") is None


def _language_here() -> dict:
    """A synchronous route, run as FastAPI runs one: in starlette's thread pool."""
    return {
        "language": current_language(),
        "kernel": _("kernel"),
        "thread": threading.current_thread().name,
    }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def server(run_dir):
    from test_server import ThreadServer

    app = create_app(Predictor(Run.open(run_dir), "eager"), Limits(max_body_bytes=MAX_BODY))
    # Added here, not in the app: its routes are all async, so this one shows that a sync
    # endpoint (a thread of starlette's pool) gets the request's language too.
    app.fastapi.add_api_route("/api/test/language", _language_here)  # type: ignore[attr-defined]
    srv = ThreadServer(app)
    yield srv
    srv.stop()


def _good_png() -> bytes:
    picture = np.zeros((28, 28), dtype=np.uint8)
    picture[6:22, 12:16] = 255
    return png_bytes(picture)


# Each error route: (method, path and query, request keywords, status, its English words).
ERRORS = {
    "bad image": (
        "POST", "/api/predict", {"files": {"file": ("notes.png", NOT_AN_IMAGE, "image/png")}},
        400, "notes.png: not an image",
    ),
    "oversized upload": (
        "POST", "/api/predict", {"content": b"\0" * (MAX_BODY + 1),
                                 "headers": {"content-type": "image/png"}},
        413, f"over the limit of {MAX_BODY:,} bytes",
    ),
    "unknown layer": (
        "POST", "/api/explain/cell?layer=conv9",
        {"files": {"file": ("d.png", _good_png(), "image/png")}},
        422, "no layer 'conv9' in this model",
    ),
    "bad parameter": (
        "POST", "/api/predict?top_k=0",
        {"content": _good_png(), "headers": {"content-type": "image/png"}},
        422, "invalid request: top_k: Input should be greater than or equal to 1",
    ),
    "wrong content type": (
        "POST", "/api/predict", {"content": b"hello", "headers": {"content-type": "text/plain"}},
        415, "Content-Type 'text/plain' is not accepted",
    ),
    "empty body": (
        "POST", "/api/predict", {"content": b"", "headers": {"content-type": "image/png"}},
        400, "the image is empty (0 bytes)",
    ),
    "bad JSON": (
        "POST", "/api/predict", {"content": b"{", "headers": {"content-type": "application/json"}},
        400, "the body is not valid JSON",
    ),
    "unknown class": ("GET", "/api/run/confusion/nope/0", {}, 404, "no class 'nope' in this run"),
    "unknown test image": ("GET", "/api/run/image/99999", {}, 404, "no test image 99999"),
    "unknown path": ("GET", "/api/nothing", {}, 404, "Not Found"),
}  # fmt: skip


def _ask(url: str, case: str, query: str = "", headers: dict | None = None) -> httpx.Response:
    method, path, keywords, _status, _words = ERRORS[case]
    keywords = {**keywords, "headers": {**keywords.get("headers", {}), **(headers or {})}}
    separator = "&" if "?" in path else "?"
    target = f"{url}{path}{separator}{query}" if query else f"{url}{path}"
    return httpx.request(method, target, timeout=60, **keywords)


def _is_english(answer: httpx.Response, case: str) -> None:
    status, words = ERRORS[case][3:]
    message = answer.json()["error"]
    assert answer.status_code == status and words in message, (case, message)
    assert not HANGUL.search(answer.text), (case, answer.text)
    assert _english_in(message), message  # the scanner of Korean answers would see it


def _is_korean(answer: httpx.Response, case: str) -> None:
    message = answer.json()["error"]
    assert answer.status_code == ERRORS[case][3], (case, message)
    assert HANGUL.search(message), (case, message)
    assert _english_in(message) == [], (case, message)
    assert set(answer.json()) == {"error", "status"}  # the keys stay English


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_english_unless_the_request_asks(server, case):
    answer = _ask(server.url, case)
    _is_english(answer, case)
    assert answer.headers["content-language"] == "en"
    _is_english(_ask(server.url, case, "lang=en", KOREAN_BROWSER), case)  # the query wins


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_korean_with_lang_ko_or_a_korean_accept_language(server, case):
    for answer in (_ask(server.url, case, "lang=ko"), _ask(server.url, case, "", KOREAN_BROWSER)):
        _is_korean(answer, case)
        assert answer.headers["content-language"] == "ko"
        assert "accept-language" in answer.headers["vary"].lower()  # caches keep them apart


def test_validation_errors_name_the_parameter_in_korean(server):
    answer = httpx.post(
        f"{server.url}/api/predict?top_k=0&invert=sideways&lang=ko",
        content=_good_png(),
        headers={"content-type": "image/png"},
    )
    message = answer.json()["error"]
    assert answer.status_code == 422 and message.startswith("잘못된 요청: "), message
    assert "top_k: 1 이상이어야 합니다" in message and "invert: " in message, message


def test_the_words_the_answers_make_follow_the_request(server):
    english = httpx.get(f"{server.url}/api/model").json()
    korean = httpx.get(f"{server.url}/api/model?lang=ko").json()
    assert english["output"] == "softmax of the model's logits"
    assert korean["output"] == "모델 로짓의 소프트맥스" and HANGUL.search(korean["resize"])
    assert not HANGUL.search(str(english))
    # the summary's notes are analysed in the request's language ('same' padding's arithmetic)
    notes = [note for layer in korean["summary"]["layers"] for note in layer["notes"]]
    assert notes and all(HANGUL.search(note) for note in notes), notes
    assert korean["classes"] == english["classes"]  # names and numbers as they are
    assert korean["summary"]["total_params"] == english["summary"]["total_params"]
    files = {"file": ("d.png", _good_png(), "image/png")}
    maps = httpx.post(f"{server.url}/api/featuremaps?lang=ko", files=files).json()
    assert maps["scaling"] == "채널마다 최솟값 -> 검정, 최댓값 -> 흰색"


def test_the_reports_words_follow_the_request_and_are_kept_per_language(server):
    """Answers the report keeps (patches, projector) are kept per language: English, then
    Korean, then English again each get their own words."""
    patches = "/api/run/patches?layer=conv1&top=2&channels=64"  # conv1 has fewer: a note
    answers = {}
    for language in ("en", "ko", "en"):
        for path in (patches, "/api/run/embedding", "/api/run/confusion"):
            separator = "&" if "?" in path else "?"
            answer = httpx.get(f"{server.url}{path}{separator}lang={language}", timeout=60)
            assert answer.status_code == 200, answer.text
            answers[language, path.split("?")[0]] = answer.json()
    english, korean = answers["en", "/api/run/patches"], answers["ko", "/api/run/patches"]
    assert english["notes"] == ["conv1 has 32 channels; all are shown"]
    assert korean["notes"] == ["conv1의 채널은 32개뿐이라 모두 보여 줍니다"]
    assert korean["channels"] == english["channels"]  # the numbers are the same
    assert answers["en", "/api/run/embedding"]["axes"][0].endswith("of the variance)")
    assert "분산" in answers["ko", "/api/run/embedding"]["axes"][0]
    assert answers["ko", "/api/run/confusion"]["cell_order"].startswith("손실이 큰 순서")
    assert (
        answers["ko", "/api/run/confusion"]["matrix"]
        == answers["en", "/api/run/confusion"]["matrix"]
    )
    assert not HANGUL.search(str(answers["en", "/api/run/confusion"]))


def test_a_synchronous_endpoint_gets_the_requests_language_in_its_thread(server):
    korean = httpx.get(f"{server.url}/api/test/language?lang=ko").json()
    english = httpx.get(f"{server.url}/api/test/language", headers={"Accept-Language": "en"})
    assert korean["language"] == "ko" and korean["kernel"] == "커널"
    assert english.json()["language"] == "en" and english.json()["kernel"] == "kernel"
    assert korean["thread"] != server.thread.name  # not the event loop's: a pool thread


def test_concurrent_requests_in_both_languages_each_get_their_own(server):
    cases = ("bad image", "unknown layer", "bad parameter", "unknown path", "bad image")
    asks = [(case, language) for _round in range(6) for case in cases for language in ("ko", "en")]

    def ask(item: tuple[str, str]) -> tuple[str, str, httpx.Response]:
        case, language = item
        return case, language, _ask(server.url, case, f"lang={language}")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, asks))
    for case, language, answer in answers:
        (_is_korean if language == "ko" else _is_english)(answer, case)


def test_a_request_keeps_its_language_while_others_are_served(server):
    """A Korean upload held half-sent while English requests come and go (and the reverse):
    its answer, made after theirs, is still in its own language."""
    for slow, fast in (("ko", "en"), ("en", "ko")):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = (
            f"POST /api/predict?lang={slow} HTTP/1.1\r\nHost: test\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(NOT_AN_IMAGE)}\r\n\r\n"
        )
        sock.sendall(head.encode() + NOT_AN_IMAGE[:10])
        for _round in range(4):
            answer = _ask(server.url, "bad image", f"lang={fast}")
            (_is_korean if fast == "ko" else _is_english)(answer, "bad image")
        sock.sendall(NOT_AN_IMAGE[10:])
        reply = b""
        while b"}" not in reply:
            reply += sock.recv(65536)
        sock.close()
        body = reply.split(b"\r\n\r\n", 1)[1].decode()
        assert b" 400 " in reply.split(b"\r\n", 1)[0]
        assert bool(HANGUL.search(body)) == (slow == "ko"), body


@pytest.mark.slow  # `cnnlab serve` in a subprocess (imports torch): a few seconds
def test_the_servers_own_lang_does_not_choose_the_apis_language(run_dir, tmp_path, monkeypatch):
    """LANG=ko_KR is for what `cnnlab serve` prints; an API request that names no language is
    answered in English, one that asks in Korean."""
    monkeypatch.setenv("LANG", "ko_KR.UTF-8")
    srv = ServerProcess(run_dir, tmp_path / "serve.log", "--max-body-mb", "1")
    try:
        assert "제공합니다" in srv.output()  # the terminal speaks the server's LANG
        english = _ask(srv.url, "bad image")
        _is_english(english, "bad image")
        english_model = httpx.get(f"{srv.url}/api/model").json()
        assert english_model["engine_notes"] and not HANGUL.search(str(english_model))
        notes = httpx.get(f"{srv.url}/api/model?lang=ko").json()["engine_notes"]  # no export
        assert notes and all(HANGUL.search(note) for note in notes), notes
        _is_korean(_ask(srv.url, "bad image", "lang=ko"), "bad image")
        _is_korean(_ask(srv.url, "unknown layer", "", KOREAN_BROWSER), "unknown layer")
    finally:
        srv.stop()
