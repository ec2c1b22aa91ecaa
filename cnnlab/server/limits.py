"""What one request may cost, enforced as ASGI middleware around the app (outermost first).

  BodyLimit  counts body bytes as they arrive (Content-Length or chunked): 413 JSON
  Guard      at most `max_in_flight` requests at once (else 503 JSON, Retry-After) and
             `timeout_s` per request (else 504 JSON); /healthz and /readyz are exempt

Both answer on their own (no app involved) with the JSON shape of every error answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.server.errors import ApiError

EXEMPT_PATHS = ("/healthz", "/readyz")  # answered even when the server is busy
log = logging.getLogger("cnnlab.server")


@dataclass(frozen=True)
class Limits:
    """What one request may cost."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_in_flight: int = 64
    timeout_s: float = 10.0
    workers: int = max(2, os.cpu_count() or 2)  # threads decoding and running the model at once


DEFAULT_LIMITS = Limits()


async def send_json(send: Send, status: int, message: str, headers: dict | None = None) -> None:
    """A whole JSON error answer {"error", "status"} sent from middleware."""
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def content_length(scope: Scope) -> int | None:
    """The request's declared Content-Length, or None (chunked, or not a number)."""
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyTooLarge(ApiError):
    """Raised from `receive` once the body passes the limit; an ApiError, so never logged as a bug."""

    def __init__(self) -> None:
        super().__init__(413, "request body is over the limit")


class _CountedBody:
    """One request's `receive` and `send`, counting body bytes; past the limit the app is cut off."""

    def __init__(self, receive: Receive, send: Send, limit: int):
        self._receive, self._send, self.limit = receive, send, limit
        self.received = 0  # body bytes so far
        self.exceeded = False
        self.started = False  # a response has begun: too late for our own 413

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                raise BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.exceeded:
            return  # the app's answer to a cut-off body is replaced by the 413
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


class BodyLimit:
    """413 JSON for a request body over `limit` bytes, counted as it streams in.

    A Content-Length over the limit is refused before reading; without one (chunked),
    bytes are counted per message and the request is cut off once past the limit,
    whatever the app was doing; its own answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    def message(self) -> str:
        """The 413's text: the limit and the fix."""
        return (
            f"request body is over the limit of {self.limit:,} bytes; "
            "send a smaller image (or start the server with a larger --max-body-mb)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.limit:
            await send_json(send, 413, self.message())
            return
        body = _CountedBody(receive, send, self.limit)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.exceeded:
                raise
        if body.exceeded and not body.started:
            await send_json(send, 413, self.message())


class Guard:
    """At most `max_in_flight` requests at once (503 + Retry-After) and `timeout_s` each (504)."""

    def __init__(self, app: ASGIApp, max_in_flight: int, timeout_s: float):
        self.app = app
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.in_flight = 0  # requests inside the app now (exempt paths not counted)

    @property
    def busy(self) -> bool:
        """At the in-flight limit: the next request gets a 503."""
        return self.in_flight >= self.max_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.busy:
            message = (
                f"the server is busy ({self.in_flight} requests in flight, the limit "
                f"is {self.max_in_flight}); retry in a second"
            )
            await send_json(send, 503, message, {"Retry-After": "1"})
            return
        self.in_flight += 1
        try:
            await self._timed(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app for at most `timeout_s`; a 504 if it ran out before answering."""
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
                raise  # a TimeoutError of the app's own, not our limit
            log.warning(
                "%s %s took over %.1fs: answered 504",
                scope["method"],
                scope["path"],
                self.timeout_s,
            )
            if not started:
                message = (
                    f"the request took longer than {self.timeout_s:g} s and was "
                    "stopped; send a smaller image, or send it faster"
                )
                await send_json(send, 504, message)
