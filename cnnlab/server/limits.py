"""What one request may cost, enforced as ASGI middleware around the app (outermost first).

  BodyLimit  counts body bytes as they arrive (Content-Length or chunked): 413 JSON
  Guard      reads the whole body first, within `body_timeout_s` (else 408 JSON); only then
             counts the request against `max_in_flight` (else 503 JSON, Retry-After) and
             gives it `timeout_s` (else 504 JSON); /healthz and /readyz are exempt
  Workers    at most `workers` decodes/inferences at once, each slot held until its work
             has stopped (a 504 answers at once, but its thread keeps the slot)

Both middlewares answer on their own (no app involved) with the JSON shape of every error
answer, in the request's language (`language.py` sets it before them). Headers that do not arrive within `header_timeout_s` close the connection (serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlab.errors import ConfigError
from cnnlab.i18n import N_, _
from cnnlab.server.errors import ApiError

EXEMPT_PATHS = ("/healthz", "/readyz")  # answered even when the server is busy
log = logging.getLogger("cnnlab.server")


BYTES, SECONDS = N_("bytes"), N_("seconds")  # the units of check_number's messages
UNKNOWN = N_("unknown")  # a chunked body's length


def check_number(name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    """A ConfigError unless `value` is a finite number from `low` to `high` (both included);
    `unit`: BYTES, SECONDS or none."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not low <= value <= high:
        unit = f" {_(unit)}" if unit else ""
        raise ConfigError(
            _("{name} must be a number from {low} to {high}{unit}, not {value}").format(
                name=name, low=f"{low:g}", high=f"{high:g}", unit=unit, value=value
            )
        )


@dataclass(frozen=True)
class Limits:
    """What one request may cost; every number is checked (finite, in range) on creation."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_in_flight: int = 64  # requests whose body has arrived, being handled at once
    timeout_s: float = 10.0  # per request, from its body's arrival to the answer
    workers: int = max(2, os.cpu_count() or 2)  # threads decoding and running the model at once
    body_timeout_s: float = 30.0  # for the whole body to arrive (slow uploads get a 408)
    header_timeout_s: float = 10.0  # for a request's headers to arrive (else the socket is closed)
    max_uploading: int = 256  # bodies arriving at once (else 503)
    # Bytes of request bodies held in memory at once, arriving or being answered (else 503):
    # without it, 256 uploads of 16 MiB could hold 4 GiB.
    max_buffered_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        check_number("max_body_bytes", self.max_body_bytes, 1, 2**40, BYTES)
        check_number("max_in_flight", self.max_in_flight, 1, 100_000)
        check_number("max_uploading", self.max_uploading, 1, 100_000)
        check_number("max_buffered_bytes", self.max_buffered_bytes, 1, 2**42, BYTES)
        check_number("workers", self.workers, 1, 1024)
        for name in ("timeout_s", "body_timeout_s", "header_timeout_s"):
            check_number(name, getattr(self, name), 0.001, 86_400, SECONDS)


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
        super().__init__(413, _("request body is over the limit"))


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
        return _(
            "request body is over the limit of {limit} bytes; send a smaller image (or start "
            "the server with a larger --max-body-mb)"
        ).format(limit=f"{self.limit:,}")

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
    """Body first (408 if slow), then at most `max_in_flight` at once (503) and `timeout_s` each (504).

    Only requests whose body has arrived count against `max_in_flight`: clients that
    dribble their upload wait outside it, bounded by `body_timeout_s`, and cannot starve
    the requests that are ready to be answered.
    """

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app = app
        self.max_in_flight = limits.max_in_flight
        self.timeout_s = limits.timeout_s
        self.body_timeout_s = limits.body_timeout_s
        self.max_uploading = limits.max_uploading
        self.max_buffered = limits.max_buffered_bytes
        self.in_flight = 0  # requests inside the app now (exempt paths not counted)
        self.uploading = 0  # requests whose body is still arriving
        self.buffered = 0  # bytes of bodies held now, arriving or being answered

    @property
    def busy(self) -> bool:
        """At the in-flight limit: the next request gets a 503."""
        return self.in_flight >= self.max_in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.uploading >= self.max_uploading:
            what = _("{count} uploads arriving").format(count=self.uploading)
            await self._busy(send, what, self.max_uploading)
            return
        held = _Held()
        try:
            await self._read_and_answer(scope, receive, send, held)
        finally:
            self.buffered -= held.bytes  # the body is let go only when the answer is done

    async def _read_and_answer(self, scope: Scope, receive: Receive, send: Send, held: _Held):
        """The body in full (counted in `held`), then the app within the in-flight limit."""
        self.uploading += 1
        try:
            body = await self._read_body(scope, receive, send, held)
        finally:
            self.uploading -= 1
        if body is None:
            return  # answered (408, 503) or the client is gone
        if self.busy:
            what = _("{count} requests in flight").format(count=self.in_flight)
            await self._busy(send, what, self.max_in_flight)
            return
        self.in_flight += 1
        try:
            await self._timed(scope, _replay(body, receive), send)
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _busy(send: Send, what: str, limit: int) -> None:
        message = _("the server is busy ({what}, the limit is {limit}); retry in a second").format(
            what=what, limit=limit
        )
        await send_json(send, 503, message, {"Retry-After": "1"})

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, held: _Held
    ) -> bytes | None:
        """The whole body within `body_timeout_s` and the memory budget; None once answered
        (408, 503) or the client left."""
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        # One line, not a traceback: a client going away is not our bug.
                        log.warning(
                            "%s %s: the client disconnected after %s of %s body bytes",
                            scope["method"],
                            scope["path"],
                            f"{received:,}",
                            _declared(scope),
                        )
                        return None
                    chunks.append(message.get("body", b""))
                    received += len(chunks[-1])
                    held.bytes, self.buffered = received, self.buffered + len(chunks[-1])
                    if self.buffered > self.max_buffered:
                        what = _("{count} bytes of request bodies in memory").format(
                            count=f"{self.buffered:,}"
                        )
                        await self._busy(send, what, self.max_buffered)
                        return None
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            log.warning(
                "%s %s: the body did not arrive within %gs (%s of %s bytes): answered 408",
                scope["method"], scope["path"], self.body_timeout_s, f"{received:,}",
                _declared(scope),
            )  # fmt: skip
            message = _(
                "the request body did not arrive within {seconds} s ({received} of {declared} "
                "bytes); send it faster (or start the server with a larger --body-timeout)"
            ).format(
                seconds=f"{self.body_timeout_s:g}",
                received=f"{received:,}",
                declared=_(_declared(scope)),  # a number stays as it is
            )
            await send_json(send, 408, message, {"Connection": "close"})
            return None

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
                "%s %s took over %gs: answered 504",
                scope["method"],
                scope["path"],
                self.timeout_s,
            )
            if not started:
                await send_json(send, 504, timeout_message(scope["method"], self.timeout_s))


def timeout_message(method: str, timeout_s: float) -> str:
    """The 504's text: a POST carries an image that can be smaller; a GET (the report's panels,
    computed once on first request) carries nothing to shrink, so it says to retry or wait longer."""
    if method in ("GET", "HEAD"):
        template = _(
            "the request took longer than {seconds} s and was stopped; try again in a moment "
            "(work begun may finish meanwhile), or start the server with a larger --timeout"
        )
    else:
        template = _(
            "the request took longer than {seconds} s and was stopped; send a smaller image, "
            "or send it faster"
        )
    return template.format(seconds=f"{timeout_s:g}")


@dataclass
class _Held:
    """The bytes of one request's body the Guard holds (counted in Guard.buffered)."""

    bytes: int = 0


def _declared(scope: Scope) -> str:
    """The Content-Length for the log: "1,000", or "unknown" (chunked); `_()` of it for answers."""
    declared = content_length(scope)
    return UNKNOWN if declared is None else f"{declared:,}"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # only a disconnect can come now
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class Workers:
    """At most `count` decodes/inferences at once, each in a thread of its own pool.

    A slot is freed by the thread when its work ends, not when the request gives up:
    a request that timed out (504) keeps its slot until its decode has stopped, so
    abandoned work cannot pile up threads and memory beyond `count`.
    """

    def __init__(self, count: int):
        self.count = count
        self.busy = 0  # slots held now (work running, or finishing after its request left)
        self._pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="cnnlab-worker")
        self._slots: asyncio.Semaphore | None = None  # made in the serving loop

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in a worker thread once a slot is free; cancelling stops only the waiting."""
        loop = asyncio.get_running_loop()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.count)
        slots = self._slots
        await slots.acquire()  # cancelled here: nothing was started, nothing is held
        self.busy += 1

        def release() -> None:
            self.busy -= 1
            slots.release()

        def work() -> Any:
            try:
                return fn(*args)
            finally:
                # a closed loop (the server is stopping) has no slots left to free
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(release)

        # in the request's context: its language (cnnlab.i18n) speaks in the thread too
        future = loop.run_in_executor(self._pool, contextvars.copy_context().run, work)
        # An abandoned future's error has no one to read it: mark it read, so asyncio does
        # not log it as "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(future)
