"""Every error answer of the server: `ApiError`, the one JSON shape, and which status each failure gets.

A client's mistake (bad image, bad parameters, wrong Content-Type) is a 4xx naming the
problem and the fix; a damaged run folder (`CheckpointError`) or a bug of ours is a 500.
No answer ever carries a traceback: bugs are logged with theirs, server-side. Nor does it name
a path of the server's disk (`without_paths`): a server on 0.0.0.0 would show its layout to
anyone; the log keeps the whole message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnlab.errors import CheckpointError, CnnlabError

log = logging.getLogger("cnnlab.server")
# An absolute path (not inside a word or a relative path, not one of our URLs), up to a space,
# quote, bracket or ':' (messages read 'PATH: what is wrong').
_ABSOLUTE = re.compile(r"(?<![\w.~/-])/(?!api/|static/)[^\s'\"`,;:()\[\]{}<>]+")


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
    response = error_response(error.status_code, str(error.detail))
    for key, value in (error.headers or {}).items():
        response.headers[key] = value
    return response


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Bad query parameters: 422 listing each one and what is wrong with it."""
    problems = [
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg', '')}"
        for e in error.errors()
    ]
    return error_response(422, "invalid request: " + "; ".join(problems))


async def checkpoint_error(request: Request, error: CheckpointError) -> JSONResponse:
    """The served run folder is damaged: the server's fault, not the request's, so 500."""
    log.error("run folder fault on %s %s: %s", request.method, request.url.path, error)
    return error_response(500, f"the server cannot use its model: {error}")


async def cnnlab_error(request: Request, error: CnnlabError) -> JSONResponse:
    """Any other cnnlab error comes from the request's content: 400."""
    return error_response(400, str(error))


async def last_resort(request: Request, error: Exception) -> JSONResponse:
    """A bug of ours: logged with its traceback here, never sent."""
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal server error; the server log has the details")


def add_error_handlers(api: FastAPI) -> None:
    """Every error as JSON {"error", "status"}; Starlette picks the handler of the nearest class."""
    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(RequestValidationError, validation_error)
    api.add_exception_handler(CheckpointError, checkpoint_error)
    api.add_exception_handler(CnnlabError, cnnlab_error)
    api.add_exception_handler(Exception, last_resort)
