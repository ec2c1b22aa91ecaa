"""Each request's language: `?lang=en|ko`, else the Accept-Language header, else English.

`RequestLanguage` is the outermost ASGI middleware: it reads the request's language before
anything answers (the body limit's 413 and the Guard's 408/503/504 speak it too) and sets it
as cnnlab.i18n's context variable for the whole request, so that every `_` called while
serving it (routes, error handlers, library code, the worker threads the request's context
is copied into) speaks it, whatever a concurrent request speaks.

The server's own LANG does not matter here: an HTTP API answers by what the request says, so
`curl` gets English unless it asks (`?lang=ko`, or `Accept-Language: ko`). LANG (or `--lang`)
is for what `cnnlab serve` prints on its terminal.

Answers under /api/ say their language (`Content-Language`) and that it came from the header
(`Vary: Accept-Language`), so a cache does not hand one language's answer to another.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.i18n import SOURCE_LANGUAGE, normalize_language, using_language


def accepted_language(header: str) -> str | None:
    """The language of an Accept-Language header that cnnlab speaks, the first by q-value:
    'ko-KR,ko;q=0.9,en;q=0.8' -> 'ko', 'fr, en;q=0.5' -> 'en'; None when it names none."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        tag, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _equals, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a q we cannot read: not a language asked for
        language = normalize_language(tag) if tag != "*" else None
        if language and math.isfinite(weight) and weight > 0:  # q=0: "not this one"
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else None


def request_language(query_string: bytes, accept_language: str = "") -> str:
    """`lang` from the query (en or ko; another value is passed over), else the header's, else
    the source language, English."""
    for value in parse_qs(query_string.decode("latin-1")).get("lang", []):
        language = normalize_language(value)
        if language:
            return language
    return accepted_language(accept_language) or SOURCE_LANGUAGE


def scope_language(scope: Scope) -> str:
    """The language of one HTTP request (its ASGI scope)."""
    header = b", ".join(v for k, v in scope.get("headers", []) if k == b"accept-language")
    return request_language(scope.get("query_string", b""), header.decode("latin-1"))


class RequestLanguage:
    """Serves each HTTP request in its language (`scope_language`), set with `using_language`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        language = scope_language(scope)
        api = scope["path"].startswith("/api/")

        async def send_saying_language(message: Message) -> None:
            if api and message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Language"] = language
                headers.add_vary_header("Accept-Language")
            await send(message)

        with using_language(language):
            await self.app(scope, receive, send_saying_language)
