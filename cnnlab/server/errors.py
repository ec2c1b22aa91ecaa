"""Every error answer of the server: `ApiError`, the one JSON shape, and which status each failure gets.

A client's mistake (bad image, bad parameters, wrong Content-Type) is a 4xx naming the
problem and the fix; a damaged run folder (`CheckpointError`) or a bug of ours is a 500.
No answer ever carries a traceback: bugs are logged with theirs, server-side. Nor does it name
a path of the server's disk (`without_paths`): a server on 0.0.0.0 would show its layout to
anyone; the log keeps the whole message.

Every message is in the request's language (`language.py`): ours through `_`, the library's
already (it calls `_` while serving the request), Starlette's few status phrases looked up
in the catalogue, FastAPI's validation problems rewritten from their type (`VALIDATION`).
The JSON keys and the status stay as they are.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.i18n import N_, SOURCE_LANGUAGE, _, current_language

log = logging.getLogger("cnnlab.server")
# An absolute path (not inside a word or a relative path, not one of our URLs), up to a space,
# quote, bracket or ':' (messages read 'PATH: what is wrong').
_ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?!api/|static/)[^\s'\"`,;:()\[\]{}<>]+")
# Starlette's own details (its 404 and 405), translated where the catalogue has them.
HTTP_PHRASES = (N_("Not Found"), N_("Method Not Allowed"))
# FastAPI's (pydantic's) validation problems by type, with the fields of its `ctx`; English
# keeps pydantic's own words, another language these (an unknown type: pydantic's words).
VALIDATION = {
    "missing": N_("the parameter is required"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "float_parsing": N_("must be a number"),
    "bool_parsing": N_("must be true or false"),
    "greater_than_equal": N_("must be at least {ge}"),
    "less_than_equal": N_("must be at most {le}"),
    "greater_than": N_("must be greater than {gt}"),
    "less_than": N_("must be less than {lt}"),
    "string_pattern_mismatch": N_("must match {pattern}"),
    "string_too_long": N_("must be at most {max_length} characters long"),
}


def without_paths(text: str) -> str:
    """`text` with each absolute path cut to its last part: '/srv/runs/a/model.json' -> 'model.json'.

    The file is still named (the fix needs it), not where it lies on the server.
    """
    return _ABSOLUTE.sub(lambda m: m.group().rstrip("/").rsplit("/", 1)[-1] or "/", text)


class ApiError(Exception):
    """A request the server refuses: HTTP status and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    """The one shape of every error answer: {"error": message, "status": code}; no paths."""
    body = {"error": without_paths(message), "status": status, **extra}
    return JSONResponse(body, status_code=status)


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    """An ApiError as its own status and message."""
    return error_response(error.status, error.message)


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Starlette's 404/405/... as JSON, keeping its headers (e.g. Allow)."""
    detail = str(error.detail)
    response = error_response(error.status_code, _(detail) if detail in HTTP_PHRASES else detail)
    for key, value in (error.headers or {}).items():
        response.headers[key] = value
    return response


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Bad query parameters: 422 listing each one and what is wrong with it."""
    problems = "; ".join(problem(e) for e in error.errors())
    return error_response(422, _("invalid request: {problems}").format(problems=problems))


def problem(error: dict[str, Any]) -> str:
    """'top_k: Input should be ...' for one of FastAPI's validation errors, the words in the
    request's language (pydantic's own in English)."""
    name = ".".join(str(part) for part in error.get("loc", ()) if part != "query")
    template = VALIDATION.get(error.get("type", ""))
    what = error.get("msg", "")
    if template and current_language() != SOURCE_LANGUAGE:
        with contextlib.suppress(KeyError, IndexError):  # a ctx without the field: pydantic's
            what = _(template).format(**error.get("ctx", {}))
    return f"{name}: {what}"


async def checkpoint_error(request: Request, error: CheckpointError) -> JSONResponse:
    """The served run folder is damaged: the server's fault, not the request's, so 500."""
    log.error("run folder fault on %s %s: %s", request.method, request.url.path, error)
    return error_response(500, _("the server cannot use its model: {error}").format(error=error))


async def cnnlab_error(request: Request, error: CnnlabError) -> JSONResponse:
    """Any other cnnlab error comes from the request's content: 400."""
    return error_response(400, str(error))


async def last_resort(request: Request, error: Exception) -> JSONResponse:
    """A bug of ours: logged with its traceback here, never sent."""
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, _("internal server error; the server log has the details"))


def add_error_handlers(api: FastAPI) -> None:
    """Every error as JSON {"error", "status"}; Starlette picks the handler of the nearest class."""
    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(CheckpointError, checkpoint_error)
    api.add_exception_handler(CnnlabError, cnnlab_error)
    api.add_exception_handler(Exception, last_resort)
