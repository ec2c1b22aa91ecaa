"""The HTTP server: a page to draw on, and its JSON twin, over one `Predictor`.

Routes: GET / (the page), GET /api/model, POST /api/predict, POST /api/featuremaps,
GET /healthz, GET /readyz, and FastAPI's /docs and /openapi.json.

Images arrive as multipart (field `file`), as raw image bytes (Content-Type image/*),
or as JSON {"pixels": HxW or CxHxW numbers 0..255}; all take the same path as
`cnnlab predict`: load_image (allowlisted formats, pixel limit checked from the header
before decoding), resized to the model's input on the server, normalised as in training.

Limits, as ASGI middleware around the app (outermost first):
  BodyLimit  counts body bytes as they arrive (Content-Length or chunked): 413 JSON
  Guard      at most `max_in_flight` requests at once (else 503 JSON, Retry-After) and
             `timeout_s` per request (else 504 JSON); /healthz and /readyz are exempt
Every error is JSON {"error": message, "status": code}; a bad request gets a 4xx,
never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab import __version__
from cnnlab.deploy.predict import Predictor, Preprocess, pixels_to_png
from cnnlab.errors import CnnlabError, ConfigError, DataError
from cnnlab.evaluate.featuremaps import feature_maps
from cnnlab.run.folder import Run
from cnnlab.server.maps import MAX_CHANNELS, input_json, layer_json
from cnnlab.spec.summary import summary_json

STATIC_DIR = Path(__file__).parent / "static"
EXEMPT_PATHS = ("/healthz", "/readyz")  # answered even when the server is busy
log = logging.getLogger("cnnlab.server")


@dataclass(frozen=True)
class Limits:
    """What one request may cost."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_in_flight: int = 64
    timeout_s: float = 10.0
    workers: int = max(2, os.cpu_count() or 2)  # threads decoding and running the model at once


class ApiError(Exception):
    """A request the server refuses: HTTP status and a message naming the problem and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    """The one shape of every error answer."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


async def _send_json(send: Send, status: int, payload: dict, headers: dict | None = None) -> None:
    """A whole JSON response sent from middleware (no app involved)."""
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# --- middleware -------------------------------------------------------------------------


class _BodyTooLarge(ApiError):
    """Raised from `receive` once the body passes the limit; an ApiError, so never logged as a bug."""

    def __init__(self) -> None:
        super().__init__(413, "request body is over the limit")


class BodyLimit:
    """413 JSON for a request body over `limit` bytes, counted as it streams in.

    A Content-Length over the limit is refused before reading; without one (chunked),
    bytes are counted per message and the request is cut off once past the limit,
    whatever the app was doing; its own answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    def _message(self) -> dict:
        return {
            "error": f"request body is over the limit of {self.limit:,} bytes; "
            "send a smaller image (or start the server with a larger --max-body-mb)",
            "status": 413,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _send_json(send, 413, self._message())
            return
        received, exceeded, started = 0, False, False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_json(send, 413, self._message())


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class Guard:
    """At most `max_in_flight` requests at once (503 + Retry-After) and `timeout_s` each (504)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, timeout_s: float):
        self.app = app
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await _send_json(
                send,
                503,
                {
                    "error": f"the server is busy ({self.in_flight} requests in flight, the limit "
                    f"is {self.max_in_flight}); retry in a second",
                    "status": 503,
                },
                {"Retry-After": "1"},
            )
            return
        self.in_flight += 1
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning(
                "%s %s took over %.1fs: answered 504",
                scope["method"],
                scope["path"],
                self.timeout_s,
            )
            if not started:
                await _send_json(
                    send,
                    504,
                    {
                        "error": f"the request took longer than {self.timeout_s:g} s and was "
                        "stopped; send a smaller image, or send it faster",
                        "status": 504,
                    },
                )
        finally:
            self.in_flight -= 1


# --- response models (for /docs) -----------------------------------------------------------


class ErrorBody(BaseModel):
    error: str
    status: int


IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "description": "An image as multipart field `file`, raw image bytes (image/*), or JSON pixels",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "description": "HxW (grayscale) or CxHxW (C = 1 or 3) numbers 0..255",
                            "items": {},
                        }
                    },
                    "required": ["pixels"],
                },
                "example": {"pixels": [[0, 255, 0], [255, 255, 255], [0, 255, 0]]},
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
ERRORS = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "the image cannot be read (damaged, not an image, too many pixels, empty)"),
        (413, "the body is over the size limit"),
        (415, "the Content-Type is not multipart/form-data, application/json or image/*"),
        (422, "invalid parameters or JSON (e.g. a pixel array of the wrong shape)"),
        (503, "too many requests in flight; retry after Retry-After seconds"),
        (504, "the request took longer than the time limit"),
    )
}


# --- the app -------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def model_info(predictor: Predictor, limits: Limits) -> dict[str, Any]:
    """Everything the page shows about the model (GET /api/model)."""
    run = predictor.run
    dark = sum(run.mean) / len(run.mean) < 0.5
    return _finite(
        {
            "run": run.name,
            "spec": run.spec.text(),
            "input_shape": list(run.input_shape),
            "classes": run.classes,
            "mean": list(run.mean),
            "std": list(run.std),
            "data": run.meta.get("data", ""),
            "metrics": run.metrics,
            "summary": summary_json(predictor.model.report),
            "engine": predictor.choice.name,
            "engine_latency_us": predictor.choice.latency_us,
            "engine_notes": predictor.choice.notes,
            "output": "softmax of the model's logits",
            # The page draws in the training data's polarity: white on black for MNIST-like data.
            "drawing": {
                "background": "black" if dark else "white",
                "ink": "white" if dark else "black",
            },
            "resize": "on the server: the canvas is sent as a PNG and resized with LANCZOS, "
            "exactly as uploaded files are",
            "limits": {
                "max_body_bytes": limits.max_body_bytes,
                "max_in_flight": limits.max_in_flight,
                "timeout_s": limits.timeout_s,
            },
            "cnnlab_version": __version__,
        }
    )


def create_app(predictor: Predictor, limits: Limits = Limits()) -> ASGIApp:
    """The FastAPI app wrapped in the body limit and the in-flight/time guard."""
    api = FastAPI(
        title="cnnlab",
        version=__version__,
        description=f"Predictions and feature maps of run `{predictor.run.name}` "
        f"({predictor.run.spec.text()}).",
    )
    worker = anyio.CapacityLimiter(limits.workers)
    info = model_info(predictor, limits)
    guard_ref: dict[str, Guard] = {}

    async def in_worker(fn, *args):
        # Abandon on cancel, so the time limit answers at once even while a decode runs.
        return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=worker)

    _add_error_handlers(api)

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @api.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", summary="ready for requests (503 while at the in-flight limit)")
    async def readyz() -> JSONResponse:
        guard = guard_ref["guard"]
        busy = guard.in_flight >= guard.max_in_flight
        return JSONResponse(
            {
                "status": "busy" if busy else "ready",
                "in_flight": guard.in_flight,
                "max_in_flight": guard.max_in_flight,
                "engine": predictor.choice.name,
            },
            status_code=503 if busy else 200,
        )

    @api.get("/api/model", summary="the model: spec, per-layer summary, classes, input, metrics")
    async def model() -> dict[str, Any]:
        return info

    @api.post(
        "/api/predict",
        summary="class probabilities for one image",
        openapi_extra=IMAGE_BODY,
        responses=ERRORS,
    )
    async def predict(
        request: Request,
        top_k: int = Query(5, ge=1, le=1000, description="classes in top_k"),
        invert: str = Query("no", pattern="^(no|yes|auto)$", description="invert dark-on-light"),
        center: bool = Query(False, description="MNIST-style crop, fit and centring"),
    ) -> dict[str, Any]:
        started = time.perf_counter()
        body, kind, name = await _read_body(request)

        def compute() -> tuple[torch.Tensor, torch.Tensor]:  # one trip to a worker thread
            image = _decode(predictor, body, kind, name, Preprocess(invert, center))
            return image, predictor.probabilities(image[None])[0]

        image, probabilities = await in_worker(compute)
        top = predictor.top_k(probabilities, top_k)
        return {
            "prediction": top[0]["class"],
            "probability": top[0]["probability"],
            "top_k": top,
            "probabilities": dict(zip(predictor.classes, probabilities.tolist(), strict=True)),
            "engine": predictor.choice.name,
            "input_shape": list(image.shape),
            "milliseconds": round((time.perf_counter() - started) * 1000, 3),
        }

    @api.post(
        "/api/featuremaps",
        summary="every layer's output for one image: PNG grids (per-channel scaled) or numbers",
        openapi_extra=IMAGE_BODY,
        responses=ERRORS,
    )
    async def featuremaps(
        request: Request,
        invert: str = Query("no", pattern="^(no|yes|auto)$"),
        center: bool = Query(False),
        max_channels: int = Query(MAX_CHANNELS, ge=1, le=1024, description="channels per layer"),
    ) -> dict[str, Any]:
        body, kind, name = await _read_body(request)

        def compute() -> dict[str, Any]:
            image = _decode(predictor, body, kind, name, Preprocess(invert, center))
            maps = feature_maps(predictor.model, predictor.normalized(image[None]))
            logits = maps[predictor.model.logit_layers - 1].values
            probabilities = torch.softmax(logits.view(1, -1), dim=1)[0]
            return {
                "input": input_json(image),
                "prediction": predictor.top_k(probabilities, 1)[0],
                "layers": [layer_json(i + 1, m, max_channels) for i, m in enumerate(maps)],
                "scaling": "each channel's min -> black, max -> white",
            }

        return await in_worker(compute)

    guard = Guard(api, limits.max_in_flight, limits.timeout_s)
    guard_ref["guard"] = guard
    app = BodyLimit(guard, limits.max_body_bytes)
    app.fastapi = api  # type: ignore[attr-defined]  (tests and tools reach the FastAPI app here)
    return app


async def _read_body(request: Request) -> tuple[bytes, str, str]:
    """(body bytes, "json" or "image", a name for messages) of a request carrying one image."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        data, name = await _read_upload(request)
        kind = "image"
    elif media == "application/json":
        data, kind, name = await request.body(), "json", "JSON pixels"
    elif media.startswith("image/") or media == "application/octet-stream":
        data, kind, name = await request.body(), "image", "uploaded image"
    else:
        raise ApiError(
            415,
            f"Content-Type '{media or 'none'}' is not accepted: send multipart/form-data with the "
            "image in field 'file', the image bytes as image/png (or another image/* type), or "
            'application/json {"pixels": [[...], ...]}',
        )
    if not data:
        raise ApiError(400, f"{name}: the image is empty (0 bytes); send an image file")
    return data, kind, name


def _decode(
    predictor: Predictor, body: bytes, kind: str, name: str, options: Preprocess
) -> torch.Tensor:
    """The model's uint8 (C, H, W) input from a request body (in a worker thread), or an ApiError."""
    source = _pixels_from_json(body) if kind == "json" else body
    try:
        return predictor.prepare(source, options, name)
    except DataError as error:
        raise ApiError(400, str(error)) from None
    except ConfigError as error:
        raise ApiError(422, str(error)) from None


async def _read_upload(request: Request) -> tuple[bytes, str]:
    try:
        form = await request.form(max_files=1, max_fields=16)
    except (MultiPartException, StarletteHTTPException, ValueError) as error:
        detail = getattr(error, "detail", None) or getattr(error, "message", None) or str(error)
        raise ApiError(400, f"the multipart body cannot be parsed ({detail})") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(
                422, "multipart body has no file field named 'file': send the image as 'file'"
            )
        return await upload.read(), upload.filename or "uploaded image"
    finally:
        await form.close()


def _pixels_from_json(body: bytes) -> bytes:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, 'the body is not valid JSON; send {"pixels": [[...], ...]}') from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise ApiError(422, 'JSON must be an object with "pixels": HxW or CxHxW numbers 0..255')
    try:
        return pixels_to_png(payload["pixels"])
    except DataError as error:
        raise ApiError(422, str(error)) from None
    except RecursionError:
        raise ApiError(422, "pixels is nested too deeply; send HxW or CxHxW") from None


def _add_error_handlers(api: FastAPI) -> None:
    """Every error as JSON {"error", "status"}: 4xx for the client's mistakes, no traceback ever."""

    @api.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        response = error_response(error.status_code, str(error.detail))
        for key, value in (error.headers or {}).items():
            response.headers[key] = value
        return response

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'query')}: {e.get('msg', '')}"
            for e in error.errors()
        ]
        return error_response(422, "invalid request: " + "; ".join(problems))

    @api.exception_handler(CnnlabError)
    async def cnnlab_error(request: Request, error: CnnlabError) -> JSONResponse:
        return error_response(400, str(error))

    @api.exception_handler(Exception)
    async def last_resort(request: Request, error: Exception) -> JSONResponse:
        # A bug of ours, not the client's: logged with its traceback here, never sent.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal server error; the server log has the details")


# --- running it -----------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a ConfigError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        hint = " (in use? choose another with --port, or --port 0 for a free one)" if port else ""
        raise ConfigError(
            f"cannot listen on {host}:{port}: {error.strerror or error}{hint}"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(
    run: Run,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "auto",
    export_path: str | Path | None = None,
    limits: Limits = Limits(),
) -> None:
    """Load the run, listen, print the address, and serve until Ctrl-C."""
    import uvicorn

    # One thread per request: the server runs `limits.workers` requests at once, and a
    # single-image model gains little from splitting each layer over cores, while every
    # multi-threaded op waits for its slowest thread, badly so on a busy machine.
    torch.set_num_threads(1)
    sock = bind_socket(host, port)  # first: a taken port fails before the model is loaded
    predictor = Predictor(run, engine, export_path, threads=1)
    app = create_app(predictor, limits)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {run.path} on http://{shown}:{bound_port}/  (API docs: /docs; Ctrl-C stops)",
        flush=True,
    )
    print(predictor.choice.line(), flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
